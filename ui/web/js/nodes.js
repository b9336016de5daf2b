// The Nodes table and the page of one node, with cordon, drain and delete.

import { html, useState } from './lib.js';
import { API, call } from './api.js';
import { isAdmin } from './session.js';
import { store, WINDOW_MS } from './store.js';
import { href, navigate } from './router.js';
import {
  Badge,
  Card,
  Chart,
  Empty,
  Meter,
  SortTh,
  StatusDot,
  compareBy,
  confirmAction,
} from './ui.js';
import {
  DASH,
  fmtAgo,
  fmtBytes,
  fmtDateTime,
  fmtDuration,
  fmtInt,
  fmtMs,
  fmtPct,
  plural,
  toMillis,
} from './format.js';
import { RequestsTable } from './requests.js';
import { EventsTable } from './events.js';

// --- what a node's status means ------------------------------------------------

export function readyOf(node) {
  return (node.status?.conditions || []).find((c) => c.type === 'Ready');
}

/** Online when `Ready` is `True`; everything else is offline, with why. */
export function nodeStatus(node) {
  const c = readyOf(node);
  if (c?.status === 'True') return { online: true, tone: 'ok', label: 'Online', detail: c.message || c.reason || '' };
  let detail;
  if (!c) detail = 'The node has not reported yet';
  else if (c.status === 'Unknown') detail = c.message || `No heartbeat (${c.reason || 'unknown'})`;
  else detail = c.message || c.reason || 'Not ready';
  return { online: false, tone: 'danger', label: 'Offline', detail };
}

export function nodeIP(node) {
  const a = node.status?.info?.addresses;
  if (a?.length) return a[0];
  try {
    return node.spec?.url ? new URL(node.spec.url).hostname : '';
  } catch {
    return '';
  }
}

export function uptimeMs(node, now) {
  const t = toMillis(node.status?.info?.startTime);
  return t == null ? null : Math.max(0, now - t);
}

/** Live counters: the proxy's when it serves them, else the heartbeat's. */
export function nodeCounters(node) {
  const s = store.stats.nodes.get(node.metadata.name);
  return {
    inFlight: s ? s.inFlight : (node.status?.usage?.inFlight ?? null),
    processed: s ? s.processed : null,
    errors: s ? s.errors : null,
    stats: s || null,
  };
}

export function sortedNodes() {
  return [...store.nodes.items.values()].sort((a, b) =>
    a.metadata.name.localeCompare(b.metadata.name, undefined, { numeric: true }),
  );
}

