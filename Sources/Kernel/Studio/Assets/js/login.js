// Sign-in: email and password, then the TOTP (or a recovery) code when the admin has
// enrolled a second factor.

import * as api from './api.js';
import * as session from './session.js';
import * as router from './router.js';
import { h, replace, field, notice, busy } from './dom.js';

export function renderLogin(root) {
  const card = h('section', { class: 'card login', 'aria-labelledby': 'login-title' });
  replace(root, h('main', { class: 'center' },
    h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'MeltyBase Studio'),
    card));
  const pending = session.current();
  if (pending?.mfa_required) return codeStep(card);
  passwordStep(card);
}

function passwordStep(card) {
  const email = field('Email', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = field('Password', { type: 'password', name: 'password', autocomplete: 'current-password', required: true });
  const status = notice();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h('form', { novalidate: true }, email.wrapper, password.wrapper, status.element, h('div', { class: 'actions' }, submit));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      status.clear();
      try {
        const signedIn = await api.login(email.input.value, password.input.value);
        password.input.value = '';
        if (signedIn.mfa_required) return codeStep(card);
        router.navigate('overview', { replace: true });
      } catch (error) {
        status.show(error.message + (error.status === 429 && error.hint ? ` (${error.hint})` : ''));
        password.input.select();
      }
    });
  });
  replace(card, h('h1', { id: 'login-title' }, 'Sign in'), form);
  email.input.focus();
}

function codeStep(card) {
  const code = field('Authentication code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true },
    { hint: 'The 6 digits from your authenticator app, or one of your recovery codes.' });
  const status = notice();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Verify');
  const cancel = h('button', { type: 'button', class: 'secondary', onclick: () => { session.clear(); passwordStep(card); } }, 'Use another account');
  const form = h('form', { novalidate: true }, code.wrapper, status.element, h('div', { class: 'actions' }, cancel, submit));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      code.clear();
      try {
        await api.challenge(code.input.value.trim());
        router.navigate('overview', { replace: true });
      } catch (error) {
        if (error.status === 401 && error.code === 'unauthenticated') { session.clear(); return passwordStep(card); }
        code.showError(error.message);
        code.input.select();
      }
    });
  });
  replace(card, h('h1', { id: 'login-title' }, 'Two-factor authentication'), form);
  code.input.focus();
}
