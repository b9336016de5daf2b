// The dashboard's shell: top bar, navigation, connection state, who is
// signed in, and the view for the current path (or the sign-in page).

import { html, render, useEffect, useRef, useState } from './lib.js';
import { store } from './store.js';
import { href, useRoute } from './router.js';
import { DialogHost, Toasts } from './ui.js';
import { fmtInt } from './format.js';
import { OverviewView } from './overview.js';
import { NodeView, NodesView, nodeStatus } from './nodes.js';
import { ModelsView } from './models.js';
import { RequestsView } from './requests.js';
import { EventsView } from './events.js';
import { loadSession, session, signOut, subscribeSession } from './session.js';
import { SignInView } from './signin.js';

const NAV = [
  ['overview', '', 'Overview'],
  ['nodes', '/nodes', 'Nodes'],
  ['models', '/models', 'Models'],
  ['requests', '/requests', 'Requests'],
  ['events', '/events', 'Events'],
];

function useStore() {
  const [, setV] = useState(0);
  useEffect(() => store.subscribe(setV), []);
  useEffect(() => subscribeSession(setV), []);
}

let started = false;

/** Watches start once someone is signed in; they keep running (retrying)
 * while the sign-in form is shown again, and pick up once it is done. */
function startOnce() {
  if (started) return;
  started = true;
  store.start();
}

function Who() {
  const me = session.me;
  return html`<span class="who" data-testid="whoami" data-role=${me.role}>
    <span class="who-name">${me.name}</span> <span class="tag">${me.role}</span>
    <button type="button" class="btn btn-small" onClick=${signOut} data-testid="signout">Sign out</button>
  </span>`;
}

function Connection() {
  const c = store.connection;
  const label = c.state === 'live' ? 'Live' : c.state === 'connecting' ? 'Connecting…' : 'Reconnecting…';
  const tone = c.state === 'live' ? 'ok' : 'warn';
  return html`<span class=${`conn conn-${tone}`} data-testid="conn" data-state=${c.state}
      title=${c.state === 'live' ? 'Receiving changes as they happen' : c.error}>
    <span class="dot" aria-hidden="true"></span>${label}
  </span>`;
}

function Logo() {
  return html`<svg class="logo" viewBox="0 0 32 32" aria-hidden="true" focusable="false">
    <circle cx="9" cy="11" r="5" class="logo-a" /><circle cx="23" cy="11" r="5" class="logo-b" />
    <circle cx="16" cy="23" r="5" class="logo-c" />
  </svg>`;
}

const vendor = (f) => new URL(`../vendor/${f}`, import.meta.url).pathname;

function App() {
  useStore();
  const route = useRoute();
  const main = useRef(null);
  const first = useRef(true);
  const conn = store.connection;
  const signedIn = !!session.me;
  if (signedIn) startOnce();

  useEffect(() => {
    if (!signedIn) {
      document.title = 'Sign in · herd';
      return;
    }
    const nav = NAV.find(([v]) => v === route.view || (route.view === 'node' && v === 'nodes'));
    document.title = `${route.view === 'node' ? route.name : nav ? nav[2] : 'Not found'} · herd`;
    if (first.current) {
      first.current = false;
      return;
    }
    // Tell screen readers and keyboard users that the page changed.
    main.current?.querySelector('h1')?.focus({ preventScroll: true });
  }, [route.view, route.name, signedIn]);

  useEffect(() => {
    if (store.nodes?.synced && !performance.getEntriesByName('herd:nodes-rendered').length) {
      performance.mark('herd:nodes-rendered');
    }
  });

  const nodes = [...(store.nodes?.items.values() || [])];
  const offline = nodes.filter((n) => !nodeStatus(n).online).length;
  let view;
  switch (route.view) {
    case 'overview':
      view = html`<${OverviewView} />`;
      break;
    case 'nodes':
      view = html`<${NodesView} />`;
      break;
    case 'node':
      view = html`<${NodeView} key=${route.name} name=${route.name} />`;
      break;
    case 'models':
      view = html`<${ModelsView} />`;
      break;
    case 'requests':
      view = html`<${RequestsView} params=${route.params} />`;
      break;
    case 'events':
      view = html`<${EventsView} />`;
      break;
    default:
      view = html`<div class="view"><h1 tabindex="-1">Not found</h1><p>There is no such page. <a href=${href()}>Go to the overview</a>.</p></div>`;
  }
  const active = route.view === 'node' ? 'nodes' : route.view;
  if (!signedIn) {
    return html`
      <header class="topbar">
        <span class="brand"><${Logo} /><span>herd</span></span>
      </header>
      <main id="main" ref=${main}><${SignInView} /></main>
    `;
  }
  return html`
    <a class="skip" href="#main">Skip to content</a>
    <header class="topbar">
      <a class="brand" href=${href()} aria-label="herd overview"><${Logo} /><span>herd</span></a>
      <nav class="nav" aria-label="Sections">
        ${NAV.map(
          ([v, path, label]) => html`<a href=${href(path)} class=${`nav-link${active === v ? ' active' : ''}`}
            aria-current=${active === v ? 'page' : undefined}>${label}${v === 'nodes' && offline
              ? html`<span class="nav-count" title=${`${offline} offline`}>${fmtInt(offline)}<span class="sr-only"> offline</span></span>`
              : null}</a>`,
        )}
      </nav>
      <${Connection} />
      <${Who} />
    </header>
    ${conn.state === 'retrying'
      ? html`<div class="banner" role="status" data-testid="conn-banner">
          Lost the connection to the server; reconnecting. What you see may be out of date.
        </div>`
      : null}
    <main id="main" ref=${main}>${view}</main>
    <footer class="footer">
      <span>herd dashboard</span>
      <span>Built with <a href=${vendor('LICENSE-preact.txt')}>Preact</a>, <a href=${vendor('LICENSE-htm.txt')}>htm</a> and <a href=${vendor('LICENSE-uPlot.txt')}>uPlot</a> (links go to their licenses)</span>
    </footer>
    <${DialogHost} />
    <${Toasts} />
  `;
}

loadSession()
  .catch(() => null)
  .then(() => render(html`<${App} />`, document.getElementById('app')));
