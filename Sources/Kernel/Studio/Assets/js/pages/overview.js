// Overview: the pulse, the license and its seats, and the plugins the kernel loaded.

import { h, facts, when } from '../dom.js';

export default {
  id: 'overview',
  title: 'Overview',
  async render({ api }) {
    const [status, license, report] = await Promise.all([
      api.status(), api.get('/v1/system/license'), api.get('/v1/hub/plugins'),
    ]);
    const seatsLeft = license.seats == null ? '—' : String(Math.max(0, license.seats - license.seats_used));
    const loaded = report.plugins.filter((p) => p.status === 'loaded');
    const failed = report.plugins.filter((p) => p.status !== 'loaded');
    return [
      h('h1', { id: 'page-title' }, 'Overview'),
      h('div', { class: 'cards' },
        h('section', { class: 'card', 'aria-labelledby': 'ov-status' },
          h('h2', { id: 'ov-status' }, 'System'),
          facts([
            ['Pulse', status.pulse],
            ['Initialized', status.is_initialized ? 'yes' : 'no'],
            ['Version', status.version],
            ['Since', when(license.initialized_at)],
          ], { 'data-test': 'overview-status' })),
        h('section', { class: 'card', 'aria-labelledby': 'ov-license' },
          h('h2', { id: 'ov-license' }, 'License'),
          facts([
            ['Tier', (license.tier || '—').toUpperCase()],
            ['Seats', `${license.seats_used} used of ${license.seats ?? '—'}, ${seatsLeft} left`],
            ['Owner', license.owner],
            ['Expires', license.expires_at ? when(license.expires_at) : 'never'],
          ], { 'data-test': 'overview-license' }))),
      h('section', { class: 'card', 'aria-labelledby': 'ov-plugins' },
        h('h2', { id: 'ov-plugins' }, `Plugins (${loaded.length} loaded)`),
        h('div', { class: 'table-scroll' },
          h('table', { 'data-test': 'plugins-table' },
            h('thead', {}, h('tr', {}, ['Name', 'Version', 'ABI', 'Route prefixes', 'Enabled in', 'Health'].map((t) => h('th', { scope: 'col' }, t)))),
            h('tbody', {}, loaded.map((p) => h('tr', {},
              h('th', { scope: 'row' }, p.name), h('td', {}, p.version), h('td', {}, p.abi), h('td', {}, (p.prefixes || [p.prefix]).flatMap((prefix, i) => [i ? ' ' : '', h('code', {}, `/p/<portal>/${prefix}`)])),
              h('td', {}, Object.entries(p.portals || {}).filter(([, s]) => s === 'enabled').map(([n]) => n).join(', ') || '—'),
              h('td', { 'data-test': 'plugin-health', 'data-plugin': p.name },
                h('span', { class: `badge ${p.health?.status === 'ok' ? 'badge-ok' : ''}` }, p.health?.status || 'not reported'),
                p.health?.message ? ` ${p.health.message}` : '')))))),
        failed.length ? h('div', { class: 'notice notice-error' },
          h('p', {}, 'Plugins that failed to load:'),
          h('ul', {}, failed.map((p) => h('li', {}, h('strong', {}, p.name), `: ${p.reason}`)))) : null),
    ];
  },
};
