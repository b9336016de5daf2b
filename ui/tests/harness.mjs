// What the browser tests drive: a real `herd server` process, real
// `fake-ollama` processes as the nodes' Ollamas, nodes simulated through the
// REST API the way a nodelet writes them (register, then heartbeat the
// status with a conditional PUT), and Debian's Chromium via playwright-core.
// The server enforces keys: the harness calls the API with the admin key the
// server wrote to its data directory on first start.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(here, '../..');
export const HERD = path.resolve(ROOT, process.env.HERD_BIN || 'target/debug/herd');
export const FAKE_OLLAMA = path.resolve(ROOT, process.env.FAKE_OLLAMA_BIN || 'target/debug/fake-ollama');
export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
export const ARTIFACTS = path.join(ROOT, 'test-artifacts/ui');

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function tempDir(prefix) {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

/** Starts a process and resolves with the first match of `pattern` in its
 * output; keeps draining its output so it never blocks. */
function startProcess(cmd, args, { env, pattern, what, timeoutMs = 30_000 }) {
  const proc = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err, m) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        proc.kill('SIGKILL');
        reject(new Error(`${what}: ${err}\n--- output ---\n${log.join('').slice(-4000)}`));
      } else resolve({ proc, match: m, log });
    };
    const timer = setTimeout(() => finish(`no "${pattern}" within ${timeoutMs} ms`), timeoutMs);
    const onData = (chunk) => {
      const text = chunk.toString();
      log.push(text);
      if (log.length > 400) log.splice(0, 200);
      const m = pattern.exec(log.join(''));
      if (m) finish(null, m);
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('error', (e) => finish(`could not start ${cmd}: ${e.message}`));
    proc.on('exit', (code, sig) => finish(`exited (${code ?? sig}) before it was ready`));
  });
}

async function stopProcess(proc, { timeoutMs = 10_000 } = {}) {
  if (proc.exitCode != null || proc.signalCode != null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  await exited;
  clearTimeout(t);
}

// --- herd server ---------------------------------------------------------------

/** Whether a controller runs in the server: it writes `Ready` on a node
 * nobody else touches (NoHeartbeat) within moments of its creation. */
export async function hasController(server, waitMs = 2500) {
  const name = 'controller-probe';
  await server.api('POST', '/nodes', { apiVersion: 'herd/v1', kind: 'Node', metadata: { name }, spec: {} });
  const end = Date.now() + waitMs;
  let found = false;
  while (!found && Date.now() < end) {
    const { body } = await server.api('GET', `/nodes/${name}`);
    found = (body.status?.conditions || []).some((c) => c.type === 'Ready');
    if (!found) await sleep(50);
  }
  await server.api('DELETE', `/nodes/${name}`);
  return found;
}

export class Server {
  constructor(dataDir) {
    this.dataDir = dataDir;
  }

  /** Starts on `listen` (127.0.0.1:0 picks a port; a restart reuses it). */
  async start(listen = this.url ? new URL(this.url).host : '127.0.0.1:0') {
    const { proc, match } = await startProcess(
      HERD,
      ['server', '--listen', listen, '--data-dir', this.dataDir],
      {
        what: 'herd server',
        pattern: /listening on (http:\/\/[0-9.]+:\d+)/,
        env: {
          RUST_LOG: process.env.RUST_LOG || 'info',
          NO_COLOR: '1',
          // Read only when the controller runs inside `herd server`:
          // millisecond-scale timers so "heartbeats stop" shows in seconds.
          HERD_HEARTBEAT_GRACE: '2s',
          HERD_PROBE_INTERVAL: '500ms',
          HERD_PROBE_TIMEOUT: '500ms',
          HERD_RESYNC: '5s',
        },
      },
    );
    this.proc = proc;
    this.url = match[1];
    this.adminKey = await readKeyFile(path.join(this.dataDir, 'admin.key'));
    return this;
  }

  /** A one-time sign-in link, asked for the way an admin (or `herd up`) does. */
  async signinLink(key = this.adminKey) {
    const res = await fetch(`${this.url}/dashboard/links`, { method: 'POST', headers: { Authorization: `Bearer ${key}` } });
    const body = await res.json();
    if (res.status !== 201) throw new Error(`POST /dashboard/links: ${res.status} ${JSON.stringify(body)}`);
    return body.url;
  }

  /** A new session cookie's value for `key`, signed in over HTTP. */
  async sessionCookie(key = this.adminKey) {
    const res = await fetch(`${this.url}/dashboard/session`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ key }),
    });
    const cookie = /herd_session=([^;]+)/.exec(res.headers.get('set-cookie') || '');
    if (!res.ok || !cookie) throw new Error(`POST /dashboard/session: ${res.status} ${await res.text()}`);
    return cookie[1];
  }

  /** Makes an ApiKey with `role` and returns its token (shown once, on create). */
  async createKey(name, role) {
    const { body } = await this.api('POST', '/apikeys', { apiVersion: 'herd/v1', kind: 'ApiKey', metadata: { name }, spec: { role } });
    if (!body?.status?.secret) throw new Error(`creating key ${name}: no secret in the answer`);
    return body.status.secret;
  }

  async stop() {
    if (this.proc) await stopProcess(this.proc);
  }

  async api(method, p, body, { contentType = 'application/json', ok = true } = {}) {
    const auth = { Authorization: `Bearer ${this.adminKey}` };
    const res = await fetch(`${this.url}/apis/herd/v1${p}`, {
      method,
      headers: body === undefined ? auth : { ...auth, 'Content-Type': contentType },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    const json = text ? JSON.parse(text) : null;
    if (ok && !res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
    return { status: res.status, body: json };
  }

  async has(p) {
    const res = await fetch(`${this.url}${p}`, { headers: { Authorization: `Bearer ${this.adminKey}` } });
    await res.arrayBuffer();
    return res.status !== 404;
  }
}

/** The key in a file the server wrote (it appears right after the server starts). */
async function readKeyFile(file, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > end) throw new Error(`${file} did not appear within ${timeoutMs} ms`);
    await sleep(50);
  }
  return readFileSync(file, 'utf8').trim();
}

