// Small building blocks shared by the views.

import { html, useEffect, useLayoutEffect, useRef, useState } from './lib.js';
import { store } from './store.js';

// --- theme -------------------------------------------------------------------

const dark = window.matchMedia('(prefers-color-scheme: dark)');
let themeVersion = 0;
const themeListeners = new Set();
dark.addEventListener('change', () => {
  themeVersion += 1;
  for (const fn of themeListeners) fn(themeVersion);
});

/** Changes whenever the system switches between light and dark. */
export function useTheme() {
  const [v, setV] = useState(themeVersion);
  useEffect(() => {
    themeListeners.add(setV);
    return () => themeListeners.delete(setV);
  }, []);
  return v;
}

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

// --- status and values -------------------------------------------------------

export function Badge({ tone = 'neutral', children, title }) {
  return html`<span class="badge badge-${tone}" title=${title}>${children}</span>`;
}

/** A dot and a word, so status never depends on colour alone. */
export function StatusDot({ tone, label, title }) {
  return html`<span class="status status-${tone}" title=${title}
    ><span class="dot" aria-hidden="true"></span>${label}</span
  >`;
}

/** A percentage as a thin bar with its number. */
export function Meter({ value, label }) {
  if (value == null || Number.isNaN(value)) return html`<span class="muted">—</span>`;
  const v = Math.max(0, Math.min(100, value));
  const tone = v >= 90 ? 'danger' : v >= 75 ? 'warn' : 'ok';
  return html`<span class="meter" title=${label ? `${label} ${v.toFixed(1)}%` : undefined}>
    <span class="meter-track" aria-hidden="true"
      ><span class="meter-fill meter-${tone}" style=${{ width: `${v}%` }}></span
    ></span>
    <span class="num">${v >= 10 ? Math.round(v) : v.toFixed(1)}%</span>
  </span>`;
}

export function Tile({ label, value, sub, tone, testid }) {
  return html`<div class="tile" data-testid=${testid}>
    <div class="tile-label">${label}</div>
    <div class=${`tile-value${tone ? ` tone-${tone}` : ''}`}>${value}</div>
    ${sub ? html`<div class="tile-sub">${sub}</div>` : null}
  </div>`;
}

export function Card({ title, actions, children, class: cls = '', id }) {
  return html`<section class=${`card ${cls}`} aria-labelledby=${id ? `${id}-h` : undefined}>
    ${title || actions
      ? html`<header class="card-head">
          <h2 id=${id ? `${id}-h` : undefined}>${title}</h2>
          ${actions ? html`<div class="card-actions">${actions}</div>` : null}
        </header>`
      : null}
    ${children}
  </section>`;
}

export function Empty({ children }) {
  return html`<div class="empty">${children}</div>`;
}

/** A sortable column header: a real button, with aria-sort on the cell. */
export function SortTh({ id, sort, setSort, children, num }) {
  const active = sort.key === id;
  const dir = active ? sort.dir : null;
  const ariaSort = dir === 'asc' ? 'ascending' : dir === 'desc' ? 'descending' : 'none';
  const next = () =>
    setSort({ key: id, dir: active && sort.dir === 'asc' ? 'desc' : active ? 'asc' : num ? 'desc' : 'asc' });
  return html`<th scope="col" aria-sort=${ariaSort} class=${num ? 'num' : ''}>
    <button type="button" class="th-sort" onClick=${next}>
      ${children}<span class="sort-mark" aria-hidden="true">${dir === 'asc' ? '▲' : dir === 'desc' ? '▼' : ''}</span>
    </button>
  </th>`;
}

export function compareBy(get, dir) {
  const m = dir === 'desc' ? -1 : 1;
  return (a, b) => {
    const x = get(a);
    const y = get(b);
    if (x == null && y == null) return 0;
    if (x == null) return 1;
    if (y == null) return -1;
    if (typeof x === 'number' && typeof y === 'number') return (x - y) * m;
    return String(x).localeCompare(String(y), undefined, { numeric: true }) * m;
  };
}

// --- charts (uPlot) ------------------------------------------------------------

/**
 * A time chart. `data` is `[times in ms, ...series values]`; `series` names
 * each line with a CSS colour variable. The chart is decoration for sighted
 * users: `summary` says the same in words.
 */
