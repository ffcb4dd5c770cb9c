// The echo-c plugin's Studio page (ABI 1.5): the smallest plugin page. The kernel serves this
// folder from /dashboard/plugins/echo-c/assets/<version>/ and the Studio imports this module
// when the admin opens /dashboard/plugins/echo-c/hello. Everything comes from `context`
// (docs/plugin-pages-and-commands.md); a plugin page never imports the Studio's own files.

export default {
  title: 'Echo (C)',
  async render({ api, ui, plugin }) {
    const { h, notice, busy } = ui;
    const status = notice();
    const output = h('pre', { 'data-test': 'echo-c-output' }, '');
    const portal = plugin.portals[0];
    const ping = h('button', { type: 'button', class: 'primary' }, `Ask /p/${portal}/echo-c/whoami`);
    ping.addEventListener('click', () => busy(ping, async () => {
      try {
        const answer = await api.get(`/p/${encodeURIComponent(portal)}/echo-c/whoami`);
        output.textContent = JSON.stringify(answer, null, 2);
        status.clear();
      } catch (error) {
        status.show(error.message, 'error');
        output.textContent = error.message;
      }
    }));
    return [
      h('h1', { id: 'page-title' }, 'Echo (C)'),
      h('p', { 'data-test': 'echo-c-portals' }, `Enabled in: ${plugin.portals.join(', ')}`),
      h('p', {}, 'This page ships with the C example plugin; the command line has `meltybase echo-c hello --name X`.'),
      ping, status.element, output,
    ];
  },
};
