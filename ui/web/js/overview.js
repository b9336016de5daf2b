// The fleet at a glance: health, traffic, latency, and load per node.

import { html } from './lib.js';
import { store, WINDOW_MS } from './store.js';
import { href } from './router.js';
import { Card, Chart, Empty, Meter, StatusDot, Tile } from './ui.js';
import { DASH, fmtInt, fmtMs, fmtNum, fmtPct, plural } from './format.js';
import { nodeCounters, nodeStatus, sortedNodes } from './nodes.js';
import { since, summarize } from './requests.js';
import { EventList } from './events.js';

const MINUTE = 60_000;

/** Requests and failures per minute over the last hour. */
function perMinute(records, now) {
  const end = Math.floor(now / MINUTE) * MINUTE;
  const start = end - (WINDOW_MS / MINUTE - 1) * MINUTE;
  const n = WINDOW_MS / MINUTE;
  const xs = Array.from({ length: n }, (_, i) => start + i * MINUTE);
  const all = new Array(n).fill(0);
  const failed = new Array(n).fill(0);
  for (const r of since(records, start)) {
    const i = Math.floor((r._t - start) / MINUTE);
    if (i < 0 || i >= n) continue;
    all[i] += 1;
    if (r.status >= 400 || r.error) failed[i] += 1;
  }
  return { xs, all, failed, range: [start, end + MINUTE] };
}

function LoadTable({ nodes }) {
  if (!nodes.length) return html`<${Empty}>No nodes yet.<//>`;
  return html`<div class="table-wrap"><table class="table" data-testid="load-table">
    <thead><tr>
      <th scope="col">Node</th>
      <th scope="col" class="num">In flight</th>
      <th scope="col" class="num">Processed</th>
      <th scope="col" class="num">Failed</th>
      <th scope="col" class="num">p50 / p95</th>
      <th scope="col" class="num">CPU</th>
      <th scope="col" class="num">Memory</th>
    </tr></thead>
    <tbody>${nodes.map((n) => {
      const name = n.metadata.name;
      const st = nodeStatus(n);
      const c = nodeCounters(n);
      const slots = Math.max(1, n.spec?.maxParallel || 1);
      const busy = c.inFlight ?? 0;
      return html`<tr key=${name} data-node=${name}>
        <th scope="row" class="nowrap">
          <span class="name-with-dot"><${StatusDot} tone=${st.tone} label="" title=${st.label} /><a href=${href(`/nodes/${encodeURIComponent(name)}`)}>${name}</a></span>
          <span class="sr-only">${st.label}</span>
          ${n.spec?.unschedulable ? html` <span class="tag tag-warn">cordoned</span>` : null}
        </th>
        <td class="num">
          <span class="slots" title=${`${busy} of ${slots} slots busy`}>
            <span class="slots-bar" aria-hidden="true"><span class="slots-fill" style=${{ width: `${Math.min(100, (100 * busy) / slots)}%` }}></span></span>
            <span data-col="inflight">${c.inFlight == null ? DASH : fmtInt(c.inFlight)}</span>
          </span>
        </td>
        <td class="num" data-col="processed">${c.processed == null ? DASH : fmtInt(c.processed)}</td>
        <td class=${`num${c.errors ? ' tone-danger' : ''}`}>${c.errors == null ? DASH : fmtInt(c.errors)}</td>
        <td class="num nowrap">${c.stats?.latencyMs?.p50 != null ? `${fmtMs(c.stats.latencyMs.p50)} / ${fmtMs(c.stats.latencyMs.p95)}` : DASH}</td>
        <td class="num"><${Meter} value=${n.status?.usage?.cpuPercent} label="CPU" /></td>
        <td class="num"><${Meter} value=${n.status?.usage?.memoryPercent} label="Memory" /></td>
      </tr>`;
    })}</tbody>
  </table></div>`;
}