export function Chart({ title, summary, series, data, height = 150, fmt = String, kind = 'line', yMax, xRange, integer, testid }) {
  const box = useRef(null);
  const plot = useRef(null);
  const theme = useTheme();
  const key = `${kind}|${series.map((s) => s.label).join('|')}`;
  const secs = [data[0].map((t) => t / 1000), ...data.slice(1)];
  const latest = useRef(secs);
  latest.current = secs;
  const range = useRef(xRange);
  range.current = xRange;

  useLayoutEffect(() => {
    const el = box.current;
    if (!el || !window.uPlot) return undefined;
    const uPlot = window.uPlot;
    const muted = cssVar('--muted');
    const grid = cssVar('--grid');
    const axis = {
      stroke: muted,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1, size: 4 },
      font: '11px system-ui, sans-serif',
    };
    const clock = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    const clockS = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' });
    const opts = {
      width: Math.max(200, el.clientWidth),
      height,
      legend: { show: false },
      cursor: { y: false, points: { size: 6 }, drag: { x: false, y: false } },
      scales: {
        x: {
          time: true,
          range: (u, min, max) => {
            const r = range.current;
            return r ? [r[0] / 1000, r[1] / 1000] : [min, max];
          },
        },
        y: {
          range: (u, min, max) => [0, Math.max(yMax ?? 0, (max || 0) * 1.15, yMax ? 0 : 1)],
        },
      },
      axes: [
        {
          ...axis,
          space: 64,
          values: (u, splits, ax, space, incr) => splits.map((v) => (incr < 60 ? clockS : clock).format(v * 1000)),
        },
        {
          ...axis,
          size: 56,
          incrs: integer ? [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 1e5, 1e6] : undefined,
          values: (u, vals) => vals.map((v) => fmt(v)),
        },
      ],
      series: [
        {},
        ...series.map((s) => ({
          label: s.label,
          stroke: cssVar(s.color),
          fill: kind === 'bars' ? cssVar(s.color) : s.fill ? cssVar(s.fill) : undefined,
          width: kind === 'bars' ? 0 : 1.75,
          points: { show: kind === 'points', size: 4, fill: cssVar(s.color) },
          paths:
            kind === 'bars'
              ? uPlot.paths.bars({ size: [0.75, 24], align: 1 })
              : kind === 'points'
                ? () => null
                : kind === 'step'
                  ? uPlot.paths.stepped({ align: 1 })
                  : undefined,
          spanGaps: true,
          value: (u, v) => (v == null ? '—' : fmt(v)),
        })),
      ],
    };
    plot.current = new uPlot(opts, latest.current, el);
    const ro = new ResizeObserver(() => {
      const w = el.clientWidth;
      if (w > 0 && plot.current) plot.current.setSize({ width: w, height });
    });
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [key, theme, height, integer]);

  useEffect(() => {
    plot.current?.setData(secs, true);
  });

  return html`<figure class="chart" data-testid=${testid}>
    <figcaption>
      <span class="chart-title">${title}</span>
      ${series.length > 1
        ? html`<span class="legend" aria-hidden="true">
            ${series.map((s) => html`<span class="legend-item"><span class=${`swatch swatch-${s.color.slice(2)}`}></span>${s.label}</span>`)}
          </span>`
        : null}
      <span class="chart-summary">${summary}</span>
    </figcaption>
    <div class="chart-box" ref=${box} aria-hidden="true"></div>
    ${data[0].length === 0 ? html`<div class="chart-empty" aria-hidden="true">No data yet</div>` : null}
  </figure>`;
}

// --- dialogs -------------------------------------------------------------------

let openDialog = null;
const dialogListeners = new Set();
function setDialog(d) {
  openDialog = d;
  for (const fn of dialogListeners) fn(d);
}

/** Asks before acting; resolves true when confirmed. */
export function confirmAction({ title, body, confirm = 'Confirm', danger = false }) {
  return new Promise((resolve) => {
    setDialog({ title, body, confirm, danger, resolve });
  });
}

export function DialogHost() {
  const [d, setD] = useState(openDialog);
  const ref = useRef(null);
  useEffect(() => {
    dialogListeners.add(setD);
    return () => dialogListeners.delete(setD);
  }, []);
  useLayoutEffect(() => {
    const el = ref.current;
    if (d && el && !el.open) el.showModal();
    if (!d && el?.open) el.close();
  }, [d]);
  const finish = (ok) => {
    if (!d) return;
    d.resolve(ok);
    setDialog(null);
  };
  return html`<dialog
    ref=${ref}
    class="confirm"
    aria-labelledby="confirm-title"
    onCancel=${(e) => {
      e.preventDefault();
      finish(false);
    }}
  >
    ${d
      ? html`<form method="dialog" onSubmit=${(e) => {
          e.preventDefault();
          finish(true);
        }}>
          <h2 id="confirm-title">${d.title}</h2>
          <div class="confirm-body">${d.body}</div>
          <div class="dialog-actions">
            <button type="button" class="btn" onClick=${() => finish(false)} autofocus=${d.danger}>Cancel</button>
            <button type="submit" class=${`btn ${d.danger ? 'btn-danger' : 'btn-primary'}`} autofocus=${!d.danger}>
              ${d.confirm}
            </button>
          </div>
        </form>`
      : null}
  </dialog>`;
}

export function Toasts() {
  return html`<div class="toasts" role="status" aria-live="polite">
    ${store.toasts.map((t) => html`<div key=${t.id} class=${`toast toast-${t.kind}`}>${t.message}</div>`)}
  </div>`;
}
