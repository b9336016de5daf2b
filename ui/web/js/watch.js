// A Kubernetes-style informer over herd's watch API: list, then watch from
// the list's resourceVersion; resume from the last event or BOOKMARK after a
// dropped stream or a server restart; relist when the server answers 410.

import { API, ApiError, backoff, get, readNdjson, sleep } from './api.js';
import { signedOut } from './session.js';

class Gone extends Error {}

/** A watch stream that sends nothing, not even a bookmark, for this long is
 * treated as dead (the server bookmarks idle streams every 30 s by default). */
const IDLE_MS = 75_000;

export class Informer {
  /**
   * @param {string} plural  `nodes`, `modelassignments`, `events`
   * @param {(type: string, obj: object|null, old: object|undefined) => void} onEvent
   * @param {() => void} onState  called when `state` changes
   */
  constructor(plural, onEvent, onState) {
    this.plural = plural;
    this.items = new Map();
    this.rv = null;
    /** `connecting` (never listed yet), `live`, or `retrying`. */
    this.state = 'connecting';
    this.error = '';
    this.synced = false;
    this.onEvent = onEvent;
    this.onState = onState;
    this.stopper = new AbortController();
  }

  start() {
    this.loop();
    return this;
  }

  stop() {
    this.stopper.abort();
  }

  setState(state, error = '') {
    if (state === this.state && error === this.error) return;
    this.state = state;
    this.error = error;
    this.onState();
  }

  async loop() {
    const signal = this.stopper.signal;
    let attempt = 0;
    while (!signal.aborted) {
      let progressed = false;
      try {
        if (this.rv == null) {
          await this.relist(signal);
          progressed = true;
        }
        await this.watch(signal, () => {
          progressed = true;
        });
        // The server ended the stream (it is shutting down, or restarting).
        this.setState('retrying', 'The server closed the stream.');
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof Gone) {
          this.rv = null;
          continue;
        }
        this.setState('retrying', e.message || String(e));
      }
      if (progressed) attempt = 0;
      await sleep(backoff(attempt), signal);
      attempt += 1;
    }
  }

  async relist(signal) {
    const list = await get(`${API}/${this.plural}`, { signal });
    const fresh = new Map();
    for (const obj of list.items || []) fresh.set(obj.metadata.name, obj);
    for (const [name, old] of this.items) {
      if (!fresh.has(name)) this.onEvent('DELETED', old, old);
    }
    const previous = this.items;
    this.items = fresh;
    for (const [name, obj] of fresh) {
      this.onEvent(previous.has(name) ? 'MODIFIED' : 'ADDED', obj, previous.get(name));
    }
    this.rv = list.metadata?.resourceVersion || '0';
    this.synced = true;
    this.onState();
  }

  async watch(signal, onProgress) {
    const ctl = new AbortController();
    const stop = () => ctl.abort();
    signal.addEventListener('abort', stop);
    try {
      const url = `${API}/${this.plural}?watch=true&resourceVersion=${encodeURIComponent(this.rv)}`;
      let res;
      try {
        res = await fetch(url, { signal: ctl.signal, headers: { Accept: 'application/x-ndjson' } });
      } catch (e) {
        throw new Error(`The server could not be reached (${e.message}).`);
      }
      if (!res.ok) {
        const body = await res.json().catch(() => null);
        if (res.status === 410) throw new Gone();
        if (res.status === 401) signedOut();
        throw new ApiError(res.status, body);
      }
      this.setState('live');
      await readNdjson(
        res,
        (ev) => {
          this.apply(ev);
          onProgress();
        },
        { idleMs: IDLE_MS, abort: () => ctl.abort() },
      );
    } finally {
      signal.removeEventListener('abort', stop);
      ctl.abort();
    }
  }

  /** Resume from `rv` from now on, if it is newer than where we are. */
  advance(rv) {
    if (rv != null && (this.rv == null || Number(rv) > Number(this.rv))) this.rv = String(rv);
  }

  apply(ev) {
    const obj = ev.object;
    switch (ev.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const name = obj.metadata.name;
        const old = this.items.get(name);
        this.items.set(name, obj);
        this.advance(obj.metadata.resourceVersion);
        this.onEvent(old ? 'MODIFIED' : 'ADDED', obj, old);
        break;
      }
      case 'DELETED': {
        const name = obj.metadata.name;
        const old = this.items.get(name);
        this.items.delete(name);
        this.advance(obj.metadata.resourceVersion);
        this.onEvent('DELETED', obj, old);
        break;
      }
      case 'BOOKMARK':
        this.advance(obj?.metadata?.resourceVersion);
        break;
      case 'ERROR':
        if (obj?.code === 410) throw new Gone();
        throw new ApiError(obj?.code || 500, obj);
      default:
        break;
    }
  }
}
