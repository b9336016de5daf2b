// Model assignments (where each model should be, and how far each node got)
// and the models the nodes actually hold; create, edit and delete.

import { html, useEffect, useLayoutEffect, useRef, useState } from './lib.js';
import { API, ApiError, call } from './api.js';
import { isAdmin } from './session.js';
import { store } from './store.js';
import { href } from './router.js';
import { Badge, Card, Empty, confirmAction } from './ui.js';
import { DASH, canonicalModel, fmtBytes, fmtInt, plural } from './format.js';

const PHASE_TONE = { Ready: 'ok', Pulling: 'info', Pending: 'neutral', Failed: 'danger' };

function placementText(spec) {
  const sel = Object.entries(spec.nodeSelector?.matchLabels || {}).map(([k, v]) => `${k}=${v}`);
  const where = sel.length ? `nodes with ${sel.join(', ')}` : 'all nodes';
  return spec.replicas != null ? `${plural(spec.replicas, 'replica')} on ${where}` : `every one of ${where}`;
}

function AssignmentRow({ ma, onEdit }) {
  const name = ma.metadata.name;
  const st = ma.status || {};
  const placed = st.nodes || [];
  const desired = ma.spec.replicas ?? placed.length;
  const ready = st.readyReplicas ?? placed.filter((p) => p.phase === 'Ready').length;
  const remove = async () => {
    const ok = await confirmAction({
      title: `Delete assignment ${name}?`,
      body: html`<p>Nodes stop being asked to keep <strong>${ma.spec.model}</strong> for this assignment.
        Models already pulled stay on the nodes.</p>`,
      confirm: 'Delete assignment',
      danger: true,
    });
    if (!ok) return;
    try {
      await call('DELETE', `${API}/modelassignments/${encodeURIComponent(name)}`);
      store.toast(`Deleted assignment ${name}.`, 'ok');
    } catch (e) {
      store.toast(`Deleting ${name} failed: ${e.message}`, 'error');
    }
  };
  return html`<tr data-assignment=${name}>
    <th scope="row" class="strong">${name}</th>
    <td class="mono">${ma.spec.model}</td>
    <td class="wrap">${placementText(ma.spec)}</td>
    <td class="num"><${Badge} tone=${desired > 0 && ready >= desired ? 'ok' : ready > 0 ? 'info' : 'neutral'}>${fmtInt(ready)} / ${fmtInt(desired)}<//></td>
    <td>
      ${placed.length
        ? html`<span class="chips">${placed.map(
            (p) => html`<a class=${`chip chip-${PHASE_TONE[p.phase] || 'neutral'}`} href=${href(`/nodes/${encodeURIComponent(p.node)}`)}
              title=${p.message || p.phase}>${p.node}: ${p.phase}</a>`,
          )}</span>`
        : html`<span class="muted">${st.observedGeneration == null ? 'not placed yet' : 'no matching node'}</span>`}
    </td>
    ${isAdmin()
      ? html`<td class="nowrap">
          <button type="button" class="btn btn-small" onClick=${() => onEdit(ma)} aria-label=${`Edit ${name}`}>Edit</button>
          <button type="button" class="btn btn-small btn-danger-outline" onClick=${remove} aria-label=${`Delete ${name}`}>Delete</button>
        </td>`
      : null}
  </tr>`;
}

// Requests prefix affinity looks at: conversations and prompts.
const AFFINE_PATHS = new Set(['/api/chat', '/api/generate', '/v1/chat/completions', '/v1/completions', '/v1/messages', '/v1/responses']);


// Per model, over the recent request history: requests sent back to the node
// that held their prompt prefix, out of the answered conversation requests.
function affinityByModel() {
  const out = new Map();
  for (const r of store.records) {
    if (!AFFINE_PATHS.has(r.path) || !r.node) continue;
    const key = canonicalModel(r.model);
    const m = out.get(key) || { hits: 0, total: 0 };
    m.total += 1;
    if (r.affinity) m.hits += 1;
    out.set(key, m);
  }
  return out;
}

