// The event log: what happened to nodes and model assignments.

import { html, useState } from './lib.js';
import { store } from './store.js';
import { href } from './router.js';
import { Badge, Empty } from './ui.js';
import { fmtAgo, fmtDateTime, plural, toMillis } from './format.js';

export const eventTime = (e) => toMillis(e.spec?.eventTime) ?? toMillis(e.metadata?.creationTimestamp) ?? 0;

function ObjectLink({ obj }) {
  if (!obj) return null;
  if (obj.kind === 'Node') {
    return html`<a href=${href(`/nodes/${encodeURIComponent(obj.name)}`)}>${obj.name}</a>`;
  }
  if (obj.kind === 'ModelAssignment') {
    return html`<a href=${href('/models')}>${obj.name}</a>`;
  }
  return html`<span>${obj.name}</span>`;
}

/** Newest first. */
export function EventsTable({ events, now, limit = 200, hideObject, testid }) {
  if (!store.events.synced) return html`<${Empty}>Loading…<//>`;
  if (!events.length) return html`<${Empty}>No events.<//>`;
  const rows = events.slice().sort((a, b) => eventTime(b) - eventTime(a)).slice(0, limit);
  return html`<div class="table-wrap"><table class="table events-table" data-testid=${testid}>
    <thead><tr>
      <th scope="col">When</th>
      <th scope="col">Type</th>
      ${hideObject ? null : html`<th scope="col">Object</th>`}
      <th scope="col">Reason</th>
      <th scope="col">Message</th>
      <th scope="col">Source</th>
    </tr></thead>
    <tbody>
      ${rows.map((e) => {
        const s = e.spec || {};
        const warn = s.type === 'Warning';
        return html`<tr key=${e.metadata.name} class=${warn ? 'row-warn' : ''}>
          <td class="nowrap" title=${fmtDateTime(eventTime(e))}>${fmtAgo(eventTime(e), now)}</td>
          <td><${Badge} tone=${warn ? 'warn' : 'neutral'}>${s.type || 'Normal'}<//></td>
          ${hideObject
            ? null
            : html`<td class="nowrap"><span class="muted small">${s.involvedObject?.kind}</span> <${ObjectLink} obj=${s.involvedObject} /></td>`}
          <td class="strong">${s.reason}</td>
          <td class="wrap">${s.message}</td>
          <td class="muted">${s.source}</td>
        </tr>`;
      })}
    </tbody>
  </table></div>`;
}

export function EventsView() {
  const [type, setType] = useState('all');
  const [kind, setKind] = useState('all');
  const [q, setQ] = useState('');
  const all = [...store.events.items.values()];
  const words = q.trim().toLowerCase().split(/\s+/).filter(Boolean);
  const shown = all.filter((e) => {
    const s = e.spec || {};
    if (type !== 'all' && (s.type || 'Normal') !== type) return false;
    if (kind !== 'all' && s.involvedObject?.kind !== kind) return false;
    const hay = `${s.involvedObject?.name} ${s.reason} ${s.message} ${s.source}`.toLowerCase();
    return words.every((w) => hay.includes(w));
  });
  const warnings = all.filter((e) => e.spec?.type === 'Warning').length;
  return html`<div class="view">
    <header class="view-head">
      <div>
        <h1 tabindex="-1">Events</h1>
        <p class="view-sub">${plural(all.length, 'event')} kept · ${plural(warnings, 'warning')}</p>
      </div>
    </header>
    <div class="toolbar" role="search">
      <label class="field-inline"><span class="sr-only">Search events</span>
        <input type="search" placeholder="Search object, reason, message…" value=${q} onInput=${(e) => setQ(e.currentTarget.value)} />
      </label>
      <label class="field-inline"><span class="label-text">Type</span>
        <select value=${type} onChange=${(e) => setType(e.currentTarget.value)}>
          <option value="all">All</option><option value="Normal">Normal</option><option value="Warning">Warning</option>
        </select>
      </label>
      <label class="field-inline"><span class="label-text">Object</span>
        <select value=${kind} onChange=${(e) => setKind(e.currentTarget.value)}>
          <option value="all">All kinds</option><option value="Node">Nodes</option><option value="ModelAssignment">Model assignments</option>
        </select>
      </label>
    </div>
    <${EventsTable} events=${shown} now=${store.now} testid="events-table" />
  </div>`;
}

/** A compact, newest-first list for narrow places (the overview). */
export function EventList({ events, now, limit = 8 }) {
  if (!store.events.synced) return html`<${Empty}>Loading…<//>`;
  if (!events.length) return html`<${Empty}>No events.<//>`;
  const rows = events.slice().sort((a, b) => eventTime(b) - eventTime(a)).slice(0, limit);
  return html`<ul class="event-list" data-testid="event-list">
    ${rows.map((e) => {
      const s = e.spec || {};
      const warn = s.type === 'Warning';
      return html`<li key=${e.metadata.name} class=${warn ? 'ev-warn' : ''}>
        <div class="ev-head">
          ${warn ? html`<${Badge} tone="warn">Warning<//>` : null}
          <span class="strong">${s.reason}</span>
          <span class="muted small">${s.involvedObject?.kind} <${ObjectLink} obj=${s.involvedObject} /></span>
          <span class="ev-time muted small" title=${fmtDateTime(eventTime(e))}>${fmtAgo(eventTime(e), now)}</span>
        </div>
        ${s.message ? html`<div class="ev-msg">${s.message}</div>` : null}
      </li>`;
    })}
  </ul>`;
}
