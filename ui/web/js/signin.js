// The sign-in page: a key (admin or viewer) becomes a session cookie. A
// one-time link from `herd up` signs in without typing anything and lands
// here only when the link was already used or has expired.

import { html, useState } from './lib.js';
import { session, signIn } from './session.js';

const LINK_NOTE = 'That sign-in link was already used or has expired. Run herd up again for a new one, or sign in with a key.';

export function SignInView() {
  const [key, setKey] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const fromLink = new URLSearchParams(location.search).get('signin') === 'link';
  const note = session.note || (fromLink ? LINK_NOTE : '');
  const submit = async (e) => {
    e.preventDefault();
    if (!key.trim()) {
      setError('Paste an admin or viewer key.');
      return;
    }
    setBusy(true);
    setError('');
    try {
      await signIn(key);
      if (fromLink) history.replaceState(null, '', location.pathname);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="view signin" data-testid="signin">
    <h1 tabindex="-1">Sign in to herd</h1>
    ${note ? html`<div class="notice notice-warn" role="status" data-testid="signin-note">${note}</div>` : null}
    <form onSubmit=${submit} novalidate class="signin-form">
      <div class="field">
        <label for="signin-key">API key</label>
        <input id="signin-key" type="password" autocomplete="current-password" spellcheck="false"
          value=${key} onInput=${(e) => setKey(e.currentTarget.value)} data-testid="signin-key"
          aria-invalid=${error ? 'true' : 'false'} aria-describedby="signin-help${error ? ' signin-err' : ''}" />
        <p class="help" id="signin-help">An admin or viewer key (<code>herd_…</code>). On the server's machine the admin key is in <code>admin.key</code>
          in herd's data directory; <code>herd up</code> prints a one-time sign-in link instead.</p>
        ${error ? html`<p class="field-error" id="signin-err" role="alert" data-testid="signin-error">${error}</p>` : null}
      </div>
      <button type="submit" class="btn btn-primary" disabled=${busy} data-testid="signin-submit">Sign in</button>
    </form>
  </div>`;
}
