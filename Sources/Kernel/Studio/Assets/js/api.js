// Calls to the kernel's JSON API. Errors become ApiError with the kernel's
// {code, message, hint} and extra fields (field, violations, reason). An expired access
// token is refreshed once; a 403 aal2_required or mfa_required asks the step-up handler
// (the TOTP dialog) and repeats the call at AAL2.

import * as session from './session.js';

export class ApiError extends Error {
  constructor(status, body) {
    super(body.message || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.code = body.code || `http_${status}`;
    this.hint = body.hint || null;
  }
}

let stepUpHandler = null;
let signedOutHandler = null;

/** Sets the function that gets a second factor: `async (error) => true` when stepped up. */
export function onStepUp(handler) { stepUpHandler = handler; }
/** Sets what happens when the session is gone (back to the login). */
export function onSignedOut(handler) { signedOutHandler = handler; }

async function send(method, path, body, token, extra = {}, withHeaders = false) {
  const headers = { accept: 'application/json', ...extra };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  const text = await response.text();
  let json = {};
  try {
    json = text ? JSON.parse(text) : {};
  } catch {
    json = { code: 'not_json', message: `the kernel answered ${response.status} without JSON` };
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return withHeaders ? { body: json, headers: response.headers, status: response.status } : json;
}

let refreshing = null;

/** Trades the refresh token for a new pair (one refresh at a time). */
async function refresh() {
  const current = session.current();
  if (!current || !current.refresh_token) return false;
  refreshing ||= send('POST', '/v1/admin/token', { refresh_token: current.refresh_token })
    .then((pair) => { session.store(pair); return true; })
    .catch(() => false)
    .finally(() => { refreshing = null; });
  return refreshing;
}

/**
 * `method path` with an optional JSON body; signed in unless `{auth: false}`.
 * Resolves with the JSON answer, rejects with ApiError. `headers` adds request headers
 * (e.g. PostgREST's Prefer); `withHeaders` resolves with `{body, headers, status}`.
 */
export async function call(method, path, body, options = {}) {
  const { auth = true, stepUp = true, headers = {}, withHeaders = false } = options;
  const token = auth ? session.current()?.access_token : null;
  try {
    return await send(method, path, body, token, headers, withHeaders);
  } catch (error) {
    if (!(error instanceof ApiError) || !auth) throw error;
    // The kernel says `unauthenticated`; plugins say it their own way (a PostgREST-style
    // code, say): an expired token is refreshed once either way.
    if (error.status === 401 && !options.refreshed && (await refresh())) {
      return call(method, path, body, { ...options, refreshed: true });
    }
    if (error.status === 401) {
      session.clear();
      signedOutHandler?.(error);
      throw error;
    }
    if (error.status === 403 && stepUp && (error.code === 'aal2_required' || error.code === 'mfa_required') && stepUpHandler) {
      if (await stepUpHandler(error)) return call(method, path, body, { ...options, stepUp: false });
    }
    throw error;
  }
}

export const get = (path, options) => call('GET', path, undefined, options);
export const post = (path, body, options) => call('POST', path, body ?? {}, options);
export const del = (path, options) => call('DELETE', path, undefined, options);

/** The pulse: `{is_initialized, version, pulse}`. */
export const status = () => send('GET', '/v1/system/status');
/** Signs in; stores and returns the pair. */
export async function login(email, password) {
  const pair = await send('POST', '/v1/admin/login', { email, password });
  return session.store(pair, email.trim().toLowerCase());
}
/** Gives the TOTP (or recovery) code for the session; stores the AAL2 pair. */
export async function challenge(code) {
  const pair = await send('POST', '/v1/admin/mfa/challenge', { code }, session.current()?.access_token);
  return session.store(pair);
}
