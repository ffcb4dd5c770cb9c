// Database: a portal's tables (paging, filters, row editing) over its PostgREST API, and
// the SQL console. The admin's token counts as service_role on REST; the console needs
// AAL2 (the API layer asks for the second factor). Path: plugins/database/tables/<portal>/<table>.
// A plugin page (ABI 1.5): served from the Database plugin's Studio folder; everything it
// uses comes from the render context (docs/plugin-pages-and-commands.md).

// The Studio's UI helpers, taken from the render context (context.ui) on every render.
let h, replace, field, notice, busy;

const OPERATORS = [
  ['eq', 'equals'], ['neq', 'not equal'], ['gt', 'greater than'], ['gte', 'at least'], ['lt', 'less than'],
  ['lte', 'at most'], ['like', 'like (use *)'], ['ilike', 'ilike (use *)'], ['is', 'is (null, true, false)'],
];
const PAGE_SIZES = [10, 25, 50, 100];
// The console's text survives moving between tables (the page renders again).
let draft = '';
const DDL = /^\s*(create|alter|drop|comment|grant|revoke|truncate)\b/im;

/** A cell's text: null as NULL, objects as JSON. */
function cellText(value) {
  if (value === null || value === undefined) return null;
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function cell(value, tag = 'td') {
  const text = cellText(value);
  return h(tag, {}, text === null ? h('span', { class: 'null' }, 'NULL') : text);
}

/** `0-24/1234` → {from, to, total} (total null when unknown, from null when empty). */
function contentRange(header) {
  const match = /^(\d+)-(\d+)\/(\d+|\*)$|^\*\/(\d+|\*)$/.exec(header || '');
  if (!match) return { from: null, to: null, total: null };
  const total = match[3] ?? match[4];
  return {
    from: match[1] === undefined ? null : Number(match[1]),
    to: match[2] === undefined ? null : Number(match[2]),
    total: total === '*' || total === undefined ? null : Number(total),
  };
}

/** The error of a PostgREST or console answer, as a list of lines. */
function errorLines(error) {
  const body = error.body || {};
  return [
    `${body.code ? `${body.code}: ` : ''}${error.message}`,
    body.details ? `Details: ${body.details}` : null,
    body.hint ? `Hint: ${body.hint}` : null,
  ].filter(Boolean);
}

export default {
  title: 'Database',
  async render({ api, params, navigate, ui, plugin }) {
    await ui.stylesheet(new URL('database.css', import.meta.url).href);
    ({ h, replace, field, notice, busy } = ui);
    const PAGE = `plugins/${plugin.name}/tables`;
    const { portals } = await api.get('/v1/hub/portals');
    const [portal, tableName] = params.map((p) => decodeURIComponent(p));
    const picker = ui.portalPicker({ portals, plugin: 'database', page: 'database', selected: portal, onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Database'),
      h('p', {}, 'Each portal with the database plugin has its own Postgres database: browse and edit its tables (as service_role, so row-level security does not hide rows) and run SQL as the portal\'s owner role.')];
    if (!picker.chosen) return [...intro, picker.element];
    const base = `/p/${encodeURIComponent(picker.chosen)}`;

    // ---- tables ----
    let definitions = {};
    let writable = new Set();
    const tableList = h('ul', { class: 'table-list', 'data-test': 'db-tables' });
    const tablesStatus = notice();
    let shownTables = null;
    const loadTables = async () => {
      tablesStatus.clear();
      try {
        const openapi = await api.get(`${base}/rest/v1/`);
        definitions = openapi.definitions || {};
        writable = new Set(Object.entries(openapi.paths || {}).filter(([, ops]) => ops.patch).map(([path]) => path.slice(1)));
        const names = Object.keys(definitions).sort();
        // Rebuilt only when the list changed: a link replaced between a click's press and
        // release gets no click, so a reload that finds the same tables leaves them alone.
        const shown = JSON.stringify(names.map((name) => [name, writable.has(name)]));
        if (shown === shownTables) return;
        shownTables = shown;
        replace(tableList, names.length ? names.map((name) => h('li', {},
          h('a', { href: `/dashboard/${PAGE}/${encodeURIComponent(picker.chosen)}/${encodeURIComponent(name)}`,
            'data-route': `${PAGE}/${encodeURIComponent(picker.chosen)}/${encodeURIComponent(name)}`,
            'aria-current': name === tableName ? 'page' : null }, name),
          writable.has(name) ? null : h('span', { class: 'muted' }, ' (view)'))) :
          h('li', { class: 'muted' }, 'No tables in the exposed schema yet. Create one in the SQL console below.'));
      } catch (error) {
        tablesStatus.show(errorLines(error).join(' '));
      }
    };
    const reloadTables = h('button', { type: 'button', class: 'secondary small', onclick: () => busy(reloadTables, loadTables) }, 'Reload tables');
    await loadTables();

    const sections = [
      ...intro, picker.element,
      h('section', { class: 'card', 'aria-labelledby': 'db-tables-title' },
        h('div', { class: 'section-head' }, h('h2', { id: 'db-tables-title' }, 'Tables'), reloadTables),
        tablesStatus.element, tableList),
    ];
    const browser = tableName ? tableBrowser({ api, base, tableName, definition: definitions[tableName], writable: writable.has(tableName) }) : null;
    if (browser) sections.push(browser.element);
    sections.push(sqlConsole({ api, base, onChange: async (query) => {
      browser?.reload();
      if (DDL.test(query)) {
        // The plugin reloads its schema cache on a NOTIFY after DDL: give it a moment.
        await loadTables();
        setTimeout(loadTables, 800);
      }
    } }));
    return sections;
  },
};

/** Rows of one table: filters, order, paging, editing. `{element, reload}`. */
function tableBrowser({ api, base, tableName, definition, writable }) {
  const section = h('section', { class: 'card', 'aria-labelledby': 'db-table-title', 'data-test': 'db-table' });
  if (!definition) {
    return { reload() {}, element: append(section, h('h2', { id: 'db-table-title' }, tableName),
      h('p', { class: 'notice notice-error', role: 'alert' }, `No table ${tableName} in the exposed schema (try Reload tables).`)) };
  }
  const properties = definition.properties || {};
  const primaryKey = Object.entries(properties).filter(([, p]) => (p.description || '').includes('<pk/>')).map(([name]) => name);
  let columns = [...primaryKey, ...Object.keys(properties).filter((c) => !primaryKey.includes(c)).sort()];
  const url = `${base}/rest/v1/${encodeURIComponent(tableName)}`;
  const state = { filters: [], offset: 0, limit: 25, order: primaryKey[0] || columns[0], direction: 'asc' };
  const status = notice();

  // Filter form: column, operator, value → col=op.value.
  const columnSelect = h('select', { id: 'db-filter-column', name: 'column' }, columns.map((c) => h('option', { value: c }, c)));
  const operatorSelect = h('select', { id: 'db-filter-operator', name: 'operator' }, OPERATORS.map(([op, label]) => h('option', { value: op }, `${op}: ${label}`)));
  const value = field('Value', { name: 'value', autocomplete: 'off', id: 'db-filter-value' });
  const addFilter = h('button', { type: 'submit', class: 'primary' }, 'Add filter');
  const filterForm = h('form', { class: 'filters', novalidate: true, 'aria-label': `Filter ${tableName}` },
    h('div', { class: 'field' }, h('label', { for: 'db-filter-column' }, 'Column'), columnSelect),
    h('div', { class: 'field' }, h('label', { for: 'db-filter-operator' }, 'Operator'), operatorSelect),
    value.wrapper, h('div', { class: 'actions' }, addFilter));
  const chips = h('ul', { class: 'chips', 'aria-label': 'Active filters', 'data-test': 'db-filters' });
  const showChips = () => replace(chips, state.filters.map((f, index) => h('li', {},
    h('code', {}, `${f.column}=${f.operator}.${f.value}`),
    h('button', { type: 'button', class: 'secondary small', 'aria-label': `Remove filter ${f.column} ${f.operator} ${f.value}`,
      onclick: () => { state.filters.splice(index, 1); state.offset = 0; showChips(); load(); } }, 'Remove'))));
  filterForm.addEventListener('submit', (event) => {
    event.preventDefault();
    value.clear();
    if (operatorSelect.value !== 'is' && value.input.value === '' && !confirm('Filter on an empty value?')) return;
    state.filters.push({ column: columnSelect.value, operator: operatorSelect.value, value: value.input.value });
    state.offset = 0;
    value.input.value = '';
    showChips();
    busy(addFilter, load);
  });

  // Order and page size.
  const orderSelect = h('select', { id: 'db-order', name: 'order' }, columns.map((c) => h('option', { value: c, selected: c === state.order }, c)));
  const directionSelect = h('select', { id: 'db-direction', name: 'direction' }, h('option', { value: 'asc' }, 'ascending'), h('option', { value: 'desc' }, 'descending'));
  const sizeSelect = h('select', { id: 'db-page-size', name: 'limit' }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === state.limit }, String(n))));
  for (const select of [orderSelect, directionSelect, sizeSelect]) {
    select.addEventListener('change', () => {
      state.order = orderSelect.value;
      state.direction = directionSelect.value;
      state.limit = Number(sizeSelect.value);
      state.offset = 0;
      load();
    });
  }
  const viewControls = h('div', { class: 'filters' },
    h('div', { class: 'field' }, h('label', { for: 'db-order' }, 'Order by'), orderSelect),
    h('div', { class: 'field' }, h('label', { for: 'db-direction' }, 'Direction'), directionSelect),
    h('div', { class: 'field' }, h('label', { for: 'db-page-size' }, 'Rows per page'), sizeSelect));

  const head = h('thead', {});
  const body = h('tbody', {});
  const rowsTable = h('table', { 'data-test': 'db-rows' }, h('caption', { class: 'visually-hidden' }, `Rows of ${tableName}`), head, body);
  const pageInfo = h('span', { class: 'muted', 'aria-live': 'polite', 'data-test': 'db-page-info' });
  const previous = h('button', { type: 'button', class: 'secondary small' }, 'Previous page');
  const next = h('button', { type: 'button', class: 'secondary small' }, 'Next page');
  previous.addEventListener('click', () => busy(previous, async () => { state.offset = Math.max(0, state.offset - state.limit); await load(); }));
  next.addEventListener('click', () => busy(next, async () => { state.offset += state.limit; await load(); }));
  const editor = h('div', { 'aria-live': 'polite' });
  const canEdit = writable && primaryKey.length > 0;
  const newRow = canEdit || writable ? h('button', { type: 'button', class: 'secondary small', onclick: () => openEditor(null) }, 'New row') : null;

  const query = () => {
    const search = new URLSearchParams({ select: '*', limit: String(state.limit), offset: String(state.offset) });
    if (state.order) search.set('order', `${state.order}.${state.direction}`);
    for (const f of state.filters) search.append(f.column, `${f.operator}.${f.value}`);
    return search.toString();
  };
  const keyFilter = (row) => primaryKey.map((k) => `${encodeURIComponent(k)}=eq.${encodeURIComponent(cellText(row[k]) ?? '')}`).join('&');

  async function load() {
    status.clear();
    let answer;
    try {
      answer = await api.call('GET', `${url}?${query()}`, undefined, { headers: { prefer: 'count=exact' }, withHeaders: true });
    } catch (error) {
      if (error.status === 416) {
        // Past the end (rows deleted meanwhile, or a filter): back to the first page.
        if (state.offset > 0) { state.offset = 0; return load(); }
      }
      status.show(errorLines(error).join(' '));
      replace(body);
      pageInfo.textContent = '';
      return;
    }
    const rows = Array.isArray(answer.body) ? answer.body : [];
    if (rows.length) {
      // The answer's keys keep the table's column order.
      const ordered = Object.keys(rows[0]);
      columns = [...ordered, ...columns.filter((c) => !ordered.includes(c))];
    }
    const range = contentRange(answer.headers.get('content-range'));
    replace(head, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c, primaryKey.includes(c) ? [' ', h('abbr', { class: 'pk', title: 'primary key' }, 'PK')] : null)),
      canEdit ? h('th', { scope: 'col' }, h('span', { class: 'visually-hidden' }, 'Actions')) : null));
    replace(body, rows.length ? rows.map((row) => h('tr', { 'data-key': primaryKey.map((k) => cellText(row[k])).join(',') },
      columns.map((c) => cell(row[c])),
      canEdit ? h('td', {}, h('button', { type: 'button', class: 'secondary small', 'aria-label': `Edit row ${primaryKey.map((k) => `${k} ${cellText(row[k])}`).join(', ')}`,
        onclick: () => openEditor(row) }, 'Edit')) : null)) :
      h('tr', {}, h('td', { colspan: columns.length + (canEdit ? 1 : 0) }, state.filters.length ? 'No rows match the filters.' : 'No rows.')));
    const total = range.total;
    pageInfo.textContent = rows.length
      ? `Rows ${state.offset + 1} to ${state.offset + rows.length}${total === null ? '' : ` of ${total}`}`
      : `No rows${total ? ` on this page (${total} in all)` : ''}`;
    previous.disabled = state.offset === 0;
    next.disabled = total === null ? rows.length < state.limit : state.offset + rows.length >= total;
  }

  /** The form for one row (`row` null: a new row). */
  function openEditor(row) {
    const title = row ? `Edit row ${primaryKey.map((k) => `${k} = ${cellText(row[k])}`).join(', ')}` : `New row in ${tableName}`;
    const inputs = columns.map((c) => {
      const property = properties[c] || {};
      const original = row ? cellText(row[c]) : null;
      const isJSON = ['json', 'jsonb'].includes(property.format) || (row && row[c] !== null && typeof row[c] === 'object');
      const input = field(c, { name: c, autocomplete: 'off', value: original ?? '', spellcheck: false },
        { hint: `${property.format || 'unknown type'}${primaryKey.includes(c) ? ', primary key' : ''}${row ? '' : '; leave empty for the default'}` });
      const nullBox = row ? h('input', { type: 'checkbox', checked: original === null, id: `${input.input.id}-null` }) : null;
      if (nullBox) {
        input.input.disabled = original === null;
        nullBox.addEventListener('change', () => { input.input.disabled = nullBox.checked; if (!nullBox.checked) input.input.focus(); });
        input.wrapper.append(h('label', { class: 'check', for: nullBox.id }, nullBox, `${c} is NULL`));
      }
      return { column: c, input, nullBox, original, isJSON };
    });
    const formStatus = notice();
    const save = h('button', { type: 'submit', class: 'primary' }, row ? 'Save row' : 'Insert row');
    const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => { editor.replaceChildren(); } }, 'Cancel');
    const remove = row ? h('button', { type: 'button', class: 'danger' }, 'Delete row') : null;
    const form = h('form', { class: 'card row-editor', novalidate: true, 'aria-labelledby': 'db-editor-title', 'data-test': 'db-row-editor' },
      h('h3', { id: 'db-editor-title' }, title), h('div', { class: 'editor-fields' }, inputs.map((i) => i.input.wrapper)),
      formStatus.element, h('div', { class: 'actions' }, remove, cancel, save));
    const valueOf = (i) => {
      const text = i.input.input.value;
      if (i.isJSON) {
        try { return JSON.parse(text); } catch { throw new Error(`${i.column}: not valid JSON`); }
      }
      return text;
    };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(save, async () => {
        formStatus.clear();
        const changes = {};
        try {
          for (const i of inputs) {
            if (row) {
              if (i.nullBox.checked) { if (i.original !== null) changes[i.column] = null; continue; }
              if (i.input.input.value !== (i.original ?? '') || i.original === null) changes[i.column] = valueOf(i);
            } else if (i.input.input.value !== '') {
              changes[i.column] = valueOf(i);
            }
          }
        } catch (error) {
          return formStatus.show(error.message);
        }
        if (row && Object.keys(changes).length === 0) return formStatus.show('Nothing changed.', 'ok');
        try {
          const options = { headers: { prefer: 'return=representation' } };
          const saved = row
            ? await api.call('PATCH', `${url}?${keyFilter(row)}`, changes, options)
            : await api.call('POST', url, changes, options);
          if (Array.isArray(saved) && saved.length === 0) return formStatus.show('No row was changed: it may have been deleted meanwhile.');
          editor.replaceChildren(h('p', { class: 'notice notice-ok', role: 'status', 'data-test': 'db-saved' }, row ? 'Row saved.' : 'Row inserted.'));
          await load();
        } catch (error) {
          formStatus.show(errorLines(error).join(' '));
        }
      });
    });
    remove?.addEventListener('click', () => busy(remove, async () => {
      if (!confirm(`Delete this row of ${tableName}?`)) return;
      try {
        await api.call('DELETE', `${url}?${keyFilter(row)}`, undefined);
        editor.replaceChildren(h('p', { class: 'notice notice-ok', role: 'status' }, 'Row deleted.'));
        await load();
      } catch (error) {
        formStatus.show(errorLines(error).join(' '));
      }
    }));
    replace(editor, form);
    (inputs.find((i) => !primaryKey.includes(i.column)) || inputs[0])?.input.input.focus();
  }

  load();
  return { reload: load, element: append(section,
    h('div', { class: 'section-head' }, h('h2', { id: 'db-table-title' }, tableName), newRow),
    !writable ? h('p', { class: 'muted' }, 'A view: read only.') : (!primaryKey.length ? h('p', { class: 'muted' }, 'No primary key: rows can be inserted but not edited here.') : null),
    filterForm, chips, viewControls, status.element,
    h('div', { class: 'table-scroll' }, rowsTable),
    h('div', { class: 'pager' }, previous, pageInfo, next),
    editor) };
}

