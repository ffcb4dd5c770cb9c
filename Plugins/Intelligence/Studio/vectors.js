// Knowledge Mesh: a portal's vector collections (name, shape, who may read, entry count), its
// part in the federated mesh, and a search box (a JSON vector, or text when the portal has a
// model provider; optional hybrid full-text ranking and a metadata filter).
// Path: plugins/intelligence/vectors/<portal>. The routes need AAL2: the step-up dialog
// appears by itself. A plugin page (ABI 1.5): everything it uses comes from the render context (docs/studio.md).

let h, replace, field, notice, busy, when;

/** An error's message with its hint. */
const describe = (error) => [error.message, error.hint].filter(Boolean).join(' ');

/** The query body from the form, or throws a message. */
const queryBody = (input, k, filter, hybrid) => {
  const text = input.value.trim();
  const body = { k: Number(k.value) || 10, hybrid: hybrid.checked };
  if (text.startsWith('[')) {
    body.vector = JSON.parse(text);
  } else {
    body.text = text;
  }
  if (hybrid.checked && !body.text) throw new Error('a hybrid search needs words, not a vector');
  if (filter.value.trim()) body.filter = JSON.parse(filter.value);
  return body;
};

export default {
  title: 'Knowledge Mesh',
  async render({ api, params, navigate, ui, plugin }) {
    ({ h, replace, field, notice, busy, when } = ui);
    const PAGE = `plugins/${plugin.name}/vectors`;
    const { portals } = await api.get('/v1/hub/portals');
    const picker = ui.portalPicker({ portals, plugin: 'intelligence', page: 'vectors', selected: params[0] && decodeURIComponent(params[0]),
      onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Knowledge Mesh'),
      h('p', {}, 'Vector collections of a portal, stored in its Postgres and searched through an HNSW index. See docs/intelligence-vectors.md.')];
    if (!picker.chosen) return [...intro, picker.element];
    const base = `/p/${encodeURIComponent(picker.chosen)}/vectors/v1`;
    const status = notice();
    const rows = h('tbody', {});
    const mesh = h('p', { 'data-test': 'mesh-membership' });
    const collection = h('select', { id: 'vectors-collection', name: 'collection' });
    const results = h('tbody', {});

    const load = async () => {
      status.clear();
      try {
        const { collections } = await api.get(`${base}/collections`);
        replace(rows, ...(collections.length ? collections.map((c) => h('tr', {},
          h('td', {}, h('code', {}, c.name)), h('td', {}, String(c.dimension)), h('td', {}, c.metric), h('td', {}, c.read),
          h('td', { 'data-test': 'collection-count' }, String(c.count)), h('td', {}, when(c.created))))
          : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No collections yet: POST /vectors/v1/collections creates one.'))]));
        replace(collection, ...collections.map((c) => h('option', { value: c.name }, c.name)));
        const { membership, collections: shared } = await api.get(`${base}/mesh`);
        mesh.textContent = `Mesh: publishing ${membership.publish ? 'on' : 'off'}, searching ${membership.search ? 'on' : 'off'}, `
          + `${membership.published_entries} entries published; ${shared.length} mesh collection(s).`;
      } catch (error) {
        status.show(describe(error));
      }
    };

    const input = field('Search', { name: 'query', autocomplete: 'off', placeholder: 'words (with a provider) or a JSON vector [0.1, ...]', required: true });
    const k = field('k', { name: 'k', type: 'number', min: 1, max: 100, value: 10 });
    const filter = field('Filter', { name: 'filter', autocomplete: 'off', placeholder: '{"topic": "billing"}' }, { hint: 'Optional: a metadata filter as JSON.' });
    const hybrid = h('input', { type: 'checkbox', id: 'vectors-hybrid' });
    const search = h('button', { type: 'submit', class: 'primary' }, 'Search');
    const form = h('form', { novalidate: true, 'aria-label': 'Search a collection' },
      h('label', { for: 'vectors-collection' }, 'Collection'), collection, input.wrapper, k.wrapper, filter.wrapper,
      h('label', { for: 'vectors-hybrid' }, hybrid, ' hybrid (vector + full-text)'), h('div', { class: 'actions' }, search));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(search, async () => {
        status.clear();
        try {
          const body = queryBody(input.input, k.input, filter.input, hybrid);
          const answer = await api.post(`${base}/collections/${encodeURIComponent(collection.value)}/query`, body);
          replace(results, ...answer.results.map((r) => h('tr', {},
            h('td', {}, h('code', {}, r.id)), h('td', {}, r.score != null ? r.score.toFixed(4) : (r.distance ?? 0).toFixed(4)),
            h('td', {}, h('code', {}, JSON.stringify(r.metadata))), h('td', {}, r.content || ''))));
        } catch (error) {
          status.show(describe(error));
        }
      });
    });

    await load();
    return [...intro, picker.element, status.element, mesh,
      h('div', { class: 'card table-scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ...['Name', 'Dimension', 'Metric', 'Read', 'Entries', 'Created'].map((t) => h('th', {}, t)))), rows)),
      h('div', { class: 'card' }, h('h2', {}, 'Search'), form, h('div', { class: 'table-scroll' }, h('table', {},
        h('thead', {}, h('tr', {}, ...['Id', 'Distance / score', 'Metadata', 'Content'].map((t) => h('th', {}, t)))), results)))];
  },
};
