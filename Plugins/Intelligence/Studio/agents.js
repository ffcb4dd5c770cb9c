// Agents: a portal's OpenClaw runs. The list of runs, then one run's tree of sub-agents with
// their steps, kept live through the run's SSE feed (/agents/v1/runs/<id>/events); Cancel
// stops a run and its sub-agents, Approve/Reject decide a SQL write the run waits on (both
// need AAL2: the step-up dialog appears by itself). Path: plugins/intelligence/agents/<portal>[/<run>].
// A plugin page (ABI 1.5): everything it uses comes from the render context (docs/studio.md).

let h, replace, notice, busy, when;

/** An error's message with its hint. */
const describe = (error) => [error.message, error.hint].filter(Boolean).join(' ');
const ACTIVE = new Set(['queued', 'running', 'waiting_approval']);

// The admin's token for the SSE feed (fetch streams it; the api helper reads bodies whole):
// the render context's, then whatever the Studio announces after a refresh or a step-up.
let currentToken = null;
addEventListener('meltybase-session', ({ detail }) => { if (detail?.access_token) currentToken = detail.access_token; });
// The feed of the run on screen; aborted when the page renders again.
let feed = null;

/** `used / budget` of one figure. */
const figure = (run, key, unit = '') => `${run.used[key]} / ${run.budget[key]}${unit}`;

/** A short line for one step. */
const stepText = (step) => {
  const content = step.content || {};
  switch (step.kind) {
    case 'plan': return (content.tool_calls || []).map((call) => `${call.name}(${call.arguments})`).join(', ') || content.content || '';
    case 'tool_call': return `${content.name} ${content.arguments}`;
    case 'observation': return `${content.ok ? '' : '✗ '}${content.text}`;
    case 'answer': return content.text;
    case 'sub_agent': return `sub-agent ${content.child_id}: ${content.goal}`;
    case 'approval': return `${content.status}${content.decided_by ? ` by ${content.decided_by}` : ''}: ${content.statement || content.call_id}`;
    default: return content.message || JSON.stringify(content);
  }
};

