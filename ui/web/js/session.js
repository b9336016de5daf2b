// Who is signed in. The session itself is an HttpOnly cookie the page
// cannot read: the server says who it stands for at /dashboard/session, and
// every same-origin fetch sends it. Admins see actions; viewers do not.

const SESSION = '/dashboard/session';

/** `me` is `{name, role}` once signed in, else null; `note` says why the
 * sign-in form is shown again. */
export const session = { me: null, note: '' };

const listeners = new Set();

export function subscribeSession(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function changed() {
  for (const fn of listeners) fn((v) => v + 1);
}

export const isAdmin = () => session.me?.role === 'admin';

async function json(res) {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** Asks the server who the cookie signs in; null when nobody. */
export async function loadSession() {
  const res = await fetch(SESSION, { headers: { Accept: 'application/json' } });
  session.me = res.ok ? await json(res) : null;
  return session.me;
}

/** Signs in with a key; resolves to `{name, role}` or throws an Error with the server's message. */
export async function signIn(key) {
  const res = await fetch(SESSION, {
    method: 'POST',
    headers: { Accept: 'application/json', 'Content-Type': 'application/json' },
    body: JSON.stringify({ key: key.trim() }),
  });
  const body = await json(res);
  if (!res.ok) throw new Error(body?.message || `HTTP ${res.status}`);
  session.me = body;
  session.note = '';
  changed();
  return body;
}

export async function signOut() {
  await fetch(SESSION, { method: 'DELETE' }).catch(() => null);
  session.me = null;
  location.assign('/dashboard/');
}

/** A fetch answered 401: the session ended (signed out elsewhere, expired,
 * its key disabled, the server restarted). The page shows the sign-in form
 * in place, and carries on where it was once signed in again. */
export function signedOut() {
  if (!session.me) return;
  session.me = null;
  session.note = 'Your session ended. Sign in again to continue.';
  changed();
}
