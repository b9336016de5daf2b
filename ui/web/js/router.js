// History-API routing under /dashboard; the server answers every view path
// with the same page.

import { useEffect, useState } from './lib.js';

export const BASE = '/dashboard';

export function href(path = '', params) {
  const q = params ? new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString() : '';
  return `${BASE}${path}${q ? `?${q}` : ''}`;
}

export function parseRoute(loc = window.location) {
  const rest = loc.pathname.startsWith(BASE) ? loc.pathname.slice(BASE.length) : loc.pathname;
  const parts = rest.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  const params = new URLSearchParams(loc.search);
  const [first, second] = parts;
  if (parts.length === 0) return { view: 'overview', params };
  if (parts.length === 1 && ['nodes', 'models', 'requests', 'events'].includes(first)) {
    return { view: first, params };
  }
  if (parts.length === 2 && first === 'nodes') return { view: 'node', name: second, params };
  return { view: 'notfound', params };
}

const listeners = new Set();
function notify() {
  for (const fn of listeners) fn(parseRoute());
}

export function navigate(to, { replace = false } = {}) {
  if (replace) window.history.replaceState(null, '', to);
  else window.history.pushState(null, '', to);
  notify();
  if (!replace) window.scrollTo(0, 0);
}

window.addEventListener('popstate', notify);

// Same-origin links under /dashboard change the view without a reload.
document.addEventListener('click', (e) => {
  const a = e.target.closest?.('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0) return;
  if (e.metaKey || e.ctrlKey || e.shiftKey || e.altKey || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, window.location.href);
  if (url.origin !== window.location.origin || !url.pathname.startsWith(BASE)) return;
  if (url.pathname.startsWith(`${BASE}/assets/`)) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});

export function useRoute() {
  const [route, setRoute] = useState(parseRoute);
  useEffect(() => {
    listeners.add(setRoute);
    return () => listeners.delete(setRoute);
  }, []);
  return route;
}
