// Sentient SQL: row-level security proposals per table of a portal, each tried in a
// rolled-back transaction as two synthetic users and anon (the rows each saw), with an
// Apply button that writes the policies as a migration (audited). Failed statements are
// diagnosed in the Database page's SQL console. Path: plugins/intelligence/sentient-sql/<portal>.
// A plugin page (ABI 1.5): everything it uses comes from the render context.

let h, replace, notice, busy;

const IDENTITIES = { user_a: 'User A', user_b: 'User B', anon: 'anon' };

function trialTable(trial) {
  if (!trial) return h('p', {}, 'Not tried.');
  if (!trial.tried) return h('p', { class: 'notice notice-error', role: 'alert' }, `The trial could not run: ${trial.error}`);
  return [
    h('div', { class: 'table-scroll' }, h('table', { 'data-test': 'rls-trial' },
      h('caption', {}, trial.correct ? 'Trial passed: each identity saw what it should.' : 'Trial FAILED: an identity saw the wrong rows.'),
      h('thead', {}, h('tr', {}, ['Identity', 'Rows seen', 'Whose', 'Expected', ''].map((title) => h('th', { scope: 'col' }, title)))),
      h('tbody', {}, trial.views.map((view) => h('tr', {},
        h('td', {}, IDENTITIES[view.identity] || view.identity),
        h('td', {}, String(view.rows)),
        h('td', {}, Object.entries(view.sees).map(([who, count]) => `${IDENTITIES[who] || who}: ${count}`).join(', ') || '—'),
        h('td', {}, view.expected),
        h('td', {}, view.ok ? '✓' : '✗')))))),
    trial.cross_write_refused === undefined || trial.cross_write_refused === null ? null
      : h('p', {}, trial.cross_write_refused ? 'User A was refused writing a row for user B.' : 'User A could write a row for user B!'),
  ];
}

export default {
  title: 'Sentient SQL',
  async render({ api, params, navigate, ui, plugin }) {
    ({ h, replace, notice, busy } = ui);
    const PAGE = `plugins/${plugin.name}/sentient-sql`;
    const { portals } = await api.get('/v1/hub/portals');
    const picker = ui.portalPicker({ portals, plugin: 'intelligence', page: 'sentient-sql', selected: params[0] && decodeURIComponent(params[0]),
      onChoose: (name) => navigate(`${PAGE}/${encodeURIComponent(name)}`) });
    const intro = [h('h1', { id: 'page-title' }, 'Sentient SQL'),
      h('p', {}, 'Row-level security proposals for the tables that have none, tried as two synthetic users and anon in a transaction that is always rolled back. Applying one records it as a migration. Failed statements get a diagnosis in the Database page\'s SQL console.')];
    if (!picker.chosen) return [...intro, picker.element];
    const base = `/p/${encodeURIComponent(picker.chosen)}/intelligence/v1/rls`;
    const status = notice();
    const list = h('div', { 'data-test': 'rls-proposals' }, 'Loading…');

    const load = async () => {
      let answer;
      try {
        answer = await api.get(`${base}/proposals`);
      } catch (error) {
        return replace(list, h('p', { class: 'notice notice-error', role: 'alert' }, error.message));
      }
      if (!answer.proposals.length) return replace(list, h('p', {}, `Every table in ${answer.schemas.join(', ')} has policies.`));
      replace(list, answer.proposals.map((proposal) => {
        const apply = h('button', { type: 'button', class: 'primary small', 'data-test': 'rls-apply' }, `Apply to ${proposal.id}`);
        apply.addEventListener('click', () => busy(apply, async () => {
          status.clear();
          try {
            const applied = await api.post(`${base}/apply`, { table: proposal.id });
            status.show(`Applied as migration ${applied.migration}.`, 'ok');
            await load();
          } catch (error) {
            status.show(`${proposal.id}: ${[error.message, error.hint].filter(Boolean).join(' ')}`);
          }
        }));
        return h('section', { class: 'card', 'aria-label': proposal.id },
          h('h2', {}, proposal.id, ' ', h('code', {}, proposal.kind)),
          h('p', {}, proposal.explanation),
          h('pre', {}, proposal.statements.join('\n')),
          trialTable(proposal.trial),
          proposal.trial && proposal.trial.correct ? apply : null);
      }));
    };
    const reload = h('button', { type: 'button', class: 'secondary small', onclick: () => busy(reload, load) }, 'Reload proposals');
    await load();
    return [...intro, picker.element, h('div', { class: 'actions' }, reload), status.element, list];
  },
};
