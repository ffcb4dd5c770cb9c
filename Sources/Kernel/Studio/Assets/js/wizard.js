// The setup wizard: one screen per phase of the onboarding lifecycle (pulse, license,
// admin, handover). Progress is kept in sessionStorage (the license and where the user
// got to; never the password), so a reload resumes at the same step.

import * as api from './api.js';
import * as router from './router.js';
import { h, replace, field, notice, facts, when, busy } from './dom.js';

export const WIZARD_PREFIX = 'setup/';
const STEPS = [
  { id: 'pulse', title: 'System pulse' },
  { id: 'license', title: 'License handshake' },
  { id: 'admin', title: 'Admin provisioning' },
  { id: 'handover', title: 'Secure handover' },
];
const PROGRESS = 'meltybase.setup';
const HANDOVER = 'meltybase.handover';

function progress() {
  try { return JSON.parse(sessionStorage.getItem(PROGRESS) || '{}'); } catch { return {}; }
}
function saveProgress(update) {
  sessionStorage.setItem(PROGRESS, JSON.stringify({ ...progress(), ...update }));
}

/** The furthest step this tab may show. */
export function resumeStep() {
  if (sessionStorage.getItem(HANDOVER)) return 'handover';
  const saved = progress();
  if (saved.license_key && saved.license) return 'admin';
  return saved.step === 'license' ? 'license' : 'pulse';
}

let pulseTimer = null;