function append(parent, ...children) {
  for (const child of children.flat()) if (child) parent.append(child);
  return parent;
}

/** The SQL console: results, or the SQLSTATE, message, hint and position of an error. */
function sqlConsole({ api, base, onChange }) {
  const sql = field('SQL', { name: 'query', rows: 6, spellcheck: false, autocomplete: 'off', id: 'db-sql' },
    { multiline: true, hint: 'Runs as the portal\'s owner role; several statements may be sent, the last one\'s result is shown. Ctrl+Enter runs.' });
  sql.input.value = draft;
  sql.input.addEventListener('input', () => { draft = sql.input.value; });
  const run = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const output = h('div', { 'aria-live': 'polite', 'data-test': 'sql-result' });
  const form = h('form', { novalidate: true, 'aria-labelledby': 'db-sql-title' }, sql.wrapper, h('div', { class: 'actions' }, run));
  sql.input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) { event.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const query = sql.input.value;
    draft = query;
    if (!query.trim()) { sql.showError('Write a statement first.'); return sql.input.focus(); }
    sql.clear();
    busy(run, async () => {
      let result;
      try {
        result = await api.post(`${base}/sql/v1/query`, { query });
      } catch (error) {
        const diagnosis = error.body && error.body.code ? h('div', { class: 'sql-diagnosis', 'data-test': 'sql-diagnosis', 'aria-live': 'polite' }, 'Diagnosing…') : null;
        replace(output, [sqlError(error, query, sql.input), diagnosis]);
        if (diagnosis) replace(diagnosis, await sqlDiagnosis(api, base, query, error.body, sql.input));
        return;
      }
      replace(output, sqlResult(result));
      await onChange(query);
    });
  });
  return h('section', { class: 'card', 'aria-labelledby': 'db-sql-title', 'data-test': 'sql-console' },
    h('h2', { id: 'db-sql-title' }, 'SQL console'), form, output);
}

