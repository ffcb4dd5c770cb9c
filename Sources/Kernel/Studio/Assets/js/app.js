// The Studio's entry point: asks the kernel's pulse whether setup is done and shows the
// setup wizard, the login, or the dashboard.

import * as api from './api.js';
import * as session from './session.js';
import * as router from './router.js';
import { renderWizard, resumeStep, WIZARD_PREFIX } from './wizard.js';
import { renderLogin } from './login.js';
import { renderShell } from './shell.js';
import * as plugins from './plugins.js';
import { askForSecondFactor } from './stepup.js';
import { h, replace } from './dom.js';

const root = document.getElementById('app');
let initialized = null;

api.onStepUp(askForSecondFactor);
api.onSignedOut(() => router.navigate('login', { replace: true }));

async function route(path) {
  if (initialized !== true) {
    try {
      initialized = (await api.status()).is_initialized;
    } catch (error) {
      replace(root, h('main', { class: 'center' }, h('h1', {}, 'MeltyBase Studio'),
        h('p', { role: 'alert' }, `The kernel did not answer: ${error.message}`)));
      return;
    }
  }
  if (!initialized) {
    // Until setup is done the wizard is the only screen.
    if (!path.startsWith(WIZARD_PREFIX)) return router.navigate(WIZARD_PREFIX + resumeStep(), { replace: true });
    return renderWizard(root, path.slice(WIZARD_PREFIX.length), {
      onInitialized() { initialized = true; },
    });
  }
  if (path === 'login') {
    // The plugin page list is asked again after the next sign-in.
    plugins.forget();
    if (session.isUsable()) return router.navigate('overview', { replace: true });
    return renderLogin(root);
  }
  // Once initialized the wizard is gone for good.
  if (path.startsWith(WIZARD_PREFIX) && path !== `${WIZARD_PREFIX}handover`) return router.navigate(session.isUsable() ? 'overview' : 'login', { replace: true });
  if (path === `${WIZARD_PREFIX}handover` && sessionStorage.getItem('meltybase.handover')) {
    return renderWizard(root, 'handover', {});
  }
  if (!session.isUsable()) return router.navigate('login', { replace: true });
  if (path === '' || path.startsWith(WIZARD_PREFIX)) return router.navigate('overview', { replace: true });
  return renderShell(root, path);
}

router.start(route);