export function OverviewView() {
  const now = store.now;
  const nodes = sortedNodes();
  const online = nodes.filter((n) => nodeStatus(n).online).length;
  const cordoned = nodes.filter((n) => n.spec?.unschedulable).length;
  const m1 = summarize(since(store.records, now - MINUTE));
  const m5 = summarize(since(store.records, now - 5 * MINUTE));
  const counters = nodes.map(nodeCounters);
  const inFlight = counters.reduce((s, c) => s + (c.inFlight || 0), 0);
  const processed = counters.reduce((s, c) => s + (c.processed || 0), 0);
  const noHistory = store.requestsState === 'absent';
  const chart = perMinute(store.records, now);
  const lastHour = chart.all.reduce((a, b) => a + b, 0);
  const events = [...store.events.items.values()];
  const dash = (v) => (noHistory ? DASH : v);
  return html`<div class="view">
    <header class="view-head">
      <div>
        <h1 tabindex="-1">Overview</h1>
        <p class="view-sub">${noHistory ? 'This server keeps no request history (its proxy is not running).' : 'Rates over the last minute; latency and failures over the last 5 minutes.'}</p>
      </div>
    </header>
    <div class="tiles tiles-overview" data-testid="tiles">
      <${Tile} testid="tile-nodes" label="Nodes ready" value=${`${fmtInt(online)} / ${fmtInt(nodes.length)}`}
        tone=${nodes.length && online < nodes.length ? 'warn' : undefined}
        sub=${`${fmtInt(nodes.length - online)} offline · ${fmtInt(cordoned)} cordoned`} />
      <${Tile} testid="tile-rps" label="Requests / s" value=${dash(fmtNum(m1.count / 60))} sub=${dash(`${plural(m1.count, 'request')} in the last minute`)} />
      <${Tile} testid="tile-inflight" label="In flight" value=${fmtInt(inFlight)}
        sub=${store.stats.state === 'live' ? `${fmtInt(processed)} processed since start` : 'from the nodes’ heartbeats'} />
      <${Tile} testid="tile-errors" label="Error rate" value=${dash(fmtPct(m5.errorRate ?? 0))}
        tone=${m5.errorRate > 5 ? 'danger' : m5.errorRate > 0 ? 'warn' : undefined}
        sub=${dash(`${fmtInt(m5.errors)} of ${fmtInt(m5.count)} failed`)} />
      <${Tile} testid="tile-latency" label="Latency p50" value=${dash(fmtMs(m5.p50))} sub=${dash(`p95 ${fmtMs(m5.p95)}`)} />
      <${Tile} testid="tile-ttft" label="First token p50" value=${dash(fmtMs(m5.ttft50))} sub=${dash(`p95 ${fmtMs(m5.ttft95)}`)} />
      <${Tile} testid="tile-tps" label="Tokens / s" value=${dash(fmtNum(m1.tokensOut / 60))} sub=${dash(`${fmtInt(m1.tokensOut)} generated in the last minute`)} />
      <${Tile} testid="tile-hour" label="Last hour" value=${dash(fmtInt(lastHour))} sub=${dash(`requests · ${fmtInt(chart.failed.reduce((a, b) => a + b, 0))} failed`)} />
    </div>
    <${Card} title="Requests per minute, last hour" id="traffic">
      <${Chart} title="" testid="chart-traffic" kind="bars" height=${170}
        summary=${`${plural(lastHour, 'request')} in the last hour`}
        series=${[{ label: 'Requests', color: '--chart-1' }, { label: 'Failed', color: '--chart-danger' }]}
        data=${[chart.xs, chart.all, chart.failed]} fmt=${(v) => fmtInt(v)} xRange=${chart.range} integer />
    <//>
    <div class="two-col wide-left">
      <${Card} title="Load per node" id="load"
        actions=${html`<a href=${href('/nodes')}>All nodes →</a>`}>
        <${LoadTable} nodes=${nodes} />
      <//>
      <${Card} title="Recent events" id="recent-events"
        actions=${html`<a href=${href('/events')}>All events →</a>`}>
        <${EventList} events=${events} now=${now} limit=${7} />
      <//>
    </div>
  </div>`;
}