export function NodeState({ node }) {
  const st = nodeStatus(node);
  const draining = store.draining.has(node.metadata.name);
  return html`<span class="state-cell">
    <${StatusDot} tone=${st.tone} label=${st.label} title=${st.detail} />
    ${node.spec?.unschedulable
      ? html`<${Badge} tone="warn" title="No new requests are routed here">${draining ? 'Draining' : 'Cordoned'}<//>`
      : null}
  </span>`;
}

function ModelChips({ node, limit = 4 }) {
  const models = [...(node.status?.models || [])].sort((a, b) => (b.loaded ? 1 : 0) - (a.loaded ? 1 : 0));
  if (!models.length) return html`<span class="muted">none</span>`;
  const shown = models.slice(0, limit);
  return html`<span class="chips">
    ${shown.map(
      (m) =>
        html`<span class=${`chip${m.loaded ? ' chip-loaded' : ''}`} title=${m.loaded ? `${m.name}: loaded in memory` : `${m.name}: on disk`}
          >${m.loaded ? html`<span class="chip-dot" aria-hidden="true"></span>` : null}${m.name}${m.loaded
            ? html`<span class="sr-only"> (loaded)</span>`
            : null}</span
        >`,
    )}
    ${models.length > limit ? html`<span class="chip chip-more" title=${models.slice(limit).map((m) => m.name).join(', ')}>+${models.length - limit}</span>` : null}
  </span>`;
}

// --- the table -------------------------------------------------------------------

const COLUMNS = {
  name: (n) => n.metadata.name,
  ip: (n) => nodeIP(n),
  version: (n) => n.status?.info?.ollamaVersion || null,
  uptime: (n) => uptimeMs(n, store.now),
  status: (n) => (nodeStatus(n).online ? 0 : 1) + (n.spec?.unschedulable ? 0.5 : 0),
  cpu: (n) => n.status?.usage?.cpuPercent ?? null,
  memory: (n) => n.status?.usage?.memoryPercent ?? null,
  inflight: (n) => nodeCounters(n).inFlight,
  processed: (n) => nodeCounters(n).processed,
  models: (n) => (n.status?.models || []).length,
};

function matches(node, q, status) {
  const st = nodeStatus(node);
  if (status === 'online' && !st.online) return false;
  if (status === 'offline' && st.online) return false;
  if (status === 'cordoned' && !node.spec?.unschedulable) return false;
  if (!q) return true;
  const info = node.status?.info || {};
  const hay = [
    node.metadata.name,
    info.machineName,
    ...(info.addresses || []),
    info.ollamaVersion,
    node.spec?.url,
    ...(node.status?.models || []).map((m) => m.name),
    ...Object.entries(node.metadata.labels || {}).map(([k, v]) => `${k}=${v}`),
  ]
    .filter(Boolean)
    .join(' ')
    .toLowerCase();
  return q
    .toLowerCase()
    .split(/\s+/)
    .every((w) => hay.includes(w));
}

export function NodesView() {
  const [q, setQ] = useState('');
  const [status, setStatus] = useState('all');
  const [sort, setSort] = useState({ key: 'name', dir: 'asc' });
  const all = sortedNodes();
  const rows = all.filter((n) => matches(n, q.trim(), status));
  rows.sort(compareBy(COLUMNS[sort.key], sort.dir));
  const now = store.now;
  const online = all.filter((n) => nodeStatus(n).online).length;
  return html`<div class="view">
    <header class="view-head">
      <div>
        <h1 tabindex="-1">Nodes</h1>
        <p class="view-sub">${plural(all.length, 'node')} · ${fmtInt(online)} online · ${fmtInt(all.length - online)} offline</p>
      </div>
    </header>
    <div class="toolbar" role="search">
      <label class="field-inline">
        <span class="sr-only">Filter nodes</span>
        <input type="search" placeholder="Filter by name, IP, model, label…" value=${q}
          onInput=${(e) => setQ(e.currentTarget.value)} data-testid="node-filter" />
      </label>
      <label class="field-inline">
        <span class="label-text">Status</span>
        <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)} data-testid="node-status-filter">
          <option value="all">All</option>
          <option value="online">Online</option>
          <option value="offline">Offline</option>
          <option value="cordoned">Cordoned</option>
        </select>
      </label>
      <span class="toolbar-count" aria-live="polite">${rows.length === all.length ? '' : `${rows.length} of ${all.length} shown`}</span>
    </div>
    ${!store.nodes.synced
      ? html`<${Empty}>Loading nodes…<//>`
      : all.length === 0
        ? html`<${Empty}>
            <strong>No nodes yet.</strong> Start <code>herd nodelet</code> on a machine with
            <code>ROUTER_URL=${window.location.origin}</code>; it appears here within seconds.
          <//>`
        : html`<div class="table-wrap">
            <table class="table nodes-table" data-testid="nodes-table">
              <caption class="sr-only">Nodes, sortable by each column</caption>
              <thead>
                <tr>
                  <${SortTh} id="name" sort=${sort} setSort=${setSort}>Name<//>
                  <${SortTh} id="status" sort=${sort} setSort=${setSort}>Status<//>
                  <${SortTh} id="ip" sort=${sort} setSort=${setSort}>IP<//>
                  <${SortTh} id="version" sort=${sort} setSort=${setSort}>Ollama<//>
                  <${SortTh} id="uptime" sort=${sort} setSort=${setSort} num>Uptime<//>
                  <${SortTh} id="cpu" sort=${sort} setSort=${setSort} num>CPU<//>
                  <${SortTh} id="memory" sort=${sort} setSort=${setSort} num>Memory<//>
                  <${SortTh} id="inflight" sort=${sort} setSort=${setSort} num>In flight<//>
                  <${SortTh} id="processed" sort=${sort} setSort=${setSort} num>Processed<//>
                  <${SortTh} id="models" sort=${sort} setSort=${setSort}>Models<//>
                </tr>
              </thead>
              <tbody>
                ${rows.map((n) => {
                  const name = n.metadata.name;
                  const info = n.status?.info || {};
                  const c = nodeCounters(n);
                  const fresh = now - (store.appeared.get(name) || 0) < 4000;
                  const up = uptimeMs(n, now);
                  return html`<tr key=${name} data-node=${name} class=${fresh ? 'row-new' : ''}>
                    <td data-col="name" class="nowrap">
                      <a class="strong" href=${href(`/nodes/${encodeURIComponent(name)}`)}>${name}</a>
                      ${info.machineName && info.machineName !== name
                        ? html`<div class="cell-sub">${info.machineName}</div>`
                        : null}
                    </td>
                    <td data-col="status"><${NodeState} node=${n} /></td>
                    <td data-col="ip" class="mono">${nodeIP(n) || DASH}</td>
                    <td data-col="version" class="mono">${info.ollamaVersion || DASH}</td>
                    <td data-col="uptime" class="num nowrap" title=${info.startTime ? `Started ${fmtDateTime(info.startTime)}` : undefined}>${up == null ? DASH : fmtDuration(up)}</td>
                    <td data-col="cpu" class="num"><${Meter} value=${n.status?.usage?.cpuPercent} label="CPU" /></td>
                    <td data-col="memory" class="num"><${Meter} value=${n.status?.usage?.memoryPercent} label="Memory" /></td>
                    <td data-col="inflight" class="num">${c.inFlight == null ? DASH : fmtInt(c.inFlight)}</td>
                    <td data-col="processed" class="num" title=${c.errors ? `${fmtInt(c.errors)} failed` : undefined}>
                      ${c.processed == null ? DASH : fmtInt(c.processed)}
                    </td>
                    <td data-col="models"><${ModelChips} node=${n} /></td>
                  </tr>`;
                })}
              </tbody>
            </table>
            ${rows.length === 0 ? html`<${Empty}>No node matches the filter.<//>` : null}
          </div>`}
  </div>`;
}

