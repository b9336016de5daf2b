// Talking to herd's API (same origin, with the session cookie): JSON calls
// whose failures carry the server's `Status`, and NDJSON streams read line by
// line. A 401 means the session ended: the page goes back to sign-in.

import { signedOut } from './session.js';

export const API = '/apis/herd/v1';

/** A failed call: `code` is the HTTP status (0 when the server was not reached). */
export class ApiError extends Error {
  constructor(code, body) {
    super(body?.message || `HTTP ${code}`);
    this.code = code;
    this.reason = body?.reason || '';
    this.status = body;
  }

  /** Field problems as [{field, message}], from `details.causes` or, for a
   * decoding error, from the message ("invalid value at spec.replicas: …"). */
  get causes() {
    const causes = this.status?.details?.causes;
    if (Array.isArray(causes) && causes.length) {
      return causes.map((c) => ({ field: c.field || '', message: c.message || c.reason || '' }));
    }
    const m = /^invalid value at ([\w.[\]]+): (.*)$/s.exec(this.message);
    if (m) return [{ field: m[1], message: m[2] }];
    return [];
  }
}

export async function call(method, path, body, { contentType = 'application/json', signal } = {}) {
  const init = { method, headers: { Accept: 'application/json' }, signal };
  if (body !== undefined) {
    init.headers['Content-Type'] = contentType;
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { message: `The server could not be reached (${e.message}).` });
  }
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (res.status === 401) signedOut();
  if (!res.ok) throw new ApiError(res.status, json ?? { message: text || res.statusText });
  return json;
}

export const get = (path, opts) => call('GET', path, undefined, opts);

/**
 * Reads an NDJSON response, calling `onLine(object)` per line. Resolves when
 * the server ends the stream; rejects on a network error or when nothing
 * (not even a bookmark) arrived for `idleMs`, which catches a server that
 * vanished without closing the connection.
 */
export async function readNdjson(res, onLine, { idleMs = 0, abort } = {}) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let timer = 0;
  const arm = () => {
    if (!idleMs) return;
    clearTimeout(timer);
    timer = setTimeout(() => abort?.(new Error(`no data for ${idleMs / 1000} s`)), idleMs);
  };
  arm();
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      arm();
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line) onLine(JSON.parse(line));
      }
    }
    const rest = (buf + decoder.decode()).trim();
    if (rest) onLine(JSON.parse(rest));
  } finally {
    clearTimeout(timer);
    reader.releaseLock?.();
  }
}

/** Exponential backoff with jitter: 0.25 s doubling, capped at `cap` ms. */
export function backoff(attempt, cap = 2500) {
  const base = Math.min(cap, 250 * 2 ** attempt);
  return base / 2 + Math.random() * (base / 2);
}

export const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      resolve();
    });
  });
