// The portal picker plugin pages share (context.ui.portalPicker): pages that work on one
// portal's data let the admin choose among the portals that enable their plugin.

import { h } from './dom.js';

/**
 * The portals that enable `plugin`, as a labelled select with a button (a select that
 * navigated on change would leave the page at every arrow key). Without a choice the
 * first such portal is taken. `{element, chosen}`; `chosen` is null when there is none.
 * `portals` is GET /v1/hub/portals' list; `page` makes the select's id unique.
 */
export function portalPicker({ portals, plugin, selected, onChoose, page }) {
  const usable = portals.filter((p) => (p.plugins || []).includes(plugin)).map((p) => p.name).sort();
  if (!usable.length) {
    return { chosen: null, element: h('p', { class: 'notice notice-error', role: 'status' },
      `No portal enables the ${plugin} plugin yet. Enable it on the `, h('a', { href: '/dashboard/portals', 'data-route': 'portals' }, 'Portals'), ' page.') };
  }
  const chosen = selected && usable.includes(selected) ? selected : (selected ? null : usable[0]);
  const id = `${page}-portal`;
  const select = h('select', { id, name: 'portal' }, usable.map((name) => h('option', { value: name, selected: name === chosen }, name)));
  const form = h('form', { class: 'portal-picker', novalidate: true, 'aria-label': 'Portal' },
    h('div', { class: 'field' }, h('label', { for: id }, 'Portal'), select),
    h('button', { type: 'submit', class: 'secondary' }, 'Open'));
  form.addEventListener('submit', (event) => { event.preventDefault(); onChoose(select.value); });
  const missing = selected && !chosen
    ? h('p', { class: 'notice notice-error', role: 'alert' }, `The portal ${selected} does not exist or does not enable ${plugin}.`) : null;
  return { chosen, element: [form, missing] };
}