// --- actions ---------------------------------------------------------------------

async function patchNode(name, spec) {
  return call('PATCH', `${API}/nodes/${encodeURIComponent(name)}`, { spec }, {
    contentType: 'application/merge-patch+json',
  });
}

async function act(label, fn) {
  try {
    await fn();
    store.toast(label, 'ok');
  } catch (e) {
    store.toast(`${label.replace(/\.$/, '')} failed: ${e.message}`, 'error');
  }
}

/** Cordon, drain and delete: shown to admins only (a viewer's key could not
 * do them anyway; the server refuses). */
function NodeActions({ node }) {
  if (!isAdmin()) return null;
  return html`<${AdminNodeActions} node=${node} />`;
}

function AdminNodeActions({ node }) {
  const name = node.metadata.name;
  const cordoned = !!node.spec?.unschedulable;
  const [busy, setBusy] = useState(false);
  const run = async (fn) => {
    setBusy(true);
    try {
      await fn();
    } finally {
      setBusy(false);
    }
  };
  const inFlight = nodeCounters(node).inFlight ?? 0;
  const cordon = () =>
    run(async () => {
      const ok = await confirmAction({
        title: `Cordon ${name}?`,
        body: html`<p>The router stops sending new requests to <strong>${name}</strong>. Requests in flight
          (${fmtInt(inFlight)}) finish normally. Uncordon to route to it again.</p>`,
        confirm: 'Cordon',
      });
      if (ok) await act(`Cordoned ${name}.`, () => patchNode(name, { unschedulable: true }));
    });
  const uncordon = () =>
    run(async () => {
      const ok = await confirmAction({
        title: `Uncordon ${name}?`,
        body: html`<p>The router sends new requests to <strong>${name}</strong> again when it is online.</p>`,
        confirm: 'Uncordon',
      });
      if (ok) {
        await act(`Uncordoned ${name}.`, () => patchNode(name, { unschedulable: false }));
        store.draining.delete(name);
      }
    });
  const drain = () =>
    run(async () => {
      const ok = await confirmAction({
        title: `Drain ${name}?`,
        body: html`<p>Cordons <strong>${name}</strong>, then shows its requests in flight
          (${fmtInt(inFlight)} now) until they have all finished. Then the machine can be stopped safely.</p>`,
        confirm: 'Drain',
      });
      if (!ok) return;
      await act(`Draining ${name}.`, async () => {
        if (!cordoned) await patchNode(name, { unschedulable: true });
        store.draining.set(name, Date.now());
        store.changed();
      });
    });
  const remove = () =>
    run(async () => {
      const ok = await confirmAction({
        title: `Delete node ${name}?`,
        body: html`<p><strong>${name}</strong> leaves the fleet: its record is removed and no requests are routed to it.
          ${inFlight ? html` It still has <strong>${fmtInt(inFlight)}</strong> requests in flight.` : null}</p>
          <p class="muted">A nodelet still running on the machine registers it again. Stop the nodelet first to remove it for good.</p>`,
        confirm: 'Delete node',
        danger: true,
      });
      if (!ok) return;
      try {
        await call('DELETE', `${API}/nodes/${encodeURIComponent(name)}`);
        store.toast(`Deleted node ${name}.`, 'ok');
        navigate(href('/nodes'));
      } catch (e) {
        store.toast(`Deleting ${name} failed: ${e.message}`, 'error');
      }
    });
  return html`<div class="actions" role="group" aria-label="Node actions">
    ${cordoned
      ? html`<button type="button" class="btn" disabled=${busy} onClick=${uncordon} data-testid="uncordon">Uncordon</button>`
      : html`<button type="button" class="btn" disabled=${busy} onClick=${cordon} data-testid="cordon">Cordon</button>`}
    <button type="button" class="btn" disabled=${busy} onClick=${drain} data-testid="drain">Drain</button>
    <button type="button" class="btn btn-danger-outline" disabled=${busy} onClick=${remove} data-testid="delete">Delete</button>
  </div>`;
}

