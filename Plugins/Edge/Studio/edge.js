// Edge functions: a portal's Deno functions, their versions and logs; deploy a function from
// the browser (index.ts in a textarea), make an older version active again, delete one, try
// it out and follow its logs. Path: plugins/edge/functions/<portal>[/<function>].
// A plugin page (ABI 1.5): served from the Edge plugin's Studio folder; everything it uses
// comes from the render context (docs/plugin-pages-and-commands.md). The admin API is
// /p/<portal>/edge/v1/functions (docs/edge.md); changes need AAL2, and the Studio's api asks
// for the second factor by itself when the plugin answers 403 aal2_required.

// The Studio's UI helpers, taken from the render context (context.ui) on every render.
let h, replace, field, notice, busy, when;

/** A function's name, as the plugin checks it. */
const NAME_PATTERN = '[a-z0-9][a-z0-9_-]{0,62}';
/** What the deploy form starts with. */
const DEFAULT_SOURCE = 'Deno.serve((req) => new Response("Hello from " + new URL(req.url).pathname));\n';
/** Log lines kept on the page (the oldest go first), lines asked for per request, poll period. */
const LOG_LIMIT = 500;
const LOG_BATCH = 200;
const LOG_PERIOD_MS = 2000;
/** The most characters of a "Try it" answer shown. */
const ANSWER_LIMIT = 64 * 1024;

/** An error's message with its hint. */
const describe = (error) => [error.message, error.hint].filter(Boolean).join(' ');
/** A value for a table cell: a dash when absent. */
const shown = (value) => (value === undefined || value === null || value === '' ? '—' : String(value));
/** The first field of `object` that is present, among `names`. */
const first = (object, ...names) => names.map((n) => object?.[n]).find((v) => v !== undefined && v !== null);
/** Whether a function requires a JWT (the list may put it at the top or in its manifest). */
const requiresJWT = (fn) => first(fn, 'verify_jwt') ?? first(fn.manifest, 'verify_jwt');
/** `file:line:column`, as far as known. */
const place = (problem) => [problem.file, problem.line, problem.line !== undefined && problem.line !== null ? problem.column : null]
  .filter((part) => part !== undefined && part !== null && part !== '').join(':');

// The admin's token for "Try it" (which calls the function itself, not a JSON admin route):
// the render context's, then whatever pair the Studio stores later (a refresh or a step-up
// announces it on the window). Kept in this module only, never written anywhere.
let currentToken = null;
addEventListener('meltybase-session', ({ detail }) => { if (detail?.access_token) currentToken = detail.access_token; });