function ModelsOnNodes() {
  const affinity = affinityByModel();
  const byModel = new Map();
  for (const n of store.nodes.items.values()) {
    for (const m of n.status?.models || []) {
      if (!byModel.has(m.name)) byModel.set(m.name, { size: m.sizeBytes, nodes: [] });
      byModel.get(m.name).nodes.push({ node: n.metadata.name, loaded: m.loaded });
    }
  }
  const rows = [...byModel.entries()].sort(([a], [b]) => a.localeCompare(b));
  if (!rows.length) return html`<${Empty}>No node reports any model yet.<//>`;
  return html`<div class="table-wrap"><table class="table" data-testid="node-models-table">
    <thead><tr><th scope="col">Model</th><th scope="col" class="num">Size</th><th scope="col" class="num">Loaded on</th><th scope="col" class="num" title="Recent conversation requests sent back to the node holding their prompt prefix">Affinity hits</th><th scope="col">Nodes</th></tr></thead>
    <tbody>${rows.map(
      ([name, m]) => html`<tr key=${name}>
        <th scope="row" class="mono strong">${name}</th>
        <td class="num">${m.size ? fmtBytes(m.size) : DASH}</td>
        <td class="num">${fmtInt(m.nodes.filter((x) => x.loaded).length)} of ${fmtInt(m.nodes.length)}</td>
        <td class="num" data-testid="affinity-hits">${affinityCell(affinity.get(canonicalModel(name)))}</td>
        <td><span class="chips">${m.nodes.map(
          (x) => html`<a class=${`chip${x.loaded ? ' chip-loaded' : ''}`} href=${href(`/nodes/${encodeURIComponent(x.node)}`)}
            title=${x.loaded ? 'loaded in memory' : 'on disk'}>${x.loaded ? html`<span class="chip-dot" aria-hidden="true"></span>` : null}${x.node}${x.loaded ? html`<span class="sr-only"> (loaded)</span>` : null}</a>`,
        )}</span></td>
      </tr>`,
    )}</tbody>
  </table></div>`;
}

function affinityCell(a) {
  if (!a || !a.total) return DASH;
  return `${fmtInt(a.hits)} of ${fmtInt(a.total)} · ${Math.round((100 * a.hits) / a.total)} %`;
}

