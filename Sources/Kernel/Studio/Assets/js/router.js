// History routing under /dashboard: `navigate('portals')` shows /dashboard/portals
// without reloading; the kernel answers index.html for every such path, so reloads
// and bookmarks land on the same screen.

export const BASE = '/dashboard';
let handler = null;

/** The path below /dashboard without slashes: `setup/license`, `portals`, or ''. */
export function currentPath() {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : '';
  return path.replace(/^\/+|\/+$/g, '');
}

/** Shows `path` (below /dashboard); `replace` keeps the history entry. */
export function navigate(path, { replace = false } = {}) {
  const url = path ? `${BASE}/${path}` : BASE;
  if (url !== location.pathname) history[replace ? 'replaceState' : 'pushState']({}, '', url);
  handler?.(currentPath());
}

/** Calls `onRoute(path)` now and on every navigation; links with data-route navigate in place. */
export function start(onRoute) {
  handler = onRoute;
  addEventListener('popstate', () => handler(currentPath()));
  document.addEventListener('click', (event) => {
    const link = event.target.closest('a[data-route]');
    if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
    event.preventDefault();
    navigate(link.dataset.route);
  });
  handler(currentPath());
}

/** An in-app link. */
export function href(path) {
  return path ? `${BASE}/${path}` : BASE;
}
