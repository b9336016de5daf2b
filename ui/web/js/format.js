// Numbers, durations and times as people read them.

const num = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const num1 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const num2 = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export const DASH = '—';

export function fmtInt(n) {
  return n == null || Number.isNaN(n) ? DASH : num.format(n);
}

/** 0.04 → "0.04", 12.3 → "12.3", 1234 → "1,234". */
export function fmtNum(n) {
  if (n == null || Number.isNaN(n)) return DASH;
  const a = Math.abs(n);
  if (a >= 100) return num.format(n);
  if (a >= 10) return num1.format(n);
  return num2.format(n);
}

export function fmtPct(p) {
  if (p == null || Number.isNaN(p)) return DASH;
  return `${p >= 10 || p === 0 ? Math.round(p) : num1.format(p)}%`;
}

/** Milliseconds → "840 ms" / "1.24 s" / "2m 5s". */
export function fmtMs(ms) {
  if (ms == null || Number.isNaN(ms)) return DASH;
  if (ms < 1) return `${num2.format(ms)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${num2.format(ms / 1000)} s`;
  return fmtDuration(ms);
}

/** A long span, two units: "3d 4h", "5h 12m", "12m 5s", "42s". */
export function fmtDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return DASH;
  let s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s}s`;
  return `${s}s`;
}

export function fmtAgo(ts, now = Date.now()) {
  const t = toMillis(ts);
  if (t == null) return DASH;
  const d = now - t;
  if (d < 1500) return 'just now';
  return `${fmtDuration(d)} ago`;
}

export function fmtBytes(n) {
  if (n == null || Number.isNaN(n)) return DASH;
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${i === 0 ? v : num1.format(v)} ${units[i]}`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

/** Clock time today, date and time otherwise. */
export function fmtTime(ts, now = Date.now()) {
  const t = toMillis(ts);
  if (t == null) return DASH;
  const sameDay = new Date(t).toDateString() === new Date(now).toDateString();
  return sameDay ? timeFmt.format(t) : dateTimeFmt.format(t);
}

export function fmtDateTime(ts) {
  const t = toMillis(ts);
  return t == null ? '' : dateTimeFmt.format(t);
}

export function toMillis(ts) {
  if (ts == null || ts === '') return null;
  if (typeof ts === 'number') return ts;
  const t = Date.parse(ts);
  return Number.isNaN(t) ? null : t;
}

/** The p-quantile (0..1) of numbers, by the nearest rank the proxy uses. */
export function quantile(values, p) {
  if (!values.length) return null;
  const v = [...values].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.round((v.length - 1) * p))];
}

export function plural(n, one, many = `${one}s`) {
  return `${fmtInt(n)} ${n === 1 ? one : many}`;
}

/** A model name as Ollama compares them: `llama3` is `llama3:latest`. */
export function canonicalModel(model) {
  if (!model) return '';
  const last = model.split('/').pop();
  return last.includes(':') ? model : `${model}:latest`;
}
