// The dashboard's pages, in navigation order. A page is one module exporting
// `{id, title, render(context)}`; `render` returns the page's element(s) (it may be
// async), `id` is its path below /dashboard. To add a page (say a plugin's), write
// pages/<name>.js and add it to this list: see docs/studio.md.

import overview from './overview.js';
import portals from './portals.js';
import audit from './audit.js';
import admins from './admins.js';
import security from './security.js';
import database from './database.js';
import vault from './vault.js';

export const pages = [overview, portals, database, vault, audit, admins, security];
