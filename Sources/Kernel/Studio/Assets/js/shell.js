// The dashboard frame: navigation built from the page registry (pages/index.js) plus the
// pages of plugins (plugins.js, ABI 1.5), the signed-in admin, sign-out, and the current
// page in <main>. Every page's render(context) gets the same context (docs/studio.md).

import * as api from './api.js';
import * as session from './session.js';
import * as router from './router.js';
import { pages } from './pages/index.js';
import * as plugins from './plugins.js';
import { h, replace } from './dom.js';
import { quotaBanners } from './pages/usage.js';

let renderToken = 0;

addEventListener('meltybase-session', ({ detail }) => {
  const badge = document.querySelector('[data-test=aal]');
  if (!badge) return;
  badge.textContent = (detail.aal || '').toUpperCase();
  badge.classList.toggle('badge-ok', detail.aal === 'aal2');
});

/** The page at `path`: a built-in page, `plugins/<plugin>/<id>/...` (its module is loaded
 *  now), or null. `params` are the path segments after the page's own. */
async function resolve(path, pluginPages) {
  const segments = path.split('/');
  if (segments[0] === 'plugins') {
    const entry = pluginPages.find((p) => p.plugin === segments[1] && p.id === segments[2]);
    if (!entry) return null;
    try {
      return { page: await plugins.loadPage(entry), params: segments.slice(3), entry };
    } catch (error) {
      return { page: { id: entry.path, title: entry.title, render: () => { throw error; } }, params: [], entry };
    }
  }
  const page = pages.find((p) => p.id === segments[0]);
  return page ? { page, params: segments.slice(1), entry: null } : null;
}

export async function renderShell(root, path) {
  const token = ++renderToken;
  const pluginPages = await plugins.pluginPages();
  const found = await resolve(path, pluginPages);
  if (token !== renderToken) return;
  if (!found) {
    // A plugin's name alone (an old address such as database/<portal>/<table>): its first page.
    const [first, ...rest] = path.split('/');
    const entry = pluginPages.find((p) => p.plugin === first);
    if (entry) return router.navigate([entry.path, ...rest].join('/'), { replace: true });
    return router.navigate('overview', { replace: true });
  }
  const { page, params, entry } = found;
  const me = session.current();
  const main = h('main', { id: 'main', class: 'page', tabindex: '-1', 'aria-labelledby': 'page-title' });
  const signOut = h('button', { type: 'button', class: 'secondary small', onclick: async () => {
    try { await api.post('/v1/admin/logout', {}, { stepUp: false }); } catch { /* signed out locally anyway */ }
    session.clear();
    plugins.forget();
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
          h('a', { href: router.href(p.id), 'data-route': p.id, 'aria-current': p.id === page.id ? 'page' : null }, p.title)))),
        pluginPages.length ? h('ul', { class: 'plugin-nav', 'aria-label': 'Plugin pages', 'data-test': 'plugin-nav' }, pluginPages.map((p) => h('li', {},
          h('a', { href: router.href(p.path), 'data-route': p.path, 'data-plugin': p.plugin, 'aria-current': p.path === page.id ? 'page' : null, title: `${p.title} (plugin ${p.plugin})` }, p.title)))) : null),
      main));
  document.title = `${page.title} · MeltyBase Studio`;
  main.append(h('p', { class: 'muted' }, 'Loading…'));
  try {
    const content = await page.render({
      api: plugins.pageApi, session: session.current(), params, navigate: router.navigate, refresh: () => renderShell(root, path),
      ui: plugins.ui, plugin: entry ? Object.freeze({ name: entry.plugin, portals: [...entry.portals] }) : null,
    });
    if (token !== renderToken) return;
    replace(main, content);
    // Quotas past a limit show on every page (the usage page lists them itself).
    if (page.id !== 'usage') {
      api.get('/v1/hub/quotas', { stepUp: false }).then((answer) => {
        if (token === renderToken) main.prepend(...quotaBanners(answer.quotas));
      }).catch(() => { /* no banner when the quotas cannot be read */ });
    }
  } catch (error) {
    if (token !== renderToken) return;
    replace(main, h('h1', { id: 'page-title' }, page.title), h('p', { class: 'notice notice-error', role: 'alert' }, error.message));
  }
  main.querySelector('h1')?.setAttribute('tabindex', '-1');
}
