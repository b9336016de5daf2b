// Everything the dashboard shows, kept live in the browser: nodes, model
// assignments and events from watch streams; request history from the
// proxy's feed; per-node counters from its stats; and time series built
// from all of them for the charts.

import { API, ApiError, backoff, get, readNdjson, sleep } from './api.js';
import { signedOut } from './session.js';
import { Informer } from './watch.js';
import { toMillis } from './format.js';

/** Charts and rates look back this far. */
export const WINDOW_MS = 60 * 60 * 1000;
/** Records asked for at start (the proxy keeps a bounded ring). */
const HISTORY_LIMIT = 5000;
/** Records always kept even when older than the window, for the Requests view. */
const KEEP_RECENT = 1000;
const MAX_RECORDS = 50_000;
const MAX_POINTS = 3600;
/** How often per-node counters (in flight, processed) are refreshed while the
 * page is visible: the proxy has no stream for them. New request records
 * refresh them at once. */
const STATS_MS = 2000;

class Series {
  constructor(fields) {
    this.t = [];
    this.fields = fields;
    for (const f of fields) this[f] = [];
  }

  push(t, values) {
    const last = this.t.length - 1;
    // One point per 250 ms is plenty; later values replace the last point.
    if (last >= 0 && t - this.t[last] < 250) {
      for (const f of this.fields) this[f][last] = values[f];
      return;
    }
    this.t.push(t);
    for (const f of this.fields) this[f].push(values[f]);
    const cut = this.t.findIndex((x) => x >= t - WINDOW_MS);
    const drop = Math.max(cut < 0 ? 0 : cut, this.t.length - MAX_POINTS);
    if (drop > 0) {
      this.t.splice(0, drop);
      for (const f of this.fields) this[f].splice(0, drop);
    }
  }
}

class Store {
  constructor() {
    this.listeners = new Set();
    this.version = 0;
    this.flushTimer = 0;
    this.now = Date.now();
    /** node name → Series of cpu, mem (heartbeats) */
    this.usage = new Map();
    /** node name → Series of inFlight (the proxy's counters) */
    this.inflight = new Map();
    /** node name → when this page first saw it appear (for a highlight) */
    this.appeared = new Map();
    /** node name → when a drain was started from this page */
    this.draining = new Map();
    this.records = [];
    this.recordKeys = new Set();
    /** `unknown` until the first answer, then `live`, `retrying` or `absent` (404). */
    this.requestsState = 'unknown';
    this.stats = { state: 'unknown', nodes: new Map(), at: 0 };
    this.toasts = [];
    this.stopper = new AbortController();
  }

