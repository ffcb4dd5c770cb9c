// Step-up to AAL2: when an action answers 403 aal2_required (or mfa_required), a modal
// dialog asks for a TOTP or recovery code, and the action is repeated at AAL2.
// An admin without TOTP is sent to the Security page to enrol first.

import * as api from './api.js';
import * as router from './router.js';
import * as session from './session.js';
import { h, field, notice, busy } from './dom.js';

let open = null;

/** Resolves true once the session is at AAL2, false if the admin cancels. */
export function askForSecondFactor(error) {
  open ||= new Promise((resolve) => {
    const code = field('Authentication code', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code' },
      { hint: 'The 6 digits from your authenticator app, or a recovery code.' });
    const status = notice();
    const verify = h('button', { type: 'submit', class: 'primary' }, 'Verify');
    const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel');
    const enrol = h('a', { href: router.href('security'), 'data-route': 'security', class: 'button secondary', hidden: true }, 'Set up two-factor authentication');
    const form = h('form', { method: 'dialog', novalidate: true },
      h('h2', { id: 'stepup-title' }, 'Confirm it is you'),
      h('p', {}, 'This action changes the configuration, so it needs a second factor (AAL2).'),
      code.wrapper, status.element, h('div', { class: 'actions' }, enrol, cancel, verify));
    const dialog = h('dialog', { class: 'stepup', 'aria-labelledby': 'stepup-title' }, form);
    const finish = (result) => {
      dialog.close();
      dialog.remove();
      open = null;
      resolve(result);
    };
    cancel.addEventListener('click', () => finish(false));
    enrol.addEventListener('click', () => finish(false));
    dialog.addEventListener('cancel', (event) => { event.preventDefault(); finish(false); });
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      busy(verify, async () => {
        code.clear();
        status.clear();
        try {
          await api.challenge(code.input.value.trim());
          finish(true);
        } catch (failure) {
          if (failure.code === 'mfa_not_enrolled') return withoutTOTP();
          code.showError(failure.message);
          code.input.select();
        }
      });
    });
    const withoutTOTP = () => {
      code.wrapper.hidden = true;
      verify.hidden = true;
      status.show('Your account has no second factor yet. Set up TOTP on the Security page first, then try again.');
      enrol.hidden = false;
      enrol.focus();
    };
    document.body.appendChild(dialog);
    dialog.showModal();
    code.input.focus();
    // An admin without TOTP cannot step up: say so at once instead of asking for a code.
    api.get('/v1/admin/users', { stepUp: false }).then(({ users }) => {
      const me = users.find((u) => u.email === session.current()?.email);
      if (me && !me.mfa_enabled && dialog.open) withoutTOTP();
    }).catch(() => {});
  });
  return open;
}
