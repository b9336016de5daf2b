// Request history: the table, the Requests view with its filters, and the
// figures the overview derives from the records.

import { html, useEffect, useRef, useState } from './lib.js';
import { store } from './store.js';
import { href, navigate } from './router.js';
import { Badge, Empty } from './ui.js';
import { DASH, canonicalModel, fmtDateTime, fmtInt, fmtMs, fmtNum, fmtTime, plural, quantile } from './format.js';

export const isError = (r) => r.status >= 400 || !!r.error;

/** Records whose arrival is at or after `from` (records are in time order). */
export function since(records, from) {
  let lo = 0;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (records[mid]._t < from) lo = mid + 1;
    else hi = mid;
  }
  return records.slice(lo);
}

/** Count, failures, percentiles and tokens over a set of records. */
export function summarize(recs) {
  const lat = recs.map((r) => r.latencyMs).filter((v) => v != null);
  const ttft = recs.map((r) => r.ttftMs).filter((v) => v != null);
  const errors = recs.filter(isError).length;
  return {
    count: recs.length,
    errors,
    errorRate: recs.length ? (100 * errors) / recs.length : null,
    p50: quantile(lat, 0.5),
    p95: quantile(lat, 0.95),
    ttft50: quantile(ttft, 0.5),
    ttft95: quantile(ttft, 0.95),
    tokensOut: recs.reduce((s, r) => s + (r.tokensOut || 0), 0),
  };
}

export function tokensPerSec(r) {
  if (!r.tokensOut) return null;
  const gen = r.latencyMs - (r.ttftMs ?? 0);
  return gen > 0 ? (r.tokensOut * 1000) / gen : null;
}

function StatusCell({ r }) {
  const tone = r.status >= 500 ? 'danger' : r.status >= 400 ? 'warn' : 'ok';
  return html`<${Badge} tone=${tone} title=${r.error || undefined}>${r.status}<//>`;
}

function Timing({ r, scale }) {
  const total = r.latencyMs || 0;
  const first = Math.min(total, r.ttftMs ?? total);
  const w = scale > 0 ? Math.max(2, (100 * total) / scale) : 0;
  const firstPart = total > 0 ? (100 * first) / total : 0;
  return html`<div class="timing" title=${`first token ${fmtMs(r.ttftMs)} · total ${fmtMs(r.latencyMs)}`}>
    <div class="timing-bar" aria-hidden="true">
      <span class="timing-total" style=${{ width: `${w}%` }}>
        <span class="timing-first" style=${{ width: `${firstPart}%` }}></span>
      </span>
    </div>
    <span class="timing-text num">${r.ttftMs != null ? html`<span class="muted">${fmtMs(r.ttftMs)} /</span> ` : null}${fmtMs(r.latencyMs)}</span>
  </div>`;
}

/** Newest first. */
export function RequestsTable({ records, now, hideNode, limit = 200, testid }) {
  if (store.requestsState === 'absent') {
    return html`<${Empty}>This server does not keep request history (its proxy is not running).<//>`;
  }
  if (!records.length) {
    return html`<${Empty}>${store.requestsState === 'unknown' ? 'Loading…' : 'No requests yet.'}<//>`;
  }
  const shown = records.slice(0, limit);
  const scale = Math.max(...shown.map((r) => r.latencyMs || 0));
  return html`<div class="table-wrap"><table class="table requests-table" data-testid=${testid}>
    <thead><tr>
      <th scope="col">Time</th>
      <th scope="col">Status</th>
      <th scope="col">Model</th>
      ${hideNode ? null : html`<th scope="col">Node</th>`}
      <th scope="col" class="col-timing">First token / total</th>
      <th scope="col" class="num">Tokens in → out</th>
      <th scope="col" class="num">Tok/s</th>
      <th scope="col">Request</th>
    </tr></thead>
    <tbody>
      ${shown.map((r) => html`<tr key=${r._key} class=${isError(r) ? 'row-error' : ''}>
        <td class="nowrap" title=${fmtDateTime(r.time)}>${fmtTime(r.time, now)}</td>
        <td class="col-status">
          <${StatusCell} r=${r} />
          ${r.error ? html`<div class="cell-sub error-text">${r.error}</div>` : null}
        </td>
        <td class="mono nowrap">${r.model || DASH}</td>
        ${hideNode
          ? null
          : html`<td class="nowrap">${r.node ? html`<a href=${href(`/nodes/${encodeURIComponent(r.node)}`)}>${r.node}</a>` : html`<span class="muted">none</span>`}</td>`}
        <td class="col-timing"><${Timing} r=${r} scale=${scale} /></td>
        <td class="num nowrap">${r.tokensIn != null || r.tokensOut != null ? `${fmtInt(r.tokensIn)} → ${fmtInt(r.tokensOut)}` : DASH}</td>
        <td class="num">${fmtNum(tokensPerSec(r))}</td>
        <td class="nowrap">
          <span class="mono">${r.method} ${r.path}</span>${r.stream ? html` <span class="tag">stream</span>` : null}
          ${r.retries ? html` <span class="tag tag-warn" title="Nodes tried before this one">${plural(r.retries, 'retry', 'retries')}</span>` : null}
        </td>
      </tr>`)}
    </tbody>
  </table></div>`;
}