export default {
  title: 'Edge functions',
  async render({ api, params, navigate, ui, plugin, session }) {
    await ui.stylesheet(new URL('edge.css', import.meta.url).href);
    ({ h, replace, field, notice, busy, when } = ui);
    currentToken = session?.access_token || currentToken;
    const PAGE = `plugins/${plugin.name}/functions`;
    const { portals } = await api.get('/v1/hub/portals');
    const picker = ui.portalPicker({ portals, plugin: 'edge', page: 'edge', selected: params[0] && decodeURIComponent(params[0]),
      onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Edge functions'),
      h('p', {}, 'TypeScript functions of a portal, run by Deno in sandboxed workers and invoked at /p/<portal>/functions/v1/<name>. Deploying, making a version active and deleting need a second factor and are recorded in the audit log.')];
    if (!picker.chosen) return [...intro, picker.element];
    const portal = picker.chosen;
    const base = `/p/${encodeURIComponent(portal)}/edge/v1/functions`;
    const functionURL = (name) => `${base}/${encodeURIComponent(name)}`;
    const invokePath = (name) => `/p/${encodeURIComponent(portal)}/functions/v1/${encodeURIComponent(name)}`;
    const status = notice();
    status.element.setAttribute('data-test', 'edge-status');
    const rows = h('tbody', {});
    const detail = h('div', { 'data-test': 'edge-detail' });
    let known = [];
    let opened = null; // {name, refresh()} of the function whose panel is shown

    // ---- the functions table ----
    const functionRow = (fn) => {
      const isOpen = opened?.name === fn.name;
      const open = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Open ${fn.name}`, 'aria-expanded': String(isOpen),
        'aria-controls': 'edge-function', onclick: () => (opened?.name === fn.name ? closePanel() : openPanel(fn.name, { focus: true })) },
      isOpen ? 'Close' : 'Open');
      const jwt = requiresJWT(fn);
      const live = first(fn, 'warm_version') !== undefined
        ? `v${fn.warm_version} warm` : null;
      return h('tr', { 'data-function': fn.name, class: isOpen ? 'edge-open' : null },
        h('th', { scope: 'row' }, h('code', {}, fn.name)),
        h('td', { 'data-label': 'Active version', 'data-test': 'edge-active-version' }, shown(first(fn, 'active_version', 'version'))),
        h('td', { 'data-label': 'JWT required' }, jwt === undefined ? '—' : (jwt ? 'Yes' : 'No')),
        h('td', { 'data-label': 'Updated' }, when(first(fn, 'updated_at', 'updated', 'created_at'))),
        h('td', { 'data-label': 'Invocations', 'data-test': 'edge-invocations' }, shown(first(fn, 'invocations'))),
        h('td', { 'data-label': 'Workers' }, shown(first(fn, 'workers')), live ? h('span', { class: 'muted' }, ` (${live})`) : null),
        h('td', {}, h('div', { class: 'row-actions' }, open)));
    };

    async function load() {
      try {
        const answer = await api.get(base);
        known = (answer.functions || []).slice().sort((a, b) => String(a.name).localeCompare(String(b.name)));
        replace(rows, known.length ? known.map(functionRow)
          : h('tr', {}, h('td', { colspan: 7 }, 'No functions yet. Deploy one with the form below.')));
      } catch (error) {
        status.show(`Cannot list the functions: ${describe(error)}`);
      }
    }

    // ---- one function: facts, versions, "Try it", logs ----
    function closePanel({ focusRow = true } = {}) {
      const name = opened?.name;
      opened = null;
      detail.replaceChildren(); // the logs list is detached: its polling stops
      rows.querySelectorAll('tr.edge-open').forEach((row) => row.classList.remove('edge-open'));
      for (const button of rows.querySelectorAll('button[aria-expanded="true"]')) {
        button.setAttribute('aria-expanded', 'false');
        button.textContent = 'Open';
      }
      if (focusRow && name) rows.querySelector(`tr[data-function="${CSS.escape(name)}"] button`)?.focus();
    }

    function openPanel(name, { focus = false } = {}) {
      closePanel({ focusRow: false });
      const panel = functionPanel(name);
      opened = panel;
      replace(detail, panel.element);
      const row = rows.querySelector(`tr[data-function="${CSS.escape(name)}"]`);
      if (row) {
        row.classList.add('edge-open');
        const button = row.querySelector('button[aria-expanded]');
        button.setAttribute('aria-expanded', 'true');
        button.textContent = 'Close';
      }
      panel.refresh().then(() => { if (focus) panel.heading.focus(); });
      return panel;
    }

    function functionPanel(name) {
      const heading = h('h2', { id: 'edge-function-title', tabindex: '-1' }, 'Function ', h('code', {}, name));
      const facts = h('div', { 'data-test': 'edge-facts' }, h('p', { class: 'muted' }, 'Loading…'));
      const versions = h('tbody', {});
      let current = null;

      const refresh = async () => {
        try {
          current = await api.get(functionURL(name));
        } catch (error) {
          if (error.code === 'function_not_found' || error.status === 404) {
            status.show(`${name}: ${describe(error)}`);
            if (opened?.name === name) closePanel({ focusRow: false });
            return;
          }
          replace(facts, h('p', { class: 'notice notice-error', role: 'alert' }, `Cannot read ${name}: ${describe(error)}`));
          return;
        }
        const active = first(current, 'active_version', 'version');
        const manifest = current.manifest || {};
        const allowNet = first(current, 'allow_net') ?? manifest.allow_net;
        const secrets = first(current, 'secrets') ?? manifest.secrets;
        const jwt = requiresJWT(current);
        replace(facts, ui.facts([
          ['Invoke at', h('code', { 'data-test': 'edge-invoke-url' }, `${location.origin}${invokePath(name)}`)],
          ['Active version', shown(active)],
          ['JWT required', jwt === undefined ? '—' : (jwt ? 'Yes: callers send a key or user token of the portal' : 'No: anyone may call it')],
          ['Network', Array.isArray(allowNet) && allowNet.length ? allowNet.join(', ') : 'none'],
          ['Secrets', Array.isArray(secrets) && secrets.length ? secrets.join(', ') : 'none'],
          ['Entrypoint', shown(first(current, 'entrypoint') ?? manifest.entrypoint)],
          ['SHA-256', h('code', {}, shown(first(current, 'sha256')))],
          ['Created', when(first(current, 'created_at', 'created'))],
          ['Updated', when(first(current, 'updated_at', 'updated'))],
        ].concat(first(current, 'workers') !== undefined
          ? [['Workers', `${current.workers} (${shown(current.in_flight)} in flight, ${shown(current.invocations)} invocations, ${shown(current.restarts)} restarts)`]]
          : [])));
        const list = (current.versions || []).slice().sort((a, b) => b.version - a.version);
        replace(versions, list.length ? list.map((v) => {
          const isActive = v.active === true || v.version === active;
          const activate = isActive ? h('span', { class: 'badge badge-ok' }, 'active')
            : h('button', { type: 'button', class: 'secondary small', 'aria-label': `Make version ${v.version} of ${name} active`,
              onclick: (event) => busy(event.currentTarget, async () => {
                status.clear();
                try {
                  const answer = await api.post(`${functionURL(name)}/rollback`, { version: v.version });
                  status.show(`${name} now runs version ${first(answer, 'active_version', 'version') ?? v.version}.`, 'ok');
                  await Promise.all([load(), refresh()]);
                  versions.querySelector('.badge-ok')?.closest('tr')?.querySelector('th')?.focus();
                } catch (error) {
                  status.show(`${name}: ${describe(error)}`);
                }
              }) }, 'Make active');
          return h('tr', { 'data-version': v.version, class: isActive ? 'edge-active' : null },
            h('th', { scope: 'row', tabindex: '-1' }, String(v.version)),
            h('td', { 'data-label': 'Deployed' }, when(first(v, 'created_at', 'created'))),
            h('td', { 'data-label': 'By' }, shown(first(v, 'created_by'))),
            h('td', { 'data-label': 'Size' }, v.size === undefined ? '—' : `${v.size} bytes`),
            h('td', { 'data-label': 'SHA-256' }, h('code', { title: shown(v.sha256) }, shown(v.sha256).slice(0, 12))),
            h('td', {}, activate));
        }) : h('tr', {}, h('td', { colspan: 6 }, 'No versions.')));
      };

      // "New version": the deploy form, filled in for this function.
      const newVersion = h('button', { type: 'button', class: 'secondary small', onclick: () => {
        nameField.input.value = name;
        if (current) verifyBox.checked = requiresJWT(current) !== false;
        source.input.focus();
        source.input.scrollIntoView({ block: 'center' });
      } }, 'New version');

      const remove = h('button', { type: 'button', class: 'danger small', 'aria-label': `Delete ${name}`, onclick: () => busy(remove, async () => {
        const count = current?.versions?.length;
        if (!confirm(`Delete the function ${name}? ${count ? `Its ${count} version${count === 1 ? '' : 's'} and` : 'Its versions and'} its logs are removed for good, and ${invokePath(name)} answers 404.`)) return;
        status.clear();
        try {
          await api.del(functionURL(name));
          closePanel({ focusRow: false });
          status.show(`${name} deleted.`, 'ok');
          await load();
          document.getElementById('edge-functions-title')?.focus();
        } catch (error) {
          status.show(`${name}: ${describe(error)}`);
        }
      }) }, 'Delete');

      const logs = logPanel(name);
      const tryIt = tryPanel(name, () => { logs.poke(); load(); });
      const element = h('section', { id: 'edge-function', class: 'card edge-function', 'data-test': 'edge-function', 'data-function': name, 'aria-labelledby': 'edge-function-title' },
        h('div', { class: 'section-head' }, heading,
          h('div', { class: 'row-actions' }, newVersion, remove,
            h('button', { type: 'button', class: 'secondary small', 'aria-label': `Close ${name}`, onclick: () => closePanel() }, 'Close'))),
        facts,
        h('h3', { id: 'edge-versions-title' }, 'Versions'),
        h('div', { class: 'table-scroll' },
          h('table', { class: 'stacked', 'data-test': 'edge-versions', 'aria-labelledby': 'edge-versions-title' },
            h('thead', {}, h('tr', {}, ['Version', 'Deployed', 'By', 'Size', 'SHA-256', 'Active'].map((t) => h('th', { scope: 'col' }, t)))),
            versions)),
        tryIt, logs.element);
      return { name, element, heading, refresh };
    }

    // "Try it": calls the function as the signed-in admin and shows the answer as it came.
    function tryPanel(name, after) {
      const methodId = 'edge-try-method';
      const method = h('select', { id: methodId, name: 'method' }, ['POST', 'GET', 'PUT', 'PATCH', 'DELETE'].map((m) => h('option', { value: m }, m)));
      const path = field('Path after the name (optional)', { name: 'path', autocomplete: 'off', spellcheck: 'false', placeholder: '/items?limit=5', maxlength: 2000 });
      const body = field('Body (JSON)', { name: 'body', rows: 4, spellcheck: 'false', autocomplete: 'off', class: 'edge-code' },
        { multiline: true, hint: 'Sent with content-type application/json and your admin token as the bearer.' });
      body.input.defaultValue = '{"name": "Studio"}';
      const send = h('button', { type: 'submit', class: 'primary' }, 'Send');
      const result = h('div', { class: 'edge-try-result', 'data-test': 'edge-try-result', 'aria-live': 'polite' });
      const form = h('form', { novalidate: true, class: 'edge-try', 'aria-labelledby': 'edge-try-title' },
        h('h3', { id: 'edge-try-title' }, 'Try it'),
        h('div', { class: 'edge-try-line' },
          h('div', { class: 'field' }, h('label', { for: methodId }, 'Method'), method), path.wrapper),
        body.wrapper, h('div', { class: 'actions' }, send), result);
      method.addEventListener('change', () => { body.input.disabled = method.value === 'GET'; });
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        busy(send, async () => {
          body.clear();
          const text = body.input.value.trim();
          const withBody = method.value !== 'GET';
          if (withBody && text) {
            try { JSON.parse(text); } catch { body.showError('The body must be JSON (or empty).'); return body.input.focus(); }
          }
          let rest = path.input.value.trim();
          if (rest && !rest.startsWith('/') && !rest.startsWith('?')) rest = `/${rest}`;
          const call = () => fetch(`${invokePath(name)}${rest}`, {
            method: method.value, cache: 'no-store', credentials: 'same-origin',
            headers: { ...(currentToken ? { authorization: `Bearer ${currentToken}` } : {}), ...(withBody ? { 'content-type': 'application/json' } : {}) },
            body: withBody ? (text || '{}') : undefined,
          });
          replace(result, h('p', { class: 'muted' }, `Calling ${name}…`));
          const started = performance.now();
          try {
            let response = await call();
            if (response.status === 401 && await refreshedToken(response)) response = await call();
            let answer = await response.text();
            const took = Math.round(performance.now() - started);
            const type = response.headers.get('content-type') || '';
            if (type.includes('json')) { try { answer = JSON.stringify(JSON.parse(answer), null, 2); } catch { /* shown as it came */ } }
            const cut = answer.length > ANSWER_LIMIT;
            replace(result,
              h('p', { class: `edge-status ${response.ok ? 'edge-status-ok' : 'edge-status-bad'}`, 'data-test': 'edge-try-status' },
                h('strong', {}, `${response.status} ${response.statusText}`.trim()), ` · ${took} ms${type ? ` · ${type}` : ''}`),
              h('pre', { class: 'edge-answer', 'data-test': 'edge-try-body', tabindex: '0', 'aria-label': `Answer of ${name}` },
                cut ? answer.slice(0, ANSWER_LIMIT) : answer),
              cut ? h('p', { class: 'muted' }, `Only the first ${ANSWER_LIMIT} characters of ${answer.length} are shown.`) : null);
          } catch (error) {
            replace(result, h('p', { class: 'notice notice-error', role: 'alert' }, `The call failed: ${error.message}`));
          }
          after();
        });
      });
      return form;
    }

    /** After a 401 from the function: whether the Studio now holds a newer token (an admin
     *  route call refreshes an expired one). A function's own 401 changes nothing. */
    async function refreshedToken(response) {
      let code = null;
      try { code = (await response.clone().json()).code; } catch { return false; }
      if (code !== 'invalid_jwt') return false;
      const before = currentToken;
      try { await api.get(base); } catch { return false; }
      return currentToken !== before;
    }

    // The logs: new lines every 2 s while the list is on the page (detached: polling stops).
    function logPanel(name) {
      const list = h('ol', { class: 'edge-logs', 'data-test': 'edge-logs', role: 'log', 'aria-live': 'polite', 'aria-labelledby': 'edge-logs-title', tabindex: '0' });
      const state = h('p', { class: 'muted edge-logs-state', 'data-test': 'edge-logs-state' }, 'Reading the logs…');
      const pause = h('button', { type: 'button', class: 'secondary small', 'aria-pressed': 'false' }, 'Pause');
      const clear = h('button', { type: 'button', class: 'secondary small', 'aria-label': `Clear the shown logs of ${name}` }, 'Clear');
      let after = 0;
      let paused = false;
      let running = false;
      let stopped = false;
      let timer = null;
      let ticks = 0;

      const add = (lines) => {
        if (!lines.length) return;
        const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
        if (!list.querySelector('li[data-id]')) list.replaceChildren();
        for (const line of lines) {
          const id = Number(line.id);
          if (Number.isFinite(id) && id > after) after = id;
          const at = first(line, 'at', 'created_at', 'time');
          const date = at ? new Date(at) : null;
          const level = String(first(line, 'level') ?? 'log');
          list.append(h('li', { 'data-id': shown(line.id), 'data-level': level, class: `edge-level-${level.replace(/[^a-z]/g, '')}`,
            title: line.request_id ? `request ${line.request_id}` : null },
          h('time', { datetime: at || null }, date && !Number.isNaN(date.getTime()) ? date.toLocaleTimeString() : shown(at)),
          h('span', { class: 'edge-level' }, level),
          line.version !== undefined ? h('span', { class: 'edge-version' }, `v${line.version}`) : null,
          h('span', { class: 'edge-message' }, String(line.message ?? ''))));
        }
        while (list.children.length > LOG_LIMIT) list.firstElementChild.remove();
        if (atBottom) list.scrollTop = list.scrollHeight;
      };

      const stop = () => { stopped = true; if (timer) clearTimeout(timer); timer = null; };
      const tick = async () => {
        timer = null;
        if (stopped || running) return;
        // The first read happens before the page is shown; later ones only while it is.
        if (ticks > 0 && !list.isConnected) return stop();
        ticks += 1;
        if (!paused) {
          running = true;
          try {
            for (let round = 0; round < 10; round += 1) {
              const answer = await api.get(`${functionURL(name)}/logs?after=${after}&limit=${LOG_BATCH}`);
              const lines = answer.lines || [];
              add(lines);
              if (lines.length < LOG_BATCH || !list.isConnected) break;
            }
            state.textContent = list.querySelector('li[data-id]')
              ? `Newest at the bottom, the last ${LOG_LIMIT} lines at most; updated every ${LOG_PERIOD_MS / 1000} s.`
              : `No lines yet (console.log and console.error of ${name} appear here).`;
          } catch (error) {
            state.textContent = `Cannot read the logs: ${describe(error)}`;
            if (error.status === 404) stop();
          } finally {
            running = false;
          }
        }
        if (!stopped) timer = setTimeout(tick, LOG_PERIOD_MS);
      };
      pause.addEventListener('click', () => {
        paused = !paused;
        pause.textContent = paused ? 'Resume' : 'Pause';
        pause.setAttribute('aria-pressed', String(paused));
        if (paused) state.textContent = 'Paused.';
        else poke();
      });
      clear.addEventListener('click', () => { list.replaceChildren(); state.textContent = 'Cleared; new lines appear below.'; });
      /** Reads now (after a call from "Try it"), unless a read is under way. */
      const poke = () => {
        if (stopped || running) return;
        if (timer) clearTimeout(timer);
        timer = setTimeout(tick, 300);
      };
      tick();
      const element = h('section', { class: 'edge-logs-panel', 'aria-labelledby': 'edge-logs-title' },
        h('div', { class: 'section-head' }, h('h3', { id: 'edge-logs-title' }, 'Logs'), h('div', { class: 'row-actions' }, pause, clear)),
        state, list);
      return { element, poke };
    }

    // ---- deploy ----
    const nameField = field('Name', { name: 'name', autocomplete: 'off', pattern: NAME_PATTERN, maxlength: 63, required: true, spellcheck: 'false' },
      { hint: '1 to 63 of a–z 0–9 _ -, starting with a letter or digit, e.g. hello. The same name deploys a new version.' });
    const source = field('index.ts', { name: 'source', rows: 12, autocomplete: 'off', spellcheck: 'false', required: true, class: 'edge-code', wrap: 'off' },
      { multiline: true, hint: 'The function\'s entry module. It is type-checked before anything is deployed.' });
    source.input.defaultValue = DEFAULT_SOURCE;
    const verifyBox = h('input', { type: 'checkbox', id: 'edge-verify-jwt', name: 'verify_jwt', checked: true });
    const problems = h('div', { id: 'edge-deploy-errors', class: 'edge-errors', 'data-test': 'edge-deploy-errors', role: 'alert', tabindex: '-1', hidden: true });
    source.input.setAttribute('aria-describedby', `${source.input.getAttribute('aria-describedby')} edge-deploy-errors`);
    const progress = h('p', { class: 'muted', 'aria-live': 'polite', 'data-test': 'edge-deploy-progress' });
    const deploy = h('button', { type: 'submit', class: 'primary' }, 'Deploy');
    const form = h('form', { novalidate: true, class: 'edge-deploy', 'aria-labelledby': 'edge-deploy-title', 'data-test': 'edge-deploy' },
      h('h2', { id: 'edge-deploy-title' }, 'Deploy a function'),
      nameField.wrapper, source.wrapper, problems,
      h('label', { class: 'check', for: 'edge-verify-jwt' }, verifyBox, 'Require a JWT (verify_jwt): callers send a key or user token of the portal'),
      h('div', { class: 'actions' }, deploy), progress);

    /** Puts the caret at `line`:`column` of index.ts. */
    const goTo = (line, column) => {
      const text = source.input.value;
      let offset = 0;
      for (let n = 1; n < line && offset !== -1; n += 1) {
        const next = text.indexOf('\n', offset);
        offset = next === -1 ? -1 : next + 1;
      }
      if (offset === -1) offset = text.length;
      const end = text.indexOf('\n', offset);
      const position = Math.min(offset + Math.max(0, (column || 1) - 1), end === -1 ? text.length : end);
      source.input.focus();
      source.input.setSelectionRange(position, position);
    };

    const clearProblems = () => {
      problems.hidden = true;
      problems.replaceChildren();
      source.input.removeAttribute('aria-invalid');
    };
    const showProblems = (error) => {
      const list = Array.isArray(error.body?.errors) && error.body.errors.length
        ? error.body.errors : [{ code: error.code, message: error.message, hint: error.hint }];
      replace(problems,
        h('p', {}, h('strong', {}, 'Nothing was deployed'), `: ${list.length === 1 ? 'one problem' : `${list.length} problems`}.`,
          error.body?.hint && !/nothing was deployed/i.test(error.body.hint) ? ` ${error.body.hint[0].toUpperCase()}${error.body.hint.slice(1)}.` : ''),
        h('ul', { 'aria-label': 'Problems' }, list.map((problem) => {
          const where = place(problem);
          const jump = problem.file === 'index.ts' && problem.line
            ? h('button', { type: 'button', class: 'link edge-jump', 'aria-label': `Go to ${where}`, onclick: () => goTo(Number(problem.line), Number(problem.column)) }, where)
            : (where ? h('code', {}, where) : null);
          return h('li', { 'data-test': 'edge-deploy-error', 'data-code': problem.code || null },
            jump, where ? ': ' : '', problem.message || problem.code || 'refused',
            problem.code ? h('span', { class: 'badge edge-code-badge' }, problem.code) : null,
            problem.hint && problem.hint !== error.body?.hint ? h('div', { class: 'field-hint' }, problem.hint) : null);
        })));
      problems.hidden = false;
      source.input.setAttribute('aria-invalid', 'true');
      problems.focus();
    };

    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(deploy, async () => {
        nameField.clear();
        clearProblems();
        status.clear();
        const name = nameField.input.value.trim();
        if (!new RegExp(`^${NAME_PATTERN}$`).test(name)) {
          nameField.showError('Use 1 to 63 of a–z 0–9 _ -, starting with a letter or digit.');
          return nameField.input.focus();
        }
        if (!source.input.value.trim()) {
          source.showError('Write the function\'s code, e.g. Deno.serve(() => new Response("hi")).');
          return source.input.focus();
        }
        source.clear();
        progress.textContent = `Checking and deploying ${name}…`;
        try {
          const created = await api.post(base, { name, files: { 'index.ts': source.input.value }, verify_jwt: verifyBox.checked });
          const version = first(created, 'version', 'active_version');
          progress.textContent = '';
          status.show(`${created.name || name} version ${shown(version)} deployed${created.sha256 ? ` (sha256 ${String(created.sha256).slice(0, 12)}…)` : ''}.`, 'ok');
          await load();
          if (opened?.name === name) await opened.refresh();
          else openPanel(name);
        } catch (error) {
          progress.textContent = '';
          if (error.code === 'invalid_name') { nameField.showError(describe(error)); return nameField.input.focus(); }
          if (error.status === 400) return showProblems(error);
          status.show(`${name}: ${describe(error)}`);
        }
      });
    });

    const refreshList = h('button', { type: 'button', class: 'secondary small' }, 'Refresh');
    refreshList.addEventListener('click', () => busy(refreshList, async () => {
      status.clear();
      await load();
      if (opened) await opened.refresh();
    }));

    await load();
    const wanted = params[1] && decodeURIComponent(params[1]);
    if (wanted) {
      if (known.some((fn) => fn.name === wanted)) openPanel(wanted);
      else status.show(`Portal ${portal} has no function ${wanted}.`);
    }
    return [
      ...intro, picker.element, status.element,
      h('section', { 'aria-labelledby': 'edge-functions-title' },
        h('div', { class: 'section-head' }, h('h2', { id: 'edge-functions-title', tabindex: '-1' }, 'Functions'), refreshList),
        h('div', { class: 'table-scroll' },
          h('table', { 'data-test': 'edge-functions', class: 'stacked' },
            h('caption', { class: 'visually-hidden' }, `Functions of ${portal}`),
            h('thead', {}, h('tr', {}, ['Name', 'Active version', 'JWT required', 'Updated', 'Invocations', 'Workers', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
            rows))),
      detail,
      h('section', { class: 'card' }, form),
      h('p', { class: 'muted' }, 'From a shell: ', h('code', {}, `meltybase functions deploy --portal ${portal} <name> <folder>`),
        ' deploys a folder with several modules and a function.json (network hosts, secrets, limits).'),
    ];
  },
};