/** Shows step `step` (clamped to what this tab has reached) in `root`. */
export function renderWizard(root, step, { onInitialized }) {
  clearInterval(pulseTimer);
  const reachable = STEPS.findIndex((s) => s.id === resumeStep());
  let index = STEPS.findIndex((s) => s.id === step);
  if (index < 0 || index > reachable) return router.navigate(WIZARD_PREFIX + STEPS[reachable].id, { replace: true });
  const screen = { pulse: pulseScreen, license: licenseScreen, admin: adminScreen, handover: handoverScreen }[step];
  const body = h('section', { class: 'wizard-step', 'aria-labelledby': 'step-title' });
  replace(root, h('main', { class: 'wizard' },
    h('header', { class: 'wizard-header' },
      h('div', { class: 'brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'MeltyBase Studio'),
      h('p', { class: 'tagline' }, 'Setting up your private cloud')),
    h('ol', { class: 'steps', 'aria-label': 'Setup progress' }, STEPS.map((s, i) =>
      h('li', { class: i < index ? 'done' : i === index ? 'current' : '', 'aria-current': i === index ? 'step' : null },
        h('span', { class: 'step-number', 'aria-hidden': 'true' }, String(i + 1)), s.title))),
    body));
  screen(body, { onInitialized });
  body.querySelector('h1')?.focus();
}

function heading(phase, text) {
  return [h('p', { class: 'phase' }, phase), h('h1', { id: 'step-title', tabindex: '-1' }, text)];
}

function pulseScreen(body) {
  const live = h('pre', { class: 'pulse-json', 'aria-live': 'polite', 'data-test': 'pulse-json' }, '…');
  const dot = h('span', { class: 'pulse-dot', 'aria-hidden': 'true' });
  const state = h('p', { class: 'pulse-state' }, dot, ' Waiting for the kernel…');
  const next = h('button', { type: 'button', class: 'primary', disabled: true, onclick: () => {
    saveProgress({ step: 'license' });
    router.navigate(`${WIZARD_PREFIX}license`);
  } }, 'Begin the setup handshake');
  replace(body,
    heading('Phase 02', 'System pulse'),
    h('p', {}, 'The engine has booted into its pre-initialized state and is waiting for the Studio to initiate the setup handshake.'),
    h('p', { class: 'muted' }, 'GET /v1/system/status, live:'),
    live, state, h('div', { class: 'actions' }, next));
  const poll = async () => {
    try {
      const status = await api.status();
      live.textContent = JSON.stringify(status, null, 1);
      dot.className = 'pulse-dot active';
      state.replaceChildren(dot, ` Pulse ${status.pulse}, version ${status.version}, ${status.is_initialized ? 'initialized' : 'not initialized yet'}.`);
      next.disabled = false;
      if (status.is_initialized) location.assign(router.href('login'));
    } catch (error) {
      dot.className = 'pulse-dot';
      state.replaceChildren(dot, ` No answer from the kernel (${error.message}); retrying…`);
    }
  };
  poll();
  pulseTimer = setInterval(poll, 2000);
}

function licenseSummary(license) {
  return facts([
    ['Tier', license.tier.toUpperCase()],
    ['Seats', String(license.seats)],
    ['Owner', license.owner_name ? `${license.owner_name} <${license.owner}>` : license.owner],
    ['Expires', license.expires_at ? when(license.expires_at) : 'never'],
  ], { 'data-test': 'license-summary' });
}

function licenseScreen(body) {
  const saved = progress();
  const key = field('License key', { name: 'license_key', rows: 4, spellcheck: false, autocomplete: 'off', placeholder: 'MB1.…' },
    { multiline: true, hint: 'Paste the Ed25519-signed key you received (it starts with MB1.), or load the file.' });
  if (saved.license_key) key.input.value = saved.license_key;
  const file = field('License file', { type: 'file', name: 'license_file', accept: '.txt,.lic,.license,text/plain' });
  file.input.addEventListener('change', async () => {
    const chosen = file.input.files?.[0];
    if (!chosen) return;
    if (chosen.size > 8192) return file.showError('That file is larger than a license (8 KiB at most).');
    file.clear();
    key.input.value = (await chosen.text()).trim();
    key.input.focus();
  });
  const result = h('div', { class: 'license-result', 'aria-live': 'polite' });
  const status = notice();
  const verify = h('button', { type: 'submit', class: 'primary' }, 'Verify license');
  const form = h('form', { novalidate: true }, key.wrapper, file.wrapper, status.element, h('div', { class: 'actions' }, verify));
  const evaluation = h('div', { class: 'evaluation', hidden: true });

  const accepted = (licenseKey, license) => {
    saveProgress({ step: 'admin', license_key: licenseKey, license });
    key.clear();
    status.clear();
    replace(result,
      h('div', { class: 'card success', 'data-test': 'license-accepted' },
        h('h2', {}, 'License verified'),
        h('p', {}, license.evaluation ? 'Signed by this machine\'s evaluation key.' : 'The signature verifies with the configured vendor key.'),
        licenseSummary(license),
        h('div', { class: 'actions' }, h('button', { type: 'button', class: 'primary', onclick: () => router.navigate(`${WIZARD_PREFIX}admin`) }, 'Continue'))));
    result.querySelector('button').focus();
  };

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(verify, async () => {
      replace(result);
      const licenseKey = key.input.value.trim();
      if (!licenseKey) return key.showError('Paste a license key or choose a license file.');
      try {
        const answer = await api.post('/v1/system/license/verify', { license_key: licenseKey }, { auth: false });
        accepted(licenseKey, answer.license);
      } catch (error) {
        saveProgress({ license_key: null, license: null });
        if (error.status === 410) return location.assign(router.href('login'));
        key.showError(error.body?.reason ? `${error.message} (${error.body.reason})` : error.message);
        key.input.focus();
      }
    });
  });

  api.get('/v1/system/license/evaluation', { auth: false }).then((offer) => {
    if (!offer.available) return;
    const use = h('button', { type: 'button', class: 'secondary', onclick: () => busy(use, async () => {
      try {
        const issued = await api.post('/v1/system/license/evaluation', {}, { auth: false });
        key.input.value = issued.license_key;
        accepted(issued.license_key, issued.license);
      } catch (error) {
        status.show(error.message);
      }
    }) }, 'Use this machine\'s evaluation license');
    replace(evaluation,
      h('h2', {}, 'No license yet?'),
      h('p', {}, `No vendor key is configured, so this machine can sign an evaluation license: ${offer.tier} tier, ${offer.seats} seats, valid ${offer.days} days.`),
      use);
    evaluation.hidden = false;
  }).catch(() => {});

  replace(body,
    heading('Phase 03', 'License handshake'),
    h('p', {}, 'MeltyBase checks the license offline against its Ed25519 public key. The key sets your tier and admin seats.'),
    form, result, evaluation);
  if (saved.license_key && saved.license) accepted(saved.license_key, saved.license);
}

