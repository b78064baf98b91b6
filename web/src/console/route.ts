/*
 * The console's pages live under `#/console` in the same app as the tenant dashboard, so a
 * link or a reload opens the same page after sign-in. Pure, so it is unit-tested.
 */

export type ConsoleRoute =
  | { page: 'overview' }
  | { page: 'tenants' }
  | { page: 'tenant'; tenantId: string }
  // A tenant address that cannot name a tenant: % escapes that are not UTF-8 (typed, or cut
  // short), or no UUID (tenants are addressed by id): shown as Not found, the database unasked.
  | { page: 'no-such-tenant'; segment: string }
  | { page: 'health' };

const PREFIX = '#/console';

/** The tenant's usage dashboard: the site's page with no console hash. */
export const USAGE_HREF = '#';

export const isConsoleHash = (hash: string): boolean =>
  hash === PREFIX || hash.startsWith(`${PREFIX}/`);

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The page a hash names; an unknown console path is the overview. */
export function parseConsoleRoute(hash: string): ConsoleRoute {
  const [, page, id] = hash.slice(PREFIX.length).split('/');
  if (page === 'tenants' && id) {
    let tenantId: string;
    try {
      tenantId = decodeURIComponent(id);
    } catch {
      return { page: 'no-such-tenant', segment: id };
    }
    return UUID.test(tenantId)
      ? { page: 'tenant', tenantId }
      : { page: 'no-such-tenant', segment: id };
  }
  if (page === 'tenants') return { page: 'tenants' };
  if (page === 'health') return { page: 'health' };
  return { page: 'overview' };
}

export function consoleHref(route: ConsoleRoute): string {
  switch (route.page) {
    case 'overview':
      return PREFIX;
    case 'tenants':
      return `${PREFIX}/tenants`;
    case 'tenant':
      return `${PREFIX}/tenants/${encodeURIComponent(route.tenantId)}`;
    case 'no-such-tenant':
      return `${PREFIX}/tenants/${route.segment}`;
    case 'health':
      return `${PREFIX}/health`;
  }
}