export function ModelsView() {
  const [editing, setEditing] = useState(null);
  const list = [...store.assignments.items.values()].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const modelCount = new Set([...store.nodes.items.values()].flatMap((n) => (n.status?.models || []).map((m) => m.name))).size;
  return html`<div class="view">
    <header class="view-head">
      <div>
        <h1 tabindex="-1">Models</h1>
        <p class="view-sub">${plural(list.length, 'assignment')} · ${plural(modelCount, 'model')} on nodes</p>
      </div>
      ${isAdmin()
        ? html`<button type="button" class="btn btn-primary" onClick=${() => setEditing({})} data-testid="new-assignment">New assignment</button>`
        : null}
    </header>
    <${Card} title="Assignments" id="assignments">
      ${!store.assignments.synced
        ? html`<${Empty}>Loading…<//>`
        : list.length
          ? html`<div class="table-wrap"><table class="table" data-testid="assignments-table">
              <thead><tr><th scope="col">Name</th><th scope="col">Model</th><th scope="col">Placement</th><th scope="col" class="num">Ready</th><th scope="col">Phase per node</th>${isAdmin() ? html`<th scope="col"><span class="sr-only">Actions</span></th>` : null}</tr></thead>
              <tbody>${list.map((ma) => html`<${AssignmentRow} key=${ma.metadata.name} ma=${ma} onEdit=${setEditing} />`)}</tbody>
            </table></div>`
          : html`<${Empty}>No assignments. An assignment asks the nodes to pull a model and keep it: on a number of nodes, or on every node with some labels.<//>`}
    <//>
    <${Card} title="Models on nodes" id="node-models"><${ModelsOnNodes} /><//>
    ${editing ? html`<${AssignmentEditor} original=${editing.metadata ? editing : null} onClose=${() => setEditing(null)} />` : null}
  </div>`;
}

// --- the editor ------------------------------------------------------------------

function toForm(obj) {
  const spec = obj?.spec || {};
  return {
    name: obj?.metadata?.name || '',
    model: spec.model || '',
    mode: spec.replicas != null || !obj ? 'replicas' : 'selector',
    replicas: spec.replicas != null ? String(spec.replicas) : '1',
    labels: Object.entries(spec.nodeSelector?.matchLabels || {})
      .map(([k, v]) => `${k}=${v}`)
      .join('\n'),
  };
}

/** The object a form describes, and problems found before asking the server. */
function fromForm(form, original) {
  const local = [];
  const spec = { model: form.model.trim() };
  if (form.mode === 'replicas') {
    const t = form.replicas.trim();
    if (!/^\d+$/.test(t)) local.push({ field: 'spec.replicas', message: 'must be a whole number (0 or more)' });
    else spec.replicas = Number(t);
  }
  const matchLabels = {};
  form.labels.split('\n').forEach((line, i) => {
    const l = line.trim();
    if (!l) return;
    const m = /^([^=:\s]+)\s*[=:]\s*(.*)$/.exec(l);
    if (!m) local.push({ field: 'spec.nodeSelector.matchLabels', message: `line ${i + 1}: write key=value` });
    else matchLabels[m[1]] = m[2].trim();
  });
  if (Object.keys(matchLabels).length) spec.nodeSelector = { matchLabels };
  const metadata = { ...(original?.metadata || {}), name: form.name.trim() };
  for (const k of ['uid', 'generation', 'creationTimestamp']) delete metadata[k];
  return { obj: { apiVersion: 'herd/v1', kind: 'ModelAssignment', metadata, spec }, local };
}

const FIELD_OF = (path) => {
  if (!path) return '';
  if (path === 'metadata.name') return 'name';
  if (path.startsWith('spec.model')) return 'model';
  if (path.startsWith('spec.replicas')) return 'replicas';
  if (path.startsWith('spec.nodeSelector')) return 'labels';
  return '';
};

function errorsByField(problems) {
  const out = {};
  for (const p of problems) {
    const f = FIELD_OF(p.field) || 'general';
    (out[f] ||= []).push(p);
  }
  return out;
}

function problemsOf(e, name) {
  if (!(e instanceof ApiError)) return [{ field: '', message: e.message }];
  const causes = e.causes;
  if (causes.length) return causes;
  if (e.reason === 'AlreadyExists') return [{ field: 'metadata.name', message: `an assignment named "${name}" already exists` }];
  if (e.code === 409) return [{ field: '', message: `${e.message}. Close the editor and open it again to edit the current version.` }];
  return [{ field: '', message: e.message }];
}

function FieldErrors({ id, errors }) {
  if (!errors?.length) return null;
  return html`<ul class="field-error" id=${id} data-testid=${`${id}`}>
    ${errors.map((e) => html`<li>${e.message}</li>`)}
  </ul>`;
}

function AssignmentEditor({ original, onClose }) {
  const editing = !!original;
  const ref = useRef(null);
  const [tab, setTab] = useState('form');
  const [form, setForm] = useState(() => toForm(original));
  const [text, setText] = useState('');
  const [problems, setProblems] = useState([]);
  const [touched, setTouched] = useState(() => new Set(editing ? ['name', 'model', 'replicas', 'labels'] : []));
  const [submitted, setSubmitted] = useState(false);
  const [busy, setBusy] = useState(false);
  const [check, setCheck] = useState('');
  const [focusError, setFocusError] = useState(0);
  const seq = useRef(0);

  useLayoutEffect(() => {
    ref.current?.showModal();
  }, []);

  /** The object to send, or parse problems. */
  const current = () => {
    if (tab === 'json') {
      try {
        const obj = JSON.parse(text);
        return { obj, local: [] };
      } catch (e) {
        return { obj: null, local: [{ field: '', message: `Not valid JSON: ${e.message}` }] };
      }
    }
    return fromForm(form, original);
  };

  /** Sends the object (a dry run unless `write` and nothing is wrong
   * locally), and returns every problem: the browser's own and the server's. */
  const send = async (write) => {
    const { obj, local } = current();
    if (!obj) return { ok: false, problems: local };
    if (obj.status) delete obj.status;
    const writing = write && local.length === 0;
    const q = writing ? '' : '?dryRun=All';
    const name = obj.metadata?.name || '';
    try {
      const saved = editing
        ? await call('PUT', `${API}/modelassignments/${encodeURIComponent(original.metadata.name)}${q}`, obj)
        : await call('POST', `${API}/modelassignments${q}`, obj);
      return { ok: local.length === 0, problems: local, saved: writing ? saved : null };
    } catch (e) {
      // A field the browser already found wrong was left out of what was sent.
      const mine = new Set(local.map((p) => FIELD_OF(p.field)).filter(Boolean));
      const theirs = problemsOf(e, name).filter((p) => !mine.has(FIELD_OF(p.field)));
      return { ok: false, problems: [...local, ...theirs] };
    }
  };

  // Validate with the server (dryRun) shortly after each change.
  useEffect(() => {
    if (!touched.size && !submitted) return undefined;
    const my = ++seq.current;
    setCheck('checking');
    const t = setTimeout(async () => {
      const r = await send(false);
      if (my !== seq.current) return;
      setProblems(r.problems);
      setCheck(r.ok ? 'valid' : 'invalid');
    }, 400);
    return () => clearTimeout(t);
  }, [form, text, tab, touched, submitted]);

  const set = (k) => (e) => {
    const v = e.currentTarget.value;
    setForm((f) => ({ ...f, [k]: v }));
    setTouched((t) => (t.has(k) ? t : new Set([...t, k])));
  };

  const switchTab = (to) => {
    if (to === tab) return;
    if (to === 'json') {
      const { obj } = fromForm(form, original);
      setText(JSON.stringify(obj, null, 2));
    } else {
      try {
        setForm(toForm(JSON.parse(text)));
      } catch (e) {
        setProblems([{ field: '', message: `Not valid JSON: ${e.message}` }]);
        return;
      }
    }
    setTab(to);
  };

  const submit = async (e) => {
    e.preventDefault();
    setSubmitted(true);
    setBusy(true);
    seq.current += 1;
    const r = await send(true);
    setBusy(false);
    setProblems(r.problems);
    setCheck(r.ok ? 'valid' : 'invalid');
    if (r.ok && r.saved) {
      store.toast(`${editing ? 'Saved' : 'Created'} assignment ${r.saved?.metadata?.name || ''}.`, 'ok');
      onClose();
    } else {
      setFocusError((n) => n + 1);
    }
  };

  // After a failed submit, put the cursor on the first field with a problem.
  useLayoutEffect(() => {
    if (focusError) ref.current?.querySelector('[aria-invalid="true"]')?.focus();
  }, [focusError]);

  const shown = (k) => submitted || touched.has(k) || tab === 'json';
  const byField = errorsByField(problems);
  const err = (k) => (shown(k) ? byField[k] : undefined);
  const general = tab === 'json' ? problems : byField.general;
  const input = (k, props) => ({
    id: `ma-${k}`,
    'aria-invalid': err(k)?.length ? 'true' : 'false',
    'aria-describedby': `ma-${k}-help${err(k)?.length ? ` ma-${k}-err` : ''}`,
    ...props,
  });
  const knownModels = [...new Set([...store.nodes.items.values()].flatMap((n) => (n.status?.models || []).map((m) => m.name)))].sort();

  return html`<dialog ref=${ref} class="editor" aria-labelledby="ma-title"
      onCancel=${(e) => { e.preventDefault(); onClose(); }} data-testid="assignment-editor">
    <form onSubmit=${submit} novalidate>
      <header class="editor-head">
        <h2 id="ma-title">${editing ? `Edit ${original.metadata.name}` : 'New model assignment'}</h2>
        <div class="tabs" role="group" aria-label="Edit as">
          <button type="button" aria-pressed=${tab === 'form'} class="tab" onClick=${() => switchTab('form')}>Form</button>
          <button type="button" aria-pressed=${tab === 'json'} class="tab" onClick=${() => switchTab('json')} data-testid="tab-json">JSON</button>
        </div>
      </header>
      ${general?.length
        ? html`<div class="notice notice-danger" role="alert" data-testid="ma-general-err">
            <ul>${general.map((p) => html`<li>${p.field ? html`<code>${p.field}</code>: ` : null}${p.message}</li>`)}</ul>
          </div>`
        : null}
      ${tab === 'form'
        ? html`<div class="form-grid">
            <div class="field" data-field="metadata.name">
              <label for="ma-name">Name</label>
              <input ...${input('name', { value: form.name, onInput: set('name'), readOnly: editing, autocomplete: 'off', spellcheck: false, placeholder: 'llama-everywhere' })} />
              <p class="help" id="ma-name-help">Lowercase letters, digits and dashes.${editing ? ' Cannot be changed.' : ''}</p>
              <${FieldErrors} id="ma-name-err" errors=${err('name')} />
            </div>
            <div class="field" data-field="spec.model">
              <label for="ma-model">Model</label>
              <input ...${input('model', { value: form.model, onInput: set('model'), list: 'ma-models', autocomplete: 'off', spellcheck: false, placeholder: 'llama3.2:1b' })} />
              <datalist id="ma-models">${knownModels.map((m) => html`<option value=${m} />`)}</datalist>
              <p class="help" id="ma-model-help">An Ollama model name, <code>[host/][namespace/]model[:tag]</code>.</p>
              <${FieldErrors} id="ma-model-err" errors=${err('model')} />
            </div>
            <fieldset class="field">
              <legend>Placement</legend>
              <label class="radio"><input type="radio" name="mode" value="replicas" checked=${form.mode === 'replicas'} onChange=${set('mode')} /> A number of nodes</label>
              <label class="radio"><input type="radio" name="mode" value="selector" checked=${form.mode === 'selector'} onChange=${set('mode')} /> Every node that matches the labels</label>
            </fieldset>
            ${form.mode === 'replicas'
              ? html`<div class="field" data-field="spec.replicas">
                  <label for="ma-replicas">Replicas</label>
                  <input ...${input('replicas', { value: form.replicas, onInput: set('replicas'), inputmode: 'numeric', class: 'narrow' })} />
                  <p class="help" id="ma-replicas-help">How many nodes should hold the model.</p>
                  <${FieldErrors} id="ma-replicas-err" errors=${err('replicas')} />
                </div>`
              : null}
            <div class="field" data-field="spec.nodeSelector.matchLabels">
              <label for="ma-labels">Node labels</label>
              <textarea ...${input('labels', { value: form.labels, onInput: set('labels'), rows: 3, spellcheck: false, placeholder: 'gpu=nvidia' })}></textarea>
              <p class="help" id="ma-labels-help">One <code>key=value</code> per line; only nodes with all of them. Empty: any node.</p>
              <${FieldErrors} id="ma-labels-err" errors=${err('labels')} />
            </div>
          </div>`
        : html`<div class="field">
            <label for="ma-json">ModelAssignment as JSON</label>
            <textarea id="ma-json" class="code" rows="16" spellcheck="false" value=${text}
              onInput=${(e) => { setText(e.currentTarget.value); setTouched((t) => new Set([...t, 'json'])); }}
              aria-describedby="ma-json-help"></textarea>
            <p class="help" id="ma-json-help">The same document <code>herd apply</code> takes; the schema is at
              <a href=${`${API}/schemas/modelassignments`} target="_blank" rel="noopener">${API}/schemas/modelassignments</a>.</p>
          </div>`}
      <footer class="dialog-actions">
        <span class=${`check check-${check}`} aria-live="polite" data-testid="ma-check">
          ${check === 'checking' ? 'Checking…' : check === 'valid' ? '✓ Valid' : check === 'invalid' ? 'Has problems' : ''}
        </span>
        <button type="button" class="btn" onClick=${onClose}>Cancel</button>
        <button type="submit" class="btn btn-primary" disabled=${busy} data-testid="ma-submit">${editing ? 'Save' : 'Create'}</button>
      </footer>
    </form>
  </dialog>`;
}