function adminScreen(body, { onInitialized }) {
  const saved = progress();
  const email = field('Admin email', { type: 'email', name: 'email', autocomplete: 'username', required: true });
  const password = field('Password', { type: 'password', name: 'password', autocomplete: 'new-password', required: true },
    { hint: 'At least 12 characters, not your email, not a common password. Hashed with Argon2id; never stored in plain text.' });
  if (saved.email) email.input.value = saved.email;
  const status = notice();
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create the admin and initialize');
  const form = h('form', { novalidate: true }, email.wrapper, password.wrapper, status.element,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'secondary', onclick: () => router.navigate(`${WIZARD_PREFIX}license`) }, 'Back'), submit));
  email.input.addEventListener('change', () => saveProgress({ email: email.input.value.trim() }));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    busy(submit, async () => {
      email.clear();
      password.clear();
      status.clear();
      const address = email.input.value.trim();
      if (!address) { email.showError('Enter the email you will sign in with.'); return email.input.focus(); }
      if (!password.input.value) { password.showError('Choose a password.'); return password.input.focus(); }
      let outcome;
      try {
        outcome = await api.post('/v1/system/setup', {
          license_key: saved.license_key, admin: { email: address, password: password.input.value },
        }, { auth: false });
      } catch (error) {
        const body = error.body || {};
        if (error.status === 410) { onInitialized(); return location.assign(router.href('login')); }
        if (error.code === 'password_policy') {
          password.showError((body.violations || []).map((v) => v.message).concat(body.violations?.length ? [] : [error.message]));
          return password.input.focus();
        }
        if (body.field === 'admin.email') { email.showError(error.message); return email.input.focus(); }
        if (body.field === 'license_key') {
          saveProgress({ license_key: null, license: null });
          status.show(`The license was refused: ${error.message}. Go back and check it.`);
          return;
        }
        return status.show(error.message);
      }
      onInitialized();
      sessionStorage.setItem(HANDOVER, JSON.stringify(outcome));
      sessionStorage.removeItem(PROGRESS);
      try {
        await api.login(address, password.input.value);
      } catch {
        // The account exists; the handover then leads to the login instead.
      }
      password.input.value = '';
      router.navigate(`${WIZARD_PREFIX}handover`, { replace: true });
    });
  });
  replace(body,
    heading('Phase 04', 'Admin provisioning'),
    h('p', {}, 'The engine creates your master administrative account in one secure transaction, together with the license and the first audit entry.'),
    saved.license ? h('div', { class: 'card' }, h('h2', {}, 'License'), licenseSummary(saved.license)) : null,
    form);
}

function handoverScreen(body) {
  let outcome = {};
  try { outcome = JSON.parse(sessionStorage.getItem(HANDOVER) || '{}'); } catch { /* shown without details */ }
  const tier = (outcome.tier || '').toUpperCase();
  const enter = h('button', { type: 'button', class: 'primary', onclick: () => {
    sessionStorage.removeItem(HANDOVER);
    router.navigate('overview');
  } }, 'Enter the dashboard');
  replace(body,
    heading('Phase 05', 'Secure handover'),
    h('p', {}, 'The system is locked: is_initialized is set and /v1/system/setup is disabled for good. The audit log has recorded the initialization.'),
    h('pre', { class: 'setup-log', 'data-test': 'setup-log' },
      'MeltyBase Initialized Successfully.\n',
      `Tier: ${tier} | Seats: ${outcome.seats} | Owner: ${outcome.owner}\n`,
      `Access granted. Entry point: ${outcome.entry_point || location.origin + router.BASE}`),
    h('div', { class: 'actions' }, enter));
}