function DrainPanel({ node }) {
  const name = node.metadata.name;
  if (!store.draining.has(name) || !node.spec?.unschedulable) return null;
  const n = nodeCounters(node).inFlight;
  const done = n === 0;
  return html`<div class=${`notice ${done ? 'notice-ok' : 'notice-warn'}`} role="status" data-testid="drain-status">
    ${done
      ? html`<strong>Drained.</strong> No requests in flight on ${name}; it is safe to stop the machine or delete the node.`
      : html`<strong>Draining…</strong> ${n == null ? 'waiting for the in-flight count' : `${plural(n, 'request')} still in flight`} on ${name}.`}
  </div>`;
}

// --- one node's page ---------------------------------------------------------------

function Facts({ node, now }) {
  const info = node.status?.info || {};
  const cap = node.status?.capacity || {};
  const routing = node.status?.routing;
  const up = uptimeMs(node, now);
  const labels = Object.entries(node.metadata.labels || {});
  const rows = [
    ['Machine', info.machineName || DASH],
    ['Addresses', (info.addresses || []).join(', ') || DASH, 'mono'],
    ['URL', node.spec?.url || DASH, 'mono'],
    ['API', node.spec?.api || 'ollama'],
    ['Ollama', info.ollamaVersion || DASH, 'mono'],
    ['Nodelet', info.nodeletVersion || DASH, 'mono'],
    ['OS / arch', [info.os, info.arch].filter(Boolean).join(' / ') || DASH],
    ['Uptime', up == null ? DASH : fmtDuration(up)],
    ['Last heartbeat', node.status?.lastHeartbeatTime ? fmtAgo(node.status.lastHeartbeatTime, now) : DASH],
    ['CPUs', cap.cpus ? fmtInt(cap.cpus) : DASH],
    ['Memory', cap.memoryBytes ? fmtBytes(cap.memoryBytes) : DASH],
    ['GPUs', (cap.gpus || []).map((g) => `${g.name}${g.memoryBytes ? ` (${fmtBytes(g.memoryBytes)})` : ''}`).join(', ') || DASH],
    ['Max parallel', fmtInt(node.spec?.maxParallel)],
    ['Weight', routing ? `${fmtInt(routing.weight)} (routing${routing.reason ? `: ${routing.reason}` : ''})` : fmtInt(node.spec?.weight)],
    ['Labels', labels.length ? html`<span class="chips">${labels.map(([k, v]) => html`<span class="chip mono">${k}=${v}</span>`)}</span>` : DASH],
    ['Registered', fmtDateTime(node.metadata.creationTimestamp) || DASH],
  ];
  return html`<dl class="facts">
    ${rows.map(([k, v, cls]) => html`<div><dt>${k}</dt><dd class=${cls || ''}>${v}</dd></div>`)}
  </dl>`;
}

