// Security: TOTP enrolment (the QR code the kernel draws as SVG, the secret for typing in,
// the recovery codes once), and the session's assurance level.

import { h, replace, field, notice, busy } from '../dom.js';
import * as session from '../session.js';

const SVG_NS = 'http://www.w3.org/2000/svg';

// The enrolment's QR code: the kernel's SVG document parsed as XML (never as HTML, no
// innerHTML) and imported into the page; anything but a well-formed <svg> is not shown.
function qrCode(svgText) {
  if (typeof svgText === 'string' && svgText) {
    const parsed = new DOMParser().parseFromString(svgText, 'image/svg+xml');
    const root = parsed.documentElement;
    if (root.namespaceURI === SVG_NS && root.localName === 'svg' && !parsed.getElementsByTagName('parsererror').length
        && !root.querySelector('script, foreignObject')) {
      return document.importNode(root, true);
    }
  }
  return h('p', { class: 'muted' }, 'No QR code for this account; type the secret instead.');
}

export default {
  id: 'security',
  title: 'Security',
  async render({ api, refresh }) {
    const me = session.current();
    const { users } = await api.get('/v1/admin/users');
    const account = users.find((u) => u.email === me?.email);
    const area = h('div', { 'aria-live': 'polite' });
    const start = h('button', { type: 'button', class: 'primary' }, account?.mfa_enabled ? 'Replace the authenticator' : 'Set up two-factor authentication');
    const status = notice();

    start.addEventListener('click', () => busy(start, async () => {
      status.clear();
      let enrolment;
      try {
        enrolment = await api.post('/v1/admin/mfa/totp/enroll');
      } catch (error) {
        return status.show(error.message);
      }
      start.hidden = true;
      const code = field('Code from the app', { name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', required: true });
      const confirm = h('button', { type: 'submit', class: 'primary' }, 'Confirm and turn on');
      const form = h('form', { novalidate: true }, code.wrapper, h('div', { class: 'actions' }, confirm));
      form.addEventListener('submit', (event) => {
        event.preventDefault();
        busy(confirm, async () => {
          code.clear();
          try {
            const pair = await api.post('/v1/admin/mfa/totp/verify', { code: code.input.value.trim() });
            session.store(pair);
            refresh();
          } catch (error) {
            code.showError(error.message);
            code.input.select();
          }
        });
      });
      replace(area,
        h('ol', { class: 'enrol-steps' },
          h('li', {}, h('p', {}, 'Scan this code with an authenticator app:'),
            h('figure', { class: 'qr-frame', 'data-test': 'totp-qr' }, qrCode(enrolment.qr_svg))),
          h('li', {}, h('p', {}, 'Or type the secret:'), h('code', { class: 'secret', 'data-test': 'totp-secret' }, enrolment.secret.replace(/(.{4})/g, '$1 ').trim())),
          h('li', {}, h('p', {}, 'Keep these recovery codes somewhere safe. Each works once, and they are shown only now:'),
            h('ul', { class: 'recovery-codes', 'data-test': 'recovery-codes' }, enrolment.recovery_codes.map((c) => h('li', {}, h('code', {}, c))))),
          h('li', {}, h('p', {}, 'Enter the current code to confirm:'), form)));
      // Start reading at the QR code (focusing the code field would scroll it away).
      const first = area.querySelector('p');
      first.setAttribute('tabindex', '-1');
      first.focus();
    }));

    return [
      h('h1', { id: 'page-title' }, 'Security'),
      h('section', { class: 'card' },
        h('h2', {}, 'Two-factor authentication'),
        h('p', { 'data-test': 'mfa-state' }, account?.mfa_enabled
          ? 'TOTP is on. Configuration changes ask for a code (AAL2).'
          : 'TOTP is off. Turn it on to change the configuration: portals, plugins and admins need AAL2.'),
        h('p', {}, `This session: ${(me?.aal || '').toUpperCase()}.`),
        status.element, start, area),
    ];
  },
};
