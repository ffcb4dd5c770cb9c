// The acme-report fixture's Studio page: a third-party page that only uses the context the
// Studio hands it (docs/plugin-pages-and-commands.md): it calls its own plugin's route for
// each portal that enables the plugin and renders what came back.

export default {
  title: 'Acme report',
  async render({ api, ui, plugin, params }) {
    const { h } = ui;
    const portal = params[0] && plugin.portals.includes(params[0]) ? params[0] : plugin.portals[0];
    const summary = await api.get(`/p/${encodeURIComponent(portal)}/acme-report/v1/summary`);
    return [
      h('h1', { id: 'page-title' }, 'Acme report'),
      h('p', { 'data-test': 'acme-portal' }, `Portal ${summary.portal} (plugin ${plugin.name})`),
      h('table', { 'data-test': 'acme-items' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Item'), h('th', { scope: 'col' }, 'Count'))),
        h('tbody', {}, summary.items.map((item) => h('tr', { 'data-item': item.name },
          h('th', { scope: 'row' }, item.name), h('td', {}, String(item.count)))))),
    ];
  },
};
