// The signed-in admin's tokens, kept in sessionStorage: they last as long as the tab and
// never reach other tabs or the disk's long-term storage. No password is ever stored.

const KEY = 'meltybase.session';

/** The current session `{access_token, refresh_token, aal, mfa_required, email}` or null. */
export function current() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY) || 'null');
  } catch {
    return null;
  }
}

/** Stores a token pair from the API (keeps the email when the pair has none). */
export function store(pair, email) {
  const previous = current() || {};
  const session = {
    access_token: pair.access_token,
    refresh_token: pair.refresh_token,
    aal: pair.aal,
    mfa_required: Boolean(pair.mfa_required),
    session_id: pair.session_id,
    email: email || previous.email || '',
  };
  sessionStorage.setItem(KEY, JSON.stringify(session));
  // The frame shows the assurance level; a step-up changes it under the current page.
  dispatchEvent(new CustomEvent('meltybase-session', { detail: session }));
  return session;
}

/** Forgets the session. */
export function clear() {
  sessionStorage.removeItem(KEY);
}

/** Whether a session exists that has passed its second factor if it needs one. */
export function isUsable() {
  const session = current();
  return Boolean(session && session.access_token && !session.mfa_required);
}
