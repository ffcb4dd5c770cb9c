// Vault: a portal's secrets by name, their versions and history; create, rotate (a new
// version), delete. A value is never fetched, let alone shown, until the admin asks
// with "Reveal" (which needs AAL2: the step-up dialog appears by itself), and "Hide"
// drops it from the page again. Path: plugins/vault/secrets/<portal>.
// A plugin page (ABI 1.5): served from the Vault plugin's Studio folder; everything it
// uses comes from the render context (docs/plugin-pages-and-commands.md).

// The Studio's UI helpers, taken from the render context (context.ui) on every render.
let h, replace, field, notice, busy, when;

const NAME_PATTERN = '[A-Za-z0-9_.\\-]{1,128}';
const REVEAL_SECONDS = 60;

/** An error's message with its hint. */
const describe = (error) => [error.message, error.hint].filter(Boolean).join(' ');

export default {
  title: 'Vault',
  async render({ api, params, navigate, ui, plugin }) {
    await ui.stylesheet(new URL('vault.css', import.meta.url).href);
    ({ h, replace, field, notice, busy, when } = ui);
    const PAGE = `plugins/${plugin.name}/secrets`;
    const { portals } = await api.get('/v1/hub/portals');
    const picker = ui.portalPicker({ portals, plugin: 'vault', page: 'vault', selected: params[0] && decodeURIComponent(params[0]),
      onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Vault'),
      h('p', {}, 'Encrypted secrets of a portal (AES-256-GCM under the portal\'s data key). Values are never shown unless you reveal one, which needs a second factor and is recorded in the audit log.')];
    if (!picker.chosen) return [...intro, picker.element];
    const base = `/p/${encodeURIComponent(picker.chosen)}/vault/v1/secrets`;
    const secretURL = (name) => `${base}/${encodeURIComponent(name)}`;
    const status = notice();
    const rows = h('tbody', {});
    const showDeleted = h('input', { type: 'checkbox', id: 'vault-show-deleted' });
    const timers = new Set();

    // ---- one secret's row and its expandable panel ----
    const secretRows = (secret) => {
      const panel = h('td', { colspan: 5 });
      const panelRow = h('tr', { class: 'secret-panel', hidden: true }, panel);
      const open = (content) => { replace(panel, content); panelRow.hidden = false; };
      const close = () => { clearReveal(); panel.replaceChildren(); panelRow.hidden = true; };
      const valueSlot = h('span', { class: 'secret-slot', 'aria-live': 'polite' });
      let revealed = null;
      const clearReveal = () => {
        if (revealed) { clearTimeout(revealed); timers.delete(revealed); revealed = null; }
        valueSlot.replaceChildren();
      };
      const reveal = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Reveal ${secret.name}` }, 'Reveal');
      const hide = () => {
        clearReveal();
        reveal.textContent = 'Reveal';
        reveal.setAttribute('aria-label', `Reveal ${secret.name}`);
        reveal.setAttribute('aria-expanded', 'false');
      };
      reveal.setAttribute('aria-expanded', 'false');
      reveal.addEventListener('click', () => busy(reveal, async () => {
        if (revealed !== null || valueSlot.firstChild) return hide();
        status.clear();
        try {
          const answer = await api.get(`${secretURL(secret.name)}/value`);
          replace(valueSlot, h('code', { class: 'secret secret-value', 'data-test': 'secret-value' }, answer.value),
            h('span', { class: 'muted' }, ` version ${answer.version}, hidden again after ${REVEAL_SECONDS} s`));
          revealed = setTimeout(hide, REVEAL_SECONDS * 1000);
          timers.add(revealed);
          reveal.textContent = 'Hide';
          reveal.setAttribute('aria-label', `Hide ${secret.name}`);
          reveal.setAttribute('aria-expanded', 'true');
        } catch (error) {
          status.show(`${secret.name}: ${describe(error)}`);
        }
      }));

      const rotate = h('button', { type: 'button', class: 'secondary small', 'aria-label': `New version of ${secret.name}`, onclick: () => {
        const value = field(`New value for ${secret.name}`, { name: 'value', rows: 3, spellcheck: false, autocomplete: 'off', required: true },
          { multiline: true, hint: 'Becomes the current version; older versions stay readable by number.' });
        const description = field('Description', { name: 'description', autocomplete: 'off', value: secret.description || '', maxlength: 1024 });
        const save = h('button', { type: 'submit', class: 'primary' }, 'Save new version');
        const form = h('form', { novalidate: true, class: 'secret-form', 'aria-label': `New version of ${secret.name}` }, value.wrapper, description.wrapper,
          h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary', onclick: close }, 'Cancel'), save));
        form.addEventListener('submit', (event) => {
          event.preventDefault();
          busy(save, async () => {
            value.clear();
            if (!value.input.value) { value.showError('Enter the new value.'); return value.input.focus(); }
            try {
              const changed = { value: value.input.value };
              if (description.input.value !== (secret.description || '')) changed.description = description.input.value;
              const updated = await api.call('PUT', secretURL(secret.name), changed);
              value.input.value = '';
              status.show(`${secret.name} is now at version ${updated.version}.`, 'ok');
              await load();
            } catch (error) {
              (error.status === 400 ? value.showError.bind(value) : status.show.bind(status))(describe(error));
            }
          });
        });
        open(form);
        value.input.focus();
      } }, 'New version');

      const history = h('button', { type: 'button', class: 'secondary small', 'aria-label': `History of ${secret.name}`, onclick: () => busy(history, async () => {
        try {
          const { versions } = await api.get(`${secretURL(secret.name)}/versions`);
          open(h('div', { class: 'secret-history' },
            h('h3', {}, `Versions of ${secret.name}`),
            h('table', { 'data-test': 'secret-versions' },
              h('thead', {}, h('tr', {}, ['Version', 'Created', 'By', 'Data key'].map((t) => h('th', { scope: 'col' }, t)))),
              h('tbody', {}, versions.map((v) => h('tr', {}, h('td', {}, String(v.version)), h('td', {}, when(v.created_at)),
                h('td', {}, v.created_by || '—'), h('td', {}, h('code', {}, String(v.data_key_id ?? '—'))))))),
            h('div', { class: 'actions' }, h('button', { type: 'button', class: 'secondary small', onclick: close }, 'Close history'))));
        } catch (error) {
          status.show(`${secret.name}: ${describe(error)}`);
        }
      }) }, 'History');

      const remove = h('button', { type: 'button', class: 'danger small', 'aria-label': `${secret.deleted_at ? 'Purge' : 'Delete'} ${secret.name}`, onclick: () => busy(remove, async () => {
        const purge = Boolean(secret.deleted_at);
        const question = purge
          ? `Purge ${secret.name}? Every version is removed for good and the name becomes free.`
          : `Delete ${secret.name}? It is hidden but kept encrypted; purge it later to free the name.`;
        if (!confirm(question)) return;
        try {
          await api.del(`${secretURL(secret.name)}${purge ? '?purge=true' : ''}`);
          status.show(`${secret.name} ${purge ? 'purged' : 'deleted'}.`, 'ok');
          await load();
        } catch (error) {
          status.show(`${secret.name}: ${describe(error)}`);
        }
      }) }, secret.deleted_at ? 'Purge' : 'Delete');

      const row = h('tr', { 'data-secret': secret.name, class: secret.deleted_at ? 'deleted' : null },
        h('th', { scope: 'row' }, h('code', {}, secret.name), secret.deleted_at ? h('span', { class: 'badge' }, ' deleted') : null),
        h('td', { 'data-label': 'Description' }, secret.description || h('span', { class: 'muted' }, '—')),
        h('td', { 'data-test': 'secret-version', 'data-label': 'Version' }, String(secret.version)),
        h('td', { 'data-label': secret.deleted_at ? 'Deleted' : 'Updated' }, when(secret.deleted_at || secret.updated_at)),
        h('td', {}, h('div', { class: 'row-actions' }, secret.deleted_at ? [history, remove] : [reveal, rotate, history, remove]), valueSlot));
      return [row, panelRow];
    };

    async function load() {
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      try {
        const { secrets } = await api.get(`${base}${showDeleted.checked ? '?include_deleted=true' : ''}`);
        replace(rows, secrets.length
          ? secrets.sort((a, b) => a.name.localeCompare(b.name)).map(secretRows)
          : h('tr', {}, h('td', { colspan: 5 }, 'No secrets yet.')));
      } catch (error) {
        status.show(describe(error));
      }
    }
    showDeleted.addEventListener('change', load);

    // ---- create ----
    const name = field('Name', { name: 'name', autocomplete: 'off', pattern: NAME_PATTERN, maxlength: 128, required: true, spellcheck: false },
      { hint: '1 to 128 of A–Z a–z 0–9 _ . -, e.g. STRIPE_KEY.' });
    const value = field('Value', { name: 'value', rows: 3, autocomplete: 'off', spellcheck: false, required: true },
      { multiline: true, hint: 'UTF-8 text (base64-encode binary values). It is not shown again unless revealed.' });
    const description = field('Description (optional)', { name: 'description', autocomplete: 'off', maxlength: 1024 });
    const create = h('button', { type: 'submit', class: 'primary' }, 'Create secret');
    const form = h('form', { novalidate: true, 'aria-labelledby': 'vault-create' },
      h('h2', { id: 'vault-create' }, 'New secret'), name.wrapper, value.wrapper, description.wrapper, h('div', { class: 'actions' }, create));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(create, async () => {
        [name, value, description].forEach((f) => f.clear());
        const chosen = name.input.value.trim();
        if (!new RegExp(`^${NAME_PATTERN}$`).test(chosen)) { name.showError('Use 1 to 128 of A–Z a–z 0–9 _ . -'); return name.input.focus(); }
        if (!value.input.value) { value.showError('Enter the value.'); return value.input.focus(); }
        const body = { name: chosen, value: value.input.value };
        if (description.input.value.trim()) body.description = description.input.value.trim();
        try {
          const created = await api.post(base, body);
          form.reset();
          status.show(`${created.name} created (version ${created.version}).`, 'ok');
          await load();
        } catch (error) {
          if (error.code === 'secret_exists') { name.showError(describe(error)); return name.input.focus(); }
          if (error.status === 400) return value.showError(describe(error));
          status.show(describe(error));
        }
      });
    });

    await load();
    return [
      ...intro, picker.element, status.element,
      h('section', { 'aria-labelledby': 'vault-secrets' },
        h('div', { class: 'section-head' }, h('h2', { id: 'vault-secrets' }, 'Secrets'),
          h('label', { class: 'check', for: 'vault-show-deleted' }, showDeleted, 'Show deleted secrets')),
        h('div', { class: 'table-scroll' },
          h('table', { 'data-test': 'vault-secrets', class: 'stacked' },
            h('caption', { class: 'visually-hidden' }, `Secrets of ${picker.chosen}`),
            h('thead', {}, h('tr', {}, ['Name', 'Description', 'Version', 'Updated', 'Actions'].map((t) => h('th', { scope: 'col' }, t)))),
            rows))),
      h('section', { class: 'card' }, form),
      h('section', { class: 'card vault-rotation', 'aria-labelledby': 'vault-rotation' },
        h('h2', { id: 'vault-rotation' }, 'Rotation'),
        h('p', {}, 'To rotate a secret, give it a new version ("New version"): readers get the new value at once, and older versions stay readable by number.'),
        h('p', {}, 'The keys that encrypt secrets are rotated from the command line on the kernel\'s host (they never pass through the Studio):'),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Master key'), h('dd', {}, h('code', {}, 'meltybase vault rotate-master'),
            ' — restart the kernels with MELTYBASE_MASTER_KEY=<new> and MELTYBASE_MASTER_KEY_PREVIOUS=<old>, run it with the same two variables, then drop the previous key and restart.'),
          h('dt', {}, 'This portal\'s data key'), h('dd', {}, h('code', {}, `meltybase vault rotate-portal-key --portal ${picker.chosen}`),
            ' — re-encrypts every version under a new data key in batches; safe to run again after an interruption.')),
        h('p', {}, 'See docs/vault.md, "Rotating keys".')),
    ];
  },
};
