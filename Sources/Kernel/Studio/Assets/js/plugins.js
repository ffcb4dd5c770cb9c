// Plugin pages (ABI 1.5): the list the kernel gives at /v1/hub/studio/pages, and the
// context every page's render(context) receives. A plugin page is a JS module in the
// plugin's own Studio folder, served by the kernel from this origin, whose default export is
// `{ title, render(context) }`: see docs/plugin-pages-and-commands.md. Plugin pages never
// import kernel files; everything they may use comes through the context.

import * as api from './api.js';
import * as dom from './dom.js';
import { portalPicker } from './portal-picker.js';

let cached = null;

/** The plugin pages for the signed-in admin: [{plugin, id, title, module, path, portals}].
 *  Fetched once per sign-in; `reload` asks again. An error leaves the list empty (the
 *  built-in pages still work). */
export async function pluginPages({ reload = false } = {}) {
  if (cached && !reload) return cached;
  try {
    cached = (await api.get('/v1/hub/studio/pages')).pages || [];
  } catch {
    cached = [];
  }
  return cached;
}

/** Forgets the list (sign-out). */
export function forget() { cached = null; }

/** Loads a plugin page's module and checks its shape. */
export async function loadPage(entry) {
  const module = await import(entry.module);
  const page = module.default;
  if (!page || typeof page.render !== 'function') {
    throw new Error(`plugin ${entry.plugin}: ${entry.module} has no default export { title, render(context) }`);
  }
  return { id: entry.path, title: page.title || entry.title, render: page.render.bind(page), plugin: entry };
}

/**
 * Adds the stylesheet at `href` to the document once (a plugin page's own rules:
 * `ui.stylesheet(new URL('page.css', import.meta.url).href)`). Same-origin only, as the
 * Studio's Content-Security-Policy allows; resolves when it has loaded (or failed).
 */
function stylesheet(href) {
  const url = new URL(href, location.href);
  if (url.origin !== location.origin) return Promise.reject(new Error(`stylesheet ${href}: only this origin's files are allowed`));
  const existing = [...document.querySelectorAll('link[rel="stylesheet"]')].find((link) => link.href === url.href);
  if (existing) return Promise.resolve();
  return new Promise((resolve) => {
    const link = Object.assign(document.createElement('link'), { rel: 'stylesheet', href: url.href });
    link.addEventListener('load', () => resolve(), { once: true });
    link.addEventListener('error', () => resolve(), { once: true });
    document.head.append(link);
  });
}

/** What the UI helpers give pages: the same functions the built-in pages import from dom.js,
 *  the portal picker (portal-picker.js) and `stylesheet(href)` for a page's own CSS. */
export const ui = Object.freeze({ ...dom, portalPicker, stylesheet });

/** The API a page uses (the same as built-in pages): call/get/post/del with refresh and step-up, ApiError. */
export const pageApi = Object.freeze({ ...api });