const STATUS_FILTERS = {
  all: () => true,
  ok: (r) => !isError(r),
  errors: isError,
  '4xx': (r) => r.status >= 400 && r.status < 500,
  '5xx': (r) => r.status >= 500,
};


export function RequestsView({ params }) {
  const [node, setNode] = useState(params.get('node') || '');
  const [model, setModel] = useState(params.get('model') || '');
  const [status, setStatus] = useState(STATUS_FILTERS[params.get('status')] ? params.get('status') : 'all');
  const [paused, setPaused] = useState(false);
  const frozen = useRef(null);
  useEffect(() => {
    navigate(href('/requests', { node, model, status: status === 'all' ? '' : status }), { replace: true });
  }, [node, model, status]);

  if (paused && !frozen.current) frozen.current = store.records.slice();
  if (!paused) frozen.current = null;
  const source = frozen.current || store.records;
  const want = canonicalModel(model);
  const matching = source.filter(
    (r) => (!node || r.node === node) && (!model || canonicalModel(r.model) === want) && STATUS_FILTERS[status](r),
  );
  const newestFirst = matching.slice().reverse();
  const s = summarize(matching);

  const nodeNames = new Set([...store.nodes.items.keys(), ...store.records.map((r) => r.node).filter(Boolean)]);
  const models = new Set(store.records.map((r) => r.model).filter(Boolean));
  for (const n of store.nodes.items.values()) for (const m of n.status?.models || []) models.add(m.name);

  return html`<div class="view">
    <header class="view-head">
      <div>
        <h1 tabindex="-1">Requests</h1>
        <p class="view-sub">Every request the router proxied, newest first${paused ? ' · paused' : ' · live'}.</p>
      </div>
      <button type="button" class="btn" aria-pressed=${paused} onClick=${() => setPaused(!paused)} data-testid="pause">
        ${paused ? 'Resume live updates' : 'Pause live updates'}
      </button>
    </header>
    <div class="toolbar" role="search">
      <label class="field-inline"><span class="label-text">Model</span>
        <select value=${model} onChange=${(e) => setModel(e.currentTarget.value)} data-testid="req-model">
          <option value="">All models</option>
          ${[...models].sort().map((m) => html`<option value=${m}>${m}</option>`)}
        </select>
      </label>
      <label class="field-inline"><span class="label-text">Node</span>
        <select value=${node} onChange=${(e) => setNode(e.currentTarget.value)} data-testid="req-node">
          <option value="">All nodes</option>
          ${[...nodeNames].sort().map((n) => html`<option value=${n}>${n}</option>`)}
        </select>
      </label>
      <label class="field-inline"><span class="label-text">Status</span>
        <select value=${status} onChange=${(e) => setStatus(e.currentTarget.value)} data-testid="req-status">
          <option value="all">All</option>
          <option value="ok">Succeeded</option>
          <option value="errors">Failed (4xx, 5xx)</option>
          <option value="4xx">Client errors (4xx)</option>
          <option value="5xx">Server errors (5xx)</option>
        </select>
      </label>
      <span class="toolbar-count" data-testid="req-summary">
        ${plural(s.count, 'request')}${s.count
          ? ` · p50 ${fmtMs(s.p50)} · p95 ${fmtMs(s.p95)} · first token p50 ${fmtMs(s.ttft50)} · ${fmtInt(s.errors)} failed`
          : ''}
      </span>
    </div>
    <${RequestsTable} records=${newestFirst} now=${store.now} testid="requests-table" />
    ${newestFirst.length > 200 ? html`<p class="muted small">Showing the newest 200 of ${fmtInt(newestFirst.length)}.</p>` : null}
  </div>`;
}