// --- fake Ollama -----------------------------------------------------------------

export async function startFakeOllama({ models, ttftMs = 40, tokens = 12, tokensPerSec = 200, parallel = 4 }) {
  const home = tempDir('herd-ui-fake-');
  const { proc, match } = await startProcess(
    FAKE_OLLAMA,
    [
      'serve',
      '--listen', '127.0.0.1:0',
      '--models', models.join(','),
      '--ttft-ms', String(ttftMs),
      '--tokens', String(tokens),
      '--tokens-per-sec', String(tokensPerSec),
      '--num-parallel', String(parallel),
    ],
    { what: 'fake-ollama', pattern: /Listening on ([0-9.]+:\d+)/, env: { HOME: home } },
  );
  const url = `http://${match[1]}`;
  const version = (await (await fetch(`${url}/api/version`)).json()).version;
  return {
    url,
    version,
    stop: async () => {
      await stopProcess(proc);
      rmSync(home, { recursive: true, force: true });
    },
  };
}

// --- a node, as its nodelet would write it ---------------------------------------------

const NODELET_CONDITIONS = ['NodeletReady', 'OllamaInstalled', 'OllamaRunning'];

export class SimNode {
  /**
   * @param {Server} server
   * @param {object} o  name, ollama ({url, version}), ip, machineName, models [{name, loaded}],
   *   controller (true when herd server computes Ready itself)
   */
  constructor(server, o) {
    this.server = server;
    this.name = o.name;
    this.o = o;
    this.startTime = new Date(Date.now() - (o.uptimeMs ?? 3 * 3600_000 + 25 * 60_000)).toISOString();
    this.cpu = o.cpu ?? 20 + Math.random() * 30;
    this.mem = o.mem ?? 40 + Math.random() * 20;
    this.beating = false;
    this.timer = null;
    this.busy = false;
  }

  async register() {
    await this.server.api('POST', '/nodes', {
      apiVersion: 'herd/v1',
      kind: 'Node',
      metadata: { name: this.name, labels: this.o.labels || {} },
      spec: { ollamaUrl: this.o.ollama.url, maxParallel: this.o.maxParallel ?? 4 },
    });
    await this.heartbeat();
    return this;
  }

