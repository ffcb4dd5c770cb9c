// The dashboard frame: navigation built from the page registry (pages/index.js), the
// signed-in admin, sign-out, and the current page in <main>.

import * as api from './api.js';
import * as session from './session.js';
import * as router from './router.js';
import { pages } from './pages/index.js';
import { h, replace } from './dom.js';

let renderToken = 0;

addEventListener('meltybase-session', ({ detail }) => {
  const badge = document.querySelector('[data-test=aal]');
  if (!badge) return;
  badge.textContent = (detail.aal || '').toUpperCase();
  badge.classList.toggle('badge-ok', detail.aal === 'aal2');
});

export async function renderShell(root, path) {
  const [pageId, ...rest] = path.split('/');
  const page = pages.find((p) => p.id === pageId);
  if (!page) return router.navigate('overview', { replace: true });
  const me = session.current();
  const main = h('main', { id: 'main', class: 'page', tabindex: '-1', 'aria-labelledby': 'page-title' });
  const signOut = h('button', { type: 'button', class: 'secondary small', onclick: async () => {
    try { await api.post('/v1/admin/logout', {}, { stepUp: false }); } catch { /* signed out locally anyway */ }
    session.clear();
    router.navigate('login', { replace: true });
  } }, 'Sign out');
  replace(root,
    h('a', { href: '#main', class: 'skip-link' }, 'Skip to content'),
    h('div', { class: 'shell' },
      h('header', { class: 'topbar' },
        h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'MeltyBase Studio'),
        h('div', { class: 'who' },
          h('span', { class: 'who-email', 'data-test': 'who' }, me?.email || ''),
          h('span', { class: `badge ${me?.aal === 'aal2' ? 'badge-ok' : ''}`, title: 'Authenticator assurance level', 'data-test': 'aal' }, (me?.aal || '').toUpperCase()),
          signOut)),
      h('nav', { class: 'sidebar', 'aria-label': 'Studio' },
        h('ul', {}, pages.map((p) => h('li', {},
          h('a', { href: router.href(p.id), 'data-route': p.id, 'aria-current': p.id === page.id ? 'page' : null }, p.title))))),
      main));
  document.title = `${page.title} · MeltyBase Studio`;
  const token = ++renderToken;
  main.append(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await page.render({ api, session: session.current(), params: rest, navigate: router.navigate, refresh: () => renderShell(root, path) });
    if (token !== renderToken) return;
    replace(main, content);
  } catch (error) {
    if (token !== renderToken) return;
    replace(main, h('h1', { id: 'page-title' }, page.title), h('p', { class: 'notice notice-error', role: 'alert' }, error.message));
  }
  main.querySelector('h1')?.setAttribute('tabindex', '-1');
}