  start() {
    const changed = () => this.changed();
    this.nodes = new Informer('nodes', (t, o, old) => this.onNode(t, o, old), changed).start();
    this.assignments = new Informer('modelassignments', changed, changed).start();
    this.events = new Informer('events', changed, changed).start();
    this.feedLoop();
    this.statsLoop();
    setInterval(() => {
      this.now = Date.now();
      this.changed();
    }, 1000);
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) this.kickStats(0);
    });
  }

  subscribe(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Coalesces bursts of changes into one render. */
  changed() {
    if (this.flushTimer) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = 0;
      this.version += 1;
      this.now = Date.now();
      for (const fn of this.listeners) fn(this.version);
    }, 30);
  }

  /** `live`, `connecting`, or `retrying` with the first error seen. */
  get connection() {
    const inf = [this.nodes, this.assignments, this.events].filter(Boolean);
    const broken = inf.find((i) => i.state === 'retrying');
    if (broken) return { state: 'retrying', error: broken.error };
    if (inf.some((i) => i.state === 'connecting')) return { state: 'connecting', error: '' };
    return { state: 'live', error: '' };
  }

  onNode(type, node, old) {
    const name = node.metadata.name;
    const t = Date.now();
    if (type === 'DELETED') {
      this.draining.delete(name);
    } else {
      if (!old && this.nodes?.synced) this.appeared.set(name, t);
      const u = node.status?.usage;
      if (u) {
        let s = this.usage.get(name);
        if (!s) this.usage.set(name, (s = new Series(['cpu', 'mem'])));
        s.push(t, { cpu: u.cpuPercent ?? null, mem: u.memoryPercent ?? null });
      }
      if (!node.spec?.unschedulable) this.draining.delete(name);
    }
    this.changed();
  }

  // --- request history -----------------------------------------------------

  addRecord(r) {
    const key = `${r.id}@${r.time}`;
    if (this.recordKeys.has(key)) return false;
    this.recordKeys.add(key);
    r._t = toMillis(r.time) ?? Date.now();
    r._key = key;
    const recs = this.records;
    // Usually in order; otherwise insert where it belongs.
    let i = recs.length;
    while (i > 0 && recs[i - 1]._t > r._t) i -= 1;
    recs.splice(i, 0, r);
    return true;
  }

  pruneRecords() {
    const recs = this.records;
    const cutoff = Date.now() - WINDOW_MS;
    let drop = 0;
    while (drop < recs.length - KEEP_RECENT && recs[drop]._t < cutoff) drop += 1;
    drop = Math.max(drop, recs.length - MAX_RECORDS);
    if (drop > 0) {
      for (const r of recs.splice(0, drop)) this.recordKeys.delete(r._key);
    }
  }

  async feedLoop() {
    const signal = this.stopper.signal;
    let attempt = 0;
    while (!signal.aborted) {
      let progressed = false;
      const ctl = new AbortController();
      try {
        // Open the feed first, then read the history, so nothing that
        // finishes in between is missed (duplicates are dropped by key).
        let res;
        try {
          res = await fetch(`${API}/requests?watch=true`, { signal: ctl.signal });
        } catch (e) {
          throw new Error(`The server could not be reached (${e.message}).`);
        }
        if (res.status === 404) throw new ApiError(404, await res.json().catch(() => null));
        if (res.status === 401) signedOut();
        if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
        const list = await get(`${API}/requests?limit=${HISTORY_LIMIT}`);
        for (const r of list.items || []) this.addRecord(r);
        this.pruneRecords();
        this.requestsState = 'live';
        progressed = true;
        this.changed();
        await readNdjson(res, (r) => {
          if (this.addRecord(r)) {
            this.pruneRecords();
            this.kickStats(150);
            this.changed();
          }
        });
        this.requestsState = 'retrying';
      } catch (e) {
        if (signal.aborted) return;
        this.requestsState = e instanceof ApiError && e.code === 404 ? 'absent' : 'retrying';
      } finally {
        ctl.abort();
      }
      this.changed();
      if (progressed) attempt = 0;
      // A server without the proxy will not grow one until it restarts.
      await sleep(this.requestsState === 'absent' ? 15_000 : backoff(attempt), signal);
      attempt += 1;
    }
  }

  // --- per-node counters ---------------------------------------------------

  kickStats(delay) {
    if (this.statsKick) {
      if (delay > 0) return;
      clearTimeout(this.statsKick);
    }
    this.statsKick = setTimeout(() => {
      this.statsKick = 0;
      this.statsWake?.();
    }, delay);
  }

  async statsLoop() {
    const signal = this.stopper.signal;
    while (!signal.aborted) {
      try {
        const s = await get(`${API}/requests/stats`, { signal });
        const t = Date.now();
        const nodes = new Map();
        for (const n of s.nodes || []) {
          nodes.set(n.node, n);
          let series = this.inflight.get(n.node);
          if (!series) this.inflight.set(n.node, (series = new Series(['v'])));
          series.push(t, { v: n.inFlight ?? 0 });
        }
        this.stats = { state: 'live', nodes, at: t };
      } catch (e) {
        if (signal.aborted) return;
        const absent = e instanceof ApiError && e.code === 404;
        this.stats = { ...this.stats, state: absent ? 'absent' : 'retrying' };
      }
      this.changed();
      const wait = this.stats.state === 'absent' ? 15_000 : document.hidden ? 10_000 : STATS_MS;
      await new Promise((resolve) => {
        const t = setTimeout(resolve, wait);
        this.statsWake = () => {
          clearTimeout(t);
          resolve();
        };
        signal.addEventListener('abort', resolve);
      });
      this.statsWake = null;
    }
  }

  // --- notices -------------------------------------------------------------

  toast(message, kind = 'info') {
    const id = Math.random().toString(36).slice(2);
    this.toasts = [...this.toasts, { id, message, kind }].slice(-3);
    this.changed();
    setTimeout(() => {
      this.toasts = this.toasts.filter((t) => t.id !== id);
      this.changed();
    }, 5000);
  }
}

export const store = new Store();
