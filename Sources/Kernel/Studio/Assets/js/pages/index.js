// The dashboard's built-in pages, in navigation order. A page is one module exporting
// `{id, title, render(context)}`; `render` returns the page's element(s) (it may be
// async), `id` is its path below /dashboard. Plugins bring their own pages (ABI 1.5): they
// live in the plugin's Studio folder, are listed by /v1/hub/studio/pages and appear after
// these under /dashboard/plugins/<plugin>/<id> (plugins.js, docs/studio.md).

import overview from './overview.js';
import portals from './portals.js';
import audit from './audit.js';
import admins from './admins.js';
import security from './security.js';
import usage from './usage.js';

export const pages = [overview, portals, usage, audit, admins, security];