function Conditions({ node, now }) {
  const conds = node.status?.conditions || [];
  if (!conds.length) return html`<${Empty}>No conditions reported yet.<//>`;
  return html`<div class="table-wrap"><table class="table">
    <thead><tr><th scope="col">Type</th><th scope="col">Status</th><th scope="col">Reason</th><th scope="col">Message</th><th scope="col">Since</th></tr></thead>
    <tbody>
      ${conds.map((c) => {
        const good = c.type === 'Ready' || c.type.endsWith('Ready') || c.type.endsWith('Running') || c.type.endsWith('Installed') || c.type === 'Reachable' || c.type === 'Drained';
        const tone = c.status === 'Unknown' ? 'warn' : (c.status === 'True') === good ? 'ok' : 'danger';
        return html`<tr key=${c.type}>
          <th scope="row" class="strong">${c.type}</th>
          <td><${StatusDot} tone=${tone} label=${c.status} /></td>
          <td>${c.reason || DASH}</td>
          <td class="wrap">${c.message || DASH}</td>
          <td title=${fmtDateTime(c.lastTransitionTime)}>${c.lastTransitionTime ? fmtAgo(c.lastTransitionTime, now) : DASH}</td>
        </tr>`;
      })}
    </tbody>
  </table></div>`;
}

