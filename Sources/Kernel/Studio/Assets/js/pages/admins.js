// Admins: the accounts, the seats left, and inviting an admin up to the license's cap.

import { h, field, notice, busy, when } from '../dom.js';

export default {
  id: 'admins',
  title: 'Admins',
  async render({ api, refresh }) {
    const [{ users }, license] = await Promise.all([api.get('/v1/admin/users'), api.get('/v1/system/license')]);
    const left = license.seats == null ? 0 : Math.max(0, license.seats - license.seats_used);
    const email = field('Email', { type: 'email', name: 'email', autocomplete: 'off', required: true });
    const password = field('Initial password', { type: 'password', name: 'password', autocomplete: 'new-password', required: true },
      { hint: 'At least 12 characters; share it with the new admin over a safe channel.' });
    const status = notice();
    const submit = h('button', { type: 'submit', class: 'primary', disabled: left === 0 }, 'Add admin');
    const form = h('form', { novalidate: true, 'aria-labelledby': 'admin-invite' },
      h('h2', { id: 'admin-invite' }, 'Invite an admin'),
      h('p', { 'data-test': 'seats' }, `${license.seats_used} of ${license.seats} seats used, ${left} left.`),
      left === 0 ? h('p', { class: 'notice notice-error' }, 'Every seat is taken: a license with more seats is needed to add admins.') : null,
      email.wrapper, password.wrapper, status.element, h('div', { class: 'actions' }, submit));
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(submit, async () => {
        email.clear();
        password.clear();
        status.clear();
        try {
          await api.post('/v1/admin/users', { email: email.input.value.trim(), password: password.input.value });
          password.input.value = '';
          refresh();
        } catch (error) {
          const body = error.body || {};
          if (error.code === 'password_policy') password.showError((body.violations || []).map((v) => v.message));
          else if (body.field === 'email' || error.code === 'admin_exists') email.showError(error.message);
          else status.show(error.message);
        }
      });
    });
    return [
      h('h1', { id: 'page-title' }, 'Admins'),
      h('div', { class: 'table-scroll' },
        h('table', { 'data-test': 'admins-table' },
          h('thead', {}, h('tr', {}, ['Email', 'Role', 'Two-factor', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, users.map((u) => h('tr', {},
            h('th', { scope: 'row' }, u.email), h('td', {}, u.role), h('td', {}, u.mfa_enabled ? 'TOTP' : 'none'), h('td', {}, when(u.created_at))))))),
      h('section', { class: 'card' }, form),
    ];
  },
};
