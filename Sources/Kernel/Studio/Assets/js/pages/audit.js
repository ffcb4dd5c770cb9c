// Audit log: filters, paging by seq, and the hash chain's verification state.

import { h, replace, field, notice, busy, facts, when } from '../dom.js';

export default {
  id: 'audit',
  title: 'Audit log',
  async render({ api }) {
    const action = field('Action', { name: 'action', placeholder: 'admin.login', autocomplete: 'off' });
    const actor = field('Actor', { name: 'actor', placeholder: 'admin:you@example.com', autocomplete: 'off' });
    const since = field('Since', { name: 'since', type: 'date' });
    const until = field('Until', { name: 'until', type: 'date' });
    const limit = field('Per page', { name: 'limit', type: 'number', min: 1, max: 1000, value: '25' });
    const status = notice();
    const rows = h('tbody', {});
    const pageInfo = h('span', { class: 'muted', 'aria-live': 'polite' });
    const previous = h('button', { type: 'button', class: 'secondary small' }, 'Previous page');
    const next = h('button', { type: 'button', class: 'secondary small' }, 'Next page');
    const verification = h('div', { 'data-test': 'audit-verify' }, 'Checking…');
    const cursors = [0];

    const load = async () => {
      status.clear();
      [action, actor, since, until, limit].forEach((f) => f.clear());
      const query = new URLSearchParams();
      for (const [name, f] of [['action', action], ['actor', actor], ['since', since], ['until', until], ['limit', limit]]) {
        if (f.input.value.trim()) query.set(name, f.input.value.trim());
      }
      query.set('after', String(cursors[cursors.length - 1]));
      try {
        const page = await api.get(`/v1/audit?${query}`);
        replace(rows, page.entries.length ? page.entries.map((e) => h('tr', {},
          h('td', {}, String(e.seq)), h('td', {}, when(e.at)), h('td', {}, e.actor), h('td', {}, h('code', {}, e.action)),
          h('td', {}, e.target || ''), h('td', {}, h('code', { class: 'details' }, JSON.stringify(e.details || {}))))) :
          h('tr', {}, h('td', { colspan: 6 }, 'No entries match.')));
        next.disabled = page.next_after == null;
        next.dataset.after = page.next_after ?? '';
        previous.disabled = cursors.length === 1;
        pageInfo.textContent = page.entries.length ? `Entries ${page.entries[0].seq} to ${page.entries[page.entries.length - 1].seq}` : '';
      } catch (error) {
        const target = { action, actor, since, until, limit }[error.body?.parameter];
        if (target) target.showError(error.message); else status.show(error.message);
      }
    };
    next.addEventListener('click', () => busy(next, async () => { cursors.push(Number(next.dataset.after)); await load(); }));
    previous.addEventListener('click', () => busy(previous, async () => { if (cursors.length > 1) cursors.pop(); await load(); }));
    const apply = h('button', { type: 'submit', class: 'primary' }, 'Apply filters');
    const form = h('form', { class: 'filters', novalidate: true, 'aria-label': 'Audit filters' },
      action.wrapper, actor.wrapper, since.wrapper, until.wrapper, limit.wrapper, h('div', { class: 'actions' }, apply));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      cursors.splice(1);
      busy(apply, load);
    });

    const verify = async () => {
      try {
        const result = await api.get('/v1/audit/verify');
        replace(verification,
          h('p', { class: result.ok ? 'state-ok' : 'state-bad', 'data-test': 'audit-verify-state' },
            result.ok ? 'Chain verified: every entry links to the one before, and the signed checkpoints match.' : 'The chain does NOT verify.'),
          facts([
            ['Entries', String(result.entries)], ['Head seq', String(result.head_seq)],
            ['Checkpoints checked', String(result.checkpoints_checked)],
            ['Checkpoint key', result.trusted_key ? 'this instance\'s audit key' : 'the key stored with each checkpoint'],
            ['Problem', result.problem ? `seq ${result.problem.seq}: ${result.problem.description}` : 'none'],
          ]));
      } catch (error) {
        replace(verification, h('p', { class: 'state-bad' }, error.message));
      }
    };
    const recheck = h('button', { type: 'button', class: 'secondary small', onclick: () => busy(recheck, verify) }, 'Verify again');

    await Promise.all([load(), verify()]);
    return [
      h('h1', { id: 'page-title' }, 'Audit log'),
      h('section', { class: 'card', 'aria-labelledby': 'audit-chain' }, h('h2', { id: 'audit-chain' }, 'Chain verification'), verification, recheck),
      form, status.element,
      h('div', { class: 'table-scroll' },
        h('table', { 'data-test': 'audit-table' },
          h('thead', {}, h('tr', {}, ['Seq', 'At', 'Actor', 'Action', 'Target', 'Details'].map((t) => h('th', { scope: 'col' }, t)))),
          rows)),
      h('div', { class: 'pager' }, previous, pageInfo, next),
    ];
  },
};