function Models({ node }) {
  const models = node.status?.models || [];
  const pulls = node.status?.pulls || [];
  return html`
    ${models.length
      ? html`<ul class="model-list">
          ${models.map(
            (m) => html`<li key=${m.name}>
              <span class="mono strong">${m.name}</span>
              ${m.loaded ? html`<${Badge} tone="ok">loaded<//>` : html`<${Badge}>on disk<//>`}
              <span class="muted">${m.sizeBytes ? fmtBytes(m.sizeBytes) : ''}</span>
            </li>`,
          )}
        </ul>`
      : html`<${Empty}>No models on this node.<//>`}
    ${pulls.length
      ? html`<h3 class="subhead">Pulls</h3>
        <ul class="pull-list">
          ${pulls.map((p) => {
            const pct = p.totalBytes ? (100 * p.completedBytes) / p.totalBytes : null;
            return html`<li key=${p.model} data-testid="pull">
              <div class="pull-head">
                <span class="mono strong">${p.model}</span>
                <${Badge} tone=${p.phase === 'Failed' ? 'danger' : p.phase === 'Succeeded' ? 'ok' : 'info'}>${p.phase}<//>
                <span class="muted num">${p.totalBytes ? `${fmtBytes(p.completedBytes)} of ${fmtBytes(p.totalBytes)}` : ''}</span>
              </div>
              <progress max="100" value=${pct ?? undefined} aria-label=${`Pull of ${p.model}`}>${pct == null ? '' : fmtPct(pct)}</progress>
              ${p.message ? html`<div class="cell-sub">${p.message}</div>` : null}
            </li>`;
          })}
        </ul>`
      : null}
  `;
}

function NodeCharts({ node, now }) {
  const name = node.metadata.name;
  const from = now - WINDOW_MS;
  const usage = store.usage.get(name);
  const inflight = store.inflight.get(name);
  const recs = store.records.filter((r) => r.node === name && r._t >= from);
  const cur = node.status?.usage || {};
  const c = nodeCounters(node);
  const lastT = usage?.t.length ? usage.t[usage.t.length - 1] : null;
  // Heartbeats only come when something changes; carry the last value to now.
  const ut = usage ? [...usage.t, ...(lastT && now > lastT ? [now] : [])] : [];
  const carry = (arr) => (arr ? [...arr, ...(lastT && now > lastT ? [arr[arr.length - 1]] : [])] : []);
  const fit = inflight ? [...inflight.t] : [];
  const fiv = inflight ? [...inflight.v] : [];
  const lat = recs.map((r) => r.latencyMs);
  const tt = recs.map((r) => r.ttftMs ?? null);
  // At least the last minute, growing to the hour as data accumulates.
  const first = Math.min(ut[0] ?? now, fit[0] ?? now, recs[0]?._t ?? now);
  const xRange = [now - Math.min(WINDOW_MS, Math.max(60_000, now - first + 5_000)), now];
  return html`<div class="chart-grid">
    <${Chart} title="CPU and memory" testid="chart-usage"
      summary=${`CPU ${fmtPct(cur.cpuPercent)}, memory ${fmtPct(cur.memoryPercent)}`}
      series=${[{ label: 'CPU', color: '--chart-1' }, { label: 'Memory', color: '--chart-2' }]}
      data=${[ut, carry(usage?.cpu), carry(usage?.mem)]} fmt=${(v) => `${Math.round(v)}%`} yMax=${100} xRange=${xRange} />
    <${Chart} title="In flight" testid="chart-inflight" kind="step"
      summary=${c.inFlight == null ? DASH : `${fmtInt(c.inFlight)} now`}
      series=${[{ label: 'In flight', color: '--chart-3', fill: '--chart-3-fill' }]}
      data=${[fit, fiv]} fmt=${(v) => fmtInt(v)} yMax=${Math.max(1, node.spec?.maxParallel ?? 1)} xRange=${xRange} integer />
    <${Chart} title="Latency per request" testid="chart-latency" kind="points"
      summary=${recs.length ? `last ${fmtMs(lat[lat.length - 1])}, first token ${fmtMs(tt[tt.length - 1])}` : 'no requests yet'}
      series=${[{ label: 'Total', color: '--chart-1' }, { label: 'First token', color: '--chart-4' }]}
      data=${[recs.map((r) => r._t), lat, tt]} fmt=${(v) => fmtMs(v)} xRange=${xRange} />
  </div>`;
}

export function NodeView({ name }) {
  const now = store.now;
  const node = store.nodes.items.get(name);
  if (!node) {
    return html`<div class="view">
      <nav class="crumbs" aria-label="Breadcrumb"><a href=${href('/nodes')}>Nodes</a> › ${name}</nav>
      <h1 tabindex="-1">${name}</h1>
      <${Empty}>${store.nodes.synced ? html`There is no node named <strong>${name}</strong> (it may have been deleted).` : 'Loading…'}<//>
    </div>`;
  }
  const st = nodeStatus(node);
  const c = nodeCounters(node);
  const events = [...store.events.items.values()].filter(
    (e) => e.spec?.involvedObject?.kind === 'Node' && e.spec?.involvedObject?.name === name,
  );
  const recent = store.records.filter((r) => r.node === name).slice(-10).reverse();
  return html`<div class="view" data-testid="node-page">
    <nav class="crumbs" aria-label="Breadcrumb"><a href=${href('/nodes')}>Nodes</a> › <span aria-current="page">${name}</span></nav>
    <header class="view-head">
      <div>
        <h1 tabindex="-1" class="with-state">${name} <${NodeState} node=${node} /></h1>
        <p class="view-sub">${st.online ? 'Taking requests' : st.detail}${node.spec?.unschedulable ? ' · cordoned: no new requests' : ''}</p>
      </div>
      <${NodeActions} node=${node} />
    </header>
    <${DrainPanel} node=${node} />
    <div class="tiles tiles-4">
      <div class="tile"><div class="tile-label">In flight</div><div class="tile-value" data-testid="node-inflight">${c.inFlight == null ? DASH : fmtInt(c.inFlight)}</div><div class="tile-sub">of ${fmtInt(node.spec?.maxParallel)} slots</div></div>
      <div class="tile"><div class="tile-label">Processed</div><div class="tile-value" data-testid="node-processed">${c.processed == null ? DASH : fmtInt(c.processed)}</div><div class="tile-sub">${c.errors ? `${fmtInt(c.errors)} failed` : 'since the router started'}</div></div>
      <div class="tile"><div class="tile-label">Latency p50 / p95</div><div class="tile-value">${c.stats ? `${fmtMs(c.stats.latencyMs?.p50)}` : DASH}</div><div class="tile-sub">${c.stats ? `p95 ${fmtMs(c.stats.latencyMs?.p95)}` : ''}</div></div>
      <div class="tile"><div class="tile-label">First token p50 / p95</div><div class="tile-value">${c.stats ? `${fmtMs(c.stats.ttftMs?.p50)}` : DASH}</div><div class="tile-sub">${c.stats ? `p95 ${fmtMs(c.stats.ttftMs?.p95)}` : ''}</div></div>
    </div>
    <${Card} title="Over time" id="node-charts"><${NodeCharts} node=${node} now=${now} /><//>
    <div class="two-col">
      <${Card} title="Details" id="node-facts"><${Facts} node=${node} now=${now} /><//>
      <${Card} title="Models" id="node-models"><${Models} node=${node} /><//>
    </div>
    <${Card} title="Conditions" id="node-conds"><${Conditions} node=${node} now=${now} /><//>
    <${Card} title="Recent requests" id="node-reqs"
      actions=${html`<a href=${href('/requests', { node: name })}>All requests on ${name} →</a>`}>
      <${RequestsTable} records=${recent} now=${now} hideNode />
    <//>
    <${Card} title="Events" id="node-events">
      <${EventsTable} events=${events} now=${now} limit=${20} hideObject />
    <//>
  </div>`;
}