export default {
  title: 'Agents',
  async render({ api, params, navigate, ui, plugin, session }) {
    ({ h, replace, notice, busy, when } = ui);
    currentToken = session?.access_token || currentToken;
    if (feed) { feed.abort(); feed = null; }
    const PAGE = `plugins/${plugin.name}/agents`;
    const { portals } = await api.get('/v1/hub/portals');
    const picker = ui.portalPicker({ portals, plugin: 'intelligence', page: 'agents', selected: params[0] && decodeURIComponent(params[0]),
      onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Agents'),
      h('p', {}, 'OpenClaw runs of a portal: each works toward a goal within its budget of steps, tokens and time, through tools that act under the role of the user who started it (free SQL only for service_role and admins). SQL writes wait for an approval here.')];
    if (!picker.chosen) return [...intro, picker.element];
    const portal = picker.chosen;
    const base = `/p/${encodeURIComponent(portal)}/agents/v1/runs`;
    const status = notice();

    if (!params[1]) {
      const { runs } = await api.get(base);
      const rows = runs.map((run) => h('tr', {},
        h('td', {}, h('a', { href: '#', onclick: (event) => { event.preventDefault(); navigate(`${PAGE}/${encodeURIComponent(portal)}/${run.id}`); } }, run.goal.slice(0, 120))),
        h('td', {}, h('span', { class: `badge ${run.status}` }, run.status)),
        h('td', {}, run.subject || run.role),
        h('td', {}, figure(run, 'steps')),
        h('td', {}, when(run.created_at))));
      const table = runs.length
        ? h('div', { class: 'table-scroll' }, h('table', { 'aria-label': 'Agent runs' }, h('thead', {}, h('tr', {}, ...['Goal', 'Status', 'Started by', 'Steps', 'Started'].map((title) => h('th', {}, title)))), h('tbody', {}, ...rows)))
        : h('p', { class: 'muted' }, 'No runs yet. Start one with POST /p/<portal>/agents/v1/runs.');
      return [...intro, picker.element, status.element, table];
    }

    const runID = decodeURIComponent(params[1]);
    const detail = h('div', { 'aria-live': 'polite' });
    const load = async () => {
      let run;
      try {
        run = await api.get(`${base}/${encodeURIComponent(runID)}`);
      } catch (error) {
        return status.show(describe(error), 'error');
      }
      const children = new Map();
      for (const entry of run.runs) {
        if (!entry.parent_id) continue;
        if (!children.has(entry.parent_id)) children.set(entry.parent_id, []);
        children.get(entry.parent_id).push(entry);
      }
      const node = (entry) => {
        const steps = run.steps.filter((step) => step.run_id === entry.id);
        const pending = run.approvals.filter((approval) => approval.run_id === entry.id && approval.status === 'pending');
        // The decision names the approval shown, so a newer pending write is never decided by mistake.
        const decide = (approval, verb) => h('button', { type: 'button', class: verb === 'approve' ? 'primary small' : 'secondary small',
          onclick: (event) => busy(event.currentTarget, async () => {
            try { await api.post(`${base}/${entry.id}/${verb}`, { approval_id: approval.id }); await load(); } catch (error) { status.show(describe(error), 'error'); }
          }) }, verb === 'approve' ? 'Approve' : 'Reject');
        return h('li', { class: 'agent-run' },
          h('p', {}, h('strong', {}, entry.goal), ' ', h('span', { class: `badge ${entry.status}` }, entry.status),
            ` steps ${figure(entry, 'steps')}, tokens ${figure(entry, 'tokens')}, time ${figure(entry, 'wall_clock_ms', ' ms')}`),
          entry.reason ? h('p', { class: 'muted' }, entry.reason) : '',
          entry.answer ? h('blockquote', {}, entry.answer) : '',
          ...pending.map((approval) => h('div', { class: 'approval' }, h('code', {}, approval.statement), ' ',
            h('span', { class: 'muted' }, `approval ${approval.id}`), ' ', decide(approval, 'approve'), ' ', decide(approval, 'reject'))),
          h('ol', { class: 'agent-steps' }, ...steps.map((step) => h('li', {}, h('span', { class: 'muted' }, `${step.seq}. ${step.kind} `), stepText(step).slice(0, 400)))),
          h('ul', { class: 'agent-children' }, ...(children.get(entry.id) || []).map(node)));
      };
      const cancel = ACTIVE.has(run.status)
        ? h('button', { type: 'button', class: 'secondary', onclick: (event) => busy(event.currentTarget, async () => {
          try { await api.post(`${base}/${run.id}/cancel`, {}); await load(); } catch (error) { status.show(describe(error), 'error'); }
        }) }, 'Cancel run')
        : '';
      replace(detail, h('p', {}, h('a', { href: '#', onclick: (event) => { event.preventDefault(); navigate(`${PAGE}/${encodeURIComponent(portal)}`); } }, '← All runs'), ' ', cancel),
        h('ul', { class: 'agent-tree' }, node(run)));
      return run;
    };
    const run = await load();

    // Live: every step event reloads the tree (at most every 500 ms) until the run ends.
    if (run && ACTIVE.has(run.status) && currentToken) {
      feed = new AbortController();
      const signal = feed.signal;
      (async () => {
        let timer = null;
        const schedule = () => { if (!timer) timer = setTimeout(() => { timer = null; load(); }, 500); };
        try {
          const response = await fetch(`${base}/${encodeURIComponent(runID)}/events`, { headers: { Authorization: `Bearer ${currentToken}` }, signal });
          const reader = response.body.getReader();
          const decoder = new TextDecoder();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            if (decoder.decode(value, { stream: true }).includes('event:')) schedule();
          }
          schedule();
        } catch (error) {
          if (!signal.aborted) status.show(`The live feed stopped: ${error.message}. Reload to follow the run again.`, 'warning');
        }
      })();
    }
    return [...intro, picker.element, status.element, detail];
  },
};