function sqlResult(result) {
  const columns = result.columns || [];
  const rows = result.rows || [];
  const summary = h('p', { class: 'notice notice-ok', role: 'status', 'data-test': 'sql-command' },
    h('code', {}, result.command || 'OK'), ` — ${result.row_count ?? rows.length} row${(result.row_count ?? rows.length) === 1 ? '' : 's'}`);
  if (!columns.length) return summary;
  return [summary, h('div', { class: 'table-scroll' },
    h('table', { 'data-test': 'sql-rows' },
      h('caption', { class: 'visually-hidden' }, 'Query result'),
      h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col' }, c.name, h('span', { class: 'col-type' }, ` ${c.type}`))))),
      h('tbody', {}, rows.map((row) => h('tr', {}, row.map((value) => cell(value)))))))];
}

/** The Intelligence plugin's diagnosis of a failed statement: what went wrong and the
 * EXPLAIN-checked fixes; a click puts a fix into the editor. */
async function sqlDiagnosis(api, base, query, errorBody, textarea) {
  let answer;
  try {
    answer = await api.post(`${base}/sql/v1/diagnose`, { query, error: errorBody });
  } catch (error) {
    const body = error.body || {};
    return h('p', { class: 'notice', 'data-test': 'sql-diagnosis-unavailable' },
      body.code === 'intelligence_not_enabled' ? `No diagnosis: ${body.message}. ${body.hint || ''}` : `No diagnosis: ${error.message}`);
  }
  const diagnosis = answer.diagnosis || {};
  const fixes = answer.fixes || [];
  return [
    h('p', {}, h('strong', {}, 'Diagnosis'), ' ', h('code', {}, diagnosis.category || ''), ': ', diagnosis.explanation || ''),
    (diagnosis.remedies || []).length
      ? h('div', {}, h('p', {}, 'An admin could run (not checked):'), (diagnosis.remedies || []).map((text) => h('pre', {}, text))) : null,
    fixes.length
      ? h('ol', { 'data-test': 'sql-fixes' }, fixes.map((fix) => h('li', {},
        h('pre', {}, fix.statement),
        h('p', {}, `${fix.reason} (${fix.source === 'model' ? 'model' : 'catalog'}, checked with EXPLAIN)`),
        h('button', { type: 'button', 'data-test': 'sql-use-fix', onclick: () => { textarea.value = fix.statement; draft = fix.statement; textarea.focus(); } }, 'Use this fix'))))
      : h('p', {}, 'No checked fix.'),
    answer.model && !answer.model.used ? h('p', { class: 'muted' }, `Model: ${answer.model.reason}.`) : null,
  ];
}

