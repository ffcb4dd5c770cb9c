// Portals: list, create (with plugins), enable and disable plugins, delete.
// Changes need AAL2; the API layer asks for the second factor when needed.

import { h, field, notice, busy, when } from '../dom.js';

export default {
  id: 'portals',
  title: 'Portals',
  async render({ api, refresh }) {
    const [{ portals }, report] = await Promise.all([api.get('/v1/hub/portals'), api.get('/v1/hub/plugins')]);
    const plugins = report.plugins.filter((p) => p.status === 'loaded').map((p) => p.name).sort();
    const status = notice();

    const toggle = (portal, plugin, enabled) => {
      const box = h('input', { type: 'checkbox', checked: enabled, 'aria-label': `${plugin} in ${portal}` });
      box.addEventListener('change', async () => {
        box.disabled = true;
        status.clear();
        try {
          await api.call(box.checked ? 'POST' : 'DELETE', `/v1/hub/portals/${encodeURIComponent(portal)}/plugins/${encodeURIComponent(plugin)}`);
          status.show(`${plugin} ${box.checked ? 'enabled' : 'disabled'} in ${portal}.`, 'ok');
        } catch (error) {
          box.checked = !box.checked;
          status.show(error.message);
        } finally {
          box.disabled = false;
        }
      });
      return h('label', { class: 'check' }, box, plugin);
    };

    const remove = (portal) => {
      const button = h('button', { type: 'button', class: 'danger small', onclick: () => busy(button, async () => {
        if (!confirm(`Delete the portal ${portal}? Its plugin instances stop.`)) return;
        try {
          await api.del(`/v1/hub/portals/${encodeURIComponent(portal)}`);
          refresh();
        } catch (error) {
          status.show(error.message);
        }
      }) }, 'Delete');
      button.setAttribute('aria-label', `Delete ${portal}`);
      return button;
    };

    const name = field('Portal name', { name: 'name', autocomplete: 'off', pattern: '[a-z0-9][a-z0-9-]*', required: true },
      { hint: 'Lowercase letters, digits and dashes; it becomes the /p/<name>/ prefix.' });
    const choices = plugins.map((plugin) => h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'plugins', value: plugin }), plugin));
    const created = h('div', { 'aria-live': 'polite' });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create portal');
    const form = h('form', { novalidate: true, 'aria-labelledby': 'portal-create' },
      h('h2', { id: 'portal-create' }, 'New portal'), name.wrapper,
      h('fieldset', {}, h('legend', {}, 'Plugins'), choices.length ? choices : h('p', { class: 'muted' }, 'No plugins loaded.')),
      h('div', { class: 'actions' }, submit), created);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(submit, async () => {
        name.clear();
        const chosen = [...form.querySelectorAll('input[name=plugins]:checked')].map((box) => box.value);
        try {
          const answer = await api.post('/v1/hub/portals', { name: name.input.value.trim(), plugins: chosen });
          const keys = Object.entries(answer).filter(([name]) => name.endsWith('_key'));
          if (keys.length) {
            // Shown once: the kernel keeps only the secret that signs them.
            form.reset();
            created.replaceChildren(h('div', { class: 'card success', role: 'status', 'data-test': 'portal-keys' },
              h('h3', {}, `Keys of ${answer.name} (shown once)`),
              h('p', {}, 'Copy them now; they are not shown again. The anon key is for browsers; keep the service_role key on servers.'),
              keys.map(([name, value]) => h('div', { class: 'field' },
                h('label', { for: `key-${name}` }, name),
                h('textarea', { id: `key-${name}`, class: 'secret', readonly: true, rows: 3, spellcheck: false }, value))),
              h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: refresh }, 'Done, I have copied them'))));
            created.querySelector('textarea').focus();
          } else {
            refresh();
          }
        } catch (error) {
          if (error.code === 'invalid_portal_change' || error.code === 'portal_exists' || error.body?.field === 'name') {
            name.showError(error.message);
            name.input.focus();
          } else {
            status.show(error.message);
          }
        }
      });
    });

    return [
      h('h1', { id: 'page-title' }, 'Portals'),
      h('p', {}, 'A portal is a tenant: its own plugin instances, reached at /p/<portal>/<plugin prefix>/…'),
      status.element,
      h('div', { class: 'table-scroll' },
        h('table', { 'data-test': 'portals-table' },
          h('caption', { class: 'visually-hidden' }, 'Portals and their plugins'),
          h('thead', {}, h('tr', {}, ['Portal', 'Plugins', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, portals.length ? portals.map((p) => h('tr', { 'data-portal': p.name },
            h('th', { scope: 'row' }, p.name),
            h('td', { class: 'checks' }, [...new Set([...plugins, ...p.plugins])].sort().map((plugin) => toggle(p.name, plugin, p.plugins.includes(plugin)))),
            h('td', {}, when(p.created_at)),
            h('td', {}, remove(p.name)))) : h('tr', {}, h('td', { colspan: 4 }, 'No portals yet.'))))),
      h('section', { class: 'card' }, form),
    ];
  },
};