  /** GET, change what a nodelet owns, conditional PUT of the status; retried on 409. */
  async heartbeat({ nodeletReady = true } = {}) {
    for (let attempt = 0; attempt < 8; attempt += 1) {
      const { body: node } = await this.server.api('GET', `/nodes/${this.name}`);
      const now = new Date().toISOString();
      const st = node.status || {};
      const keep = (st.conditions || []).filter(
        (c) => !NODELET_CONDITIONS.includes(c.type) && !(c.type === 'Ready' && !this.o.controller),
      );
      const cond = (type, ok, reason, message = '') => {
        const old = (st.conditions || []).find((c) => c.type === type);
        const status = ok ? 'True' : 'False';
        return { type, status, reason, message, lastTransitionTime: old?.status === status ? old.lastTransitionTime : now };
      };
      const conditions = [
        ...keep,
        cond('NodeletReady', nodeletReady, nodeletReady ? 'NodeletRunning' : 'NodeletStopped', nodeletReady ? '' : 'the nodelet is shutting down'),
        cond('OllamaInstalled', true, 'Found'),
        cond('OllamaRunning', true, 'Answering'),
      ];
      // Without a controller in the server, play its part: Ready follows the nodelet.
      if (!this.o.controller) {
        conditions.unshift(cond('Ready', nodeletReady, nodeletReady ? 'Healthy' : 'NodeletStopped', nodeletReady ? '' : 'the nodelet stopped'));
      }
      this.cpu = Math.min(97, Math.max(3, this.cpu + (Math.random() - 0.5) * 12));
      this.mem = Math.min(95, Math.max(10, this.mem + (Math.random() - 0.5) * 4));
      const status = {
        ...st,
        conditions,
        lastHeartbeatTime: now,
        info: {
          machineName: this.o.machineName || this.name,
          addresses: [this.o.ip],
          os: 'linux',
          arch: 'x86_64',
          ollamaVersion: this.o.ollama.version,
          nodeletVersion: '0.1.0',
          startTime: this.startTime,
        },
        capacity: { cpus: 16, memoryBytes: 64e9, gpus: this.o.gpus || [] },
        usage: { cpuPercent: this.cpu, memoryPercent: this.mem, inFlight: 0 },
        models: this.o.models.map((m) => ({ name: m.name, loaded: !!m.loaded, sizeBytes: m.sizeBytes ?? 1.3e9 })),
        pulls: this.o.pulls || [],
      };
      const res = await this.server.api('PUT', `/nodes/${this.name}/status`, { ...node, status }, { ok: false });
      if (res.status === 200 || res.status === 201) return res.body;
      if (res.status !== 409) throw new Error(`status of ${this.name}: ${res.status} ${JSON.stringify(res.body)}`);
    }
    throw new Error(`status of ${this.name}: kept conflicting`);
  }

  /** Heartbeats every `ms` until stopped; errors (a restarting server) are retried next beat. */
  startBeating(ms = 1000) {
    this.stopBeating();
    this.beating = true;
    this.timer = setInterval(async () => {
      if (this.busy || !this.beating) return;
      this.busy = true;
      try {
        await this.heartbeat();
      } catch {
        // the server may be restarting
      } finally {
        this.busy = false;
      }
    }, ms);
  }

  stopBeating() {
    this.beating = false;
    clearInterval(this.timer);
  }

  /** What a nodelet writes when it shuts down: NodeletReady=False. */
  async markNotReady() {
    this.stopBeating();
    while (this.busy) await sleep(20);
    return this.heartbeat({ nodeletReady: false });
  }
}

// --- requests through the router ------------------------------------------------------

export async function chat(url, model, { stream = true } = {}) {
  const res = await fetch(`${url}/api/chat`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'Why is the sky blue?' }] }),
  });
  const text = await res.text();
  return { status: res.status, node: res.headers.get('x-herd-node'), text };
}

// --- the browser ---------------------------------------------------------------------------

export async function launchBrowser() {
  // playwright gives every launch a fresh, empty profile directory.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-dev-shm-usage',
    ],
  });
}

export function artifactsDir() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