function sqlError(error, query, textarea) {
  const body = error.body || {};
  const position = Number(body.position) || null;
  const lines = [
    h('p', {}, h('strong', {}, 'Error'), body.code ? [' ', h('code', { 'data-test': 'sql-sqlstate' }, body.code)] : null, ': ', error.message),
    body.details ? h('p', {}, `Details: ${body.details}`) : null,
    body.hint ? h('p', {}, `Hint: ${body.hint}`) : null,
  ];
  if (position) {
    // Postgres counts characters from 1 over the whole text sent.
    const characters = [...query];
    const index = Math.min(position - 1, characters.length);
    const before = characters.slice(0, index).join('');
    const lineStart = before.lastIndexOf('\n') + 1;
    const lineNumber = before.split('\n').length;
    const rest = characters.slice(index).join('');
    const lineEnd = rest.indexOf('\n');
    const marked = rest.slice(0, 1) === '\n' || rest === '' ? ' ' : [...rest][0];
    const after = lineEnd < 0 ? [...rest].slice(1).join('') : rest.slice(marked.length, lineEnd);
    lines.push(h('p', { 'data-test': 'sql-position' }, `At character ${position} (line ${lineNumber}, column ${index - [...query.slice(0, lineStart)].length + 1}):`),
      h('pre', { class: 'sql-excerpt' }, before.slice(lineStart), h('mark', {}, marked), marked === ' ' ? '' : after));
    const select = h('button', { type: 'button', class: 'secondary small', onclick: () => {
      const offset = before.length;
      textarea.focus();
      textarea.setSelectionRange(offset, offset + (marked === ' ' ? 0 : marked.length));
    } }, 'Show in the editor');
    lines.push(select);
  }
  return h('div', { class: 'notice notice-error sql-error', role: 'alert', 'data-test': 'sql-error' }, lines);
}
