import type { Locator, Page, Route } from '@playwright/test';
import { createClient } from '@supabase/supabase-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addOperator, removeOperator } from '../../src/accounts/operators.ts';
import { parseKeyring } from '../../src/crypto/keyring.ts';
import { type DemoN8n, startDemoN8n } from '../../src/local/demo/n8n-server.ts';
import { seedDemo } from '../../src/local/demo/seed.ts';
import { type DemoSignIn, seedDemoUsers } from '../../src/local/demo/users.ts';
import { STALE_REPLY_EVENT } from '../../web/src/console/latest-reply.ts';
import type { FlowmeterDashboard } from '../../web/src/dashboard.ts';
import {
  expectNoSeriousA11yViolations,
  screenshot,
  sessionExpired,
  signIn,
  visibleText,
} from '../support/browser.ts';
import { claimSource } from '../support/leases.ts';
import { useOwnStack } from '../support/own-stack.ts';
import { uniqueId } from '../support/stack.ts';
import { ingest, type Run } from '../support/usage-data.ts';
import { expectAccessibleAndPictured, useDashboardInBrowser } from './dashboard-in-browser.ts';

/**
 * The operator console in a real browser, on the demo's data as `npm start` seeds it (its
 * plans, tenants, sources and sign-ins, made by the same functions), with usage stored
 * through the collector's ingestion. What the pages show is compared with the database,
 * read as the superuser.
 */
const BROWSER_TIMEOUT = 90_000;
/**
 * How long a page may take to show what one click asks for: a few calls to the local
 * stack, and well short of the 30 s auto-refresh, which must not be what shows it.
 */
const AT_ONCE = 5_000;
const count = (n: number) => n.toLocaleString('en-US');

/**
 * The least contrast a button's 1 px outline needs with what is behind it to be seen as
 * one: the row dividers' colour, which secondary buttons had, is 1.2:1 on the page
 * background and reads as no outline there.
 */
const VISIBLE_OUTLINE = 1.5;

/** WCAG's contrast ratio of two computed `rgb(…)` colours. */
function contrast(a: string, b: string): number {
  const luminance = (color: string) => {
    const [r, g, bl] = (color.match(/[\d.]+/g) ?? []).slice(0, 3).map((c) => {
      const s = Number(c) / 255;
      return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
    }) as [number, number, number];
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [light, dark] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (light + 0.05) / (dark + 0.05);
}

let n8n: DemoN8n;
let operator: DemoSignIn;
let tenantUser: DemoSignIn;
let demo: Array<{ id: string; ref: string; name: string }>;

// A stack of its own: the overview counts and ranks every tenant in the database, so
// the demo's numbers are the whole picture only where no other test file adds tenants.
const own = useOwnStack();
const site = useDashboardInBrowser(() => own.stack);
const superuser = () => own.pool;
const serviceClient = () => own.db;

/**
 * Runs spread evenly over this calendar month so far (the period of the demo's
 * subscriptions, and of its free tenant without one), and over as much of the previous
 * month, for the trend.
 */
async function usage(tenantId: string, current: number, previous: number): Promise<void> {
  const now = Date.now() - 60_000;
  const at = new Date(now);
  const monthStart = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1);
  const previousStart = Date.UTC(at.getUTCFullYear(), at.getUTCMonth() - 1, 1);
  const spread = (from: number, n: number): Run[] =>
    Array.from({ length: n }, (_, i) => ({
      workflow: ['wfOrders', 'wfCrmSync', 'wfSlackDigest'][i % 3] as string,
      startedAt: from + Math.floor(((i + 0.5) / n) * (now - monthStart)),
      status: i % 17 === 5 ? 'error' : 'success',
      durationMs: 800 + ((i * 37) % 4000),
    }));
  await ingest(
    tenantId,
    [...spread(monthStart, current), ...spread(previousStart, previous)],
    serviceClient(),
  );
}

beforeAll(async () => {
  n8n = await startDemoN8n(0);
  const db = serviceClient();
  const tenants = await seedDemo({
    db,
    keyring: parseKeyring(`k1:${Buffer.alloc(32, 7).toString('base64')}`),
    n8n,
  });
  const signIns = await seedDemoUsers({
    db,
    tenants,
    passwords: { tenant: 'demo tenant password', operator: 'demo operator password' },
  });
  operator = signIns.operator;
  tenantUser = signIns.tenants[0] as DemoSignIn;
  const { rows } = await superuser().query<{ id: string; ref: string; name: string }>(
    "select id, external_ref as ref, name from public.tenants where external_ref like 'demo-%' order by name",
  );
  demo = rows;
  const byRef = (ref: string) => demo.find((t) => t.ref === ref)?.id as string;
  // Acme near its hard limit of 30, Globex over its 60 with overage billed, Initech unlimited.
  await usage(byRef('demo-acme'), 25, 20);
  await usage(byRef('demo-globex'), 85, 50);
  await usage(byRef('demo-initech'), 140, 90);
  const { error } = await db.rpc('claim_meter_deltas', { tenant_ids: [byRef('demo-globex')] });
  if (error) throw new Error(`claim_meter_deltas: ${error.message}`);
}, 180_000);

afterAll(async () => {
  await n8n?.close();
});

async function openAsOperator(
  hash = '',
  account: { email: string; password: string } = operator,
): Promise<Page> {
  const page = await site.newPage();
  await page.goto(`${site.url}${hash}`);
  await signIn(page, account.email, account.password);
  await page.getByRole('navigation', { name: 'Console' }).waitFor();
  return page;
}

/**
 * An operator of the test's own, added as `flowmeter operators add` does, signed in on the
 * overview: a test that takes its mark away leaves the demo's operator as it was.
 */
async function ownOperatorOnOverview(name: string) {
  const email = `${uniqueId(name)}@example.test`;
  const password = `${name} operator password`;
  const added = await addOperator({
    db: serviceClient(),
    email,
    access: { kind: 'password', password },
  });
  if (!added.ok) throw new Error(`addOperator: ${added.error.message}`);
  const page = await openAsOperator('', { email, password });
  await page.locator('table.ranked[data-list="top-usage"]').waitFor();
  return { email, password, page };
}

/** The tenants page, searched down to the demo's tenants. */
async function openDemoTenants(): Promise<Page> {
  const page = await openAsOperator('#/console/tenants');
  await page.getByLabel('Search name or reference').fill('demo-');
  return page;
}

const rowOf = (page: Page, tenantId: string) =>
  page.locator(`table.tenants tr[data-tenant="${tenantId}"]`);

/** The demo tenants as operator_tenants computes them, read as the superuser. */
async function demoRows() {
  const { rows } = await superuser().query(
    `select tenant_id, tenant_name, plan_name, used::int, quota::int, executions::int, reserved::int, level, percent
     from private.operator_tenant_rows() where external_ref like 'demo-%' order by tenant_name`,
  );
  return rows;
}

/** A source of the tenant at an address nothing answers, named `name`. */
async function sourceNobodyAnswers(tenantId: string, name: string): Promise<{ id: string }> {
  const { data: source, error } = await serviceClient().rpc('add_n8n_source', {
    tenant_id: tenantId,
    name,
    base_url: `https://${uniqueId(name.replaceAll(' ', '-'))}.example.test`,
    api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
  });
  if (error || !source) throw new Error(`add_n8n_source: ${error?.message}`);
  return source;
}

async function latestEnabledSource(tenantId: string): Promise<{ id: string; name: string }> {
  const { rows } = await superuser().query(
    'select id, name from public.n8n_sources where tenant_id = $1 and enabled order by created_at desc limit 1',
    [tenantId],
  );
  return rows[0];
}

/** The operator's own actions on an object, as the audit table holds them. */
async function actionsOn(objectId: string) {
  const { rows } = await superuser().query(
    `select action, actor_email, tenant_id, detail from public.operator_actions
     where object_id = $1 order by id`,
    [objectId],
  );
  return rows;
}

/** The audit rows of a source the operator disabled once, for the tenant it belongs to. */
const disabledOnceBy = (tenantId: string) => [
  {
    action: 'source_disabled',
    actor_email: operator.email,
    tenant_id: tenantId,
    detail: expect.objectContaining({ was_enabled: true }),
  },
];

async function tenantNames(page: Page): Promise<string[]> {
  return page.locator('table.tenants tbody th[scope="row"]').allTextContents();
}

/** The box the tenants table scrolls in: the width of what it holds, and of what it shows. */
const tenantsTableWidths = (page: Page) =>
  page
    .locator('.table-wrap:has(> table.tenants)')
    .evaluate((wrap) => ({ scrollWidth: wrap.scrollWidth, clientWidth: wrap.clientWidth }));

/**
 * Holds the page's next call of an operator RPC whose arguments match. `release()` lets it
 * through and returns once the page has dropped the reply as stale (without that, it waits
 * until the test times out).
 */
async function holdNextCall(
  page: Page,
  rpc: 'operator_tenant' | 'operator_tenants' | 'operator_set_source_enabled',
  matches: (args: Record<string, unknown>) => boolean,
) {
  let hold: (route: Route) => void = () => {};
  const held = new Promise<Route>((resolve) => {
    hold = resolve;
  });
  let armed = true;
  await page.route(
    (url) => url.pathname.endsWith(`/rpc/${rpc}`),
    (route) => {
      if (!armed || !matches(route.request().postDataJSON() ?? {})) return route.fallback();
      armed = false;
      hold(route);
    },
  );
  return {
    held,
    async release(): Promise<void> {
      const route = await held;
      // The page announces each reply it drops; listen before the reply can arrive.
      await page.evaluate((event) => {
        const w = window as unknown as { staleReply?: Promise<void> };
        w.staleReply = new Promise((resolve) =>
          document.addEventListener(event, () => resolve(), { once: true }),
        );
      }, STALE_REPLY_EVENT);
      await route.continue();
      await page.evaluate(() => (window as unknown as { staleReply?: Promise<void> }).staleReply);
    },
  };
}

/**
 * Makes the page's calls of an operator RPC fail as when the database cannot be reached;
 * resolves with what lets them through again.
 */
async function unreachable(page: Page, rpc: string): Promise<() => Promise<void>> {
  const matches = (url: URL) => url.pathname.endsWith(`/rpc/${rpc}`);
  await page.route(matches, (route) => route.abort('connectionrefused'));
  return () => page.unroute(matches);
}

/** Moves the console to a tenant's page without a reload, as the nav's links do. */
const openTenant = (page: Page, tenant: { id: string }) =>
  page.evaluate((hash) => {
    location.hash = hash;
  }, `#/console/tenants/${tenant.id}`);

/**
 * Moves to `to` while a call made for the tenant before is held, then lets the call's reply
 * through: the page must still show `to`, its heading and its usage.
 */
async function moveWhileHeld(
  page: Page,
  call: Awaited<ReturnType<typeof holdNextCall>>,
  to: { id: string; name: string },
): Promise<void> {
  await call.held;
  await openTenant(page, to);
  await page.getByRole('heading', { name: to.name, level: 1 }).waitFor();
  await call.release();
  expect(await page.locator('console-tenant h1').textContent()).toBe(to.name);
  expect(await page.locator('flowmeter-usage [data-metric="used"]').textContent()).toBe(
    count((await demoRows()).find((r) => r.tenant_id === to.id)?.used as number),
  );
}

describe('signed in as the demo operator', { timeout: BROWSER_TIMEOUT }, () => {
  it('lands on the overview, whose counts and top tenants equal the database', async () => {
    const page = await openAsOperator();
    await page.getByRole('heading', { name: 'Overview', level: 1 }).waitFor();
    expect(new URL(page.url()).hash).toBe('#/console');
    await page.locator('table.ranked[data-list="top-usage"]').waitFor();
    const { rows: totals } = await superuser().query(
      `select count(*)::int as tenants, sum(executions)::int as executions, sum(used)::int as billable
       from private.operator_tenant_rows()`,
    );
    expect(await page.locator('[data-metric="tenants"]').first().textContent()).toBe(
      count(totals[0].tenants),
    );
    expect(totals[0].tenants).toBe(demo.length);
    expect(await page.locator('[data-metric="executions-total"]').textContent()).toBe(
      count(totals[0].executions),
    );
    expect(await page.locator('[data-metric="executions-billable"]').textContent()).toBe(
      count(totals[0].billable),
    );
    for (const plan of ['demo-free', 'demo-pro', 'demo-scale']) {
      expect(
        await page
          .locator(`table.counts tr[data-key="${plan}"] [data-metric="tenants"]`)
          .textContent(),
      ).toBe('1');
    }
    for (const row of await demoRows()) {
      const ranked = page.locator(
        `table.ranked[data-list="top-usage"] tr[data-tenant="${row.tenant_id}"]`,
      );
      expect(await ranked.locator('[data-metric="used"]').textContent()).toBe(count(row.used));
    }
    const { rows: revenue } = await superuser().query<{ amount: number; overage: number }>(
      `select coalesce(sum(recurring_amount) filter (where subscription_status in ('active', 'past_due')), 0)::int as amount,
              coalesce(sum(estimated_overage_amount), 0)::float8 as overage
       from private.operator_tenant_rows() where currency = 'usd'`,
    );
    // The seed's paying tenants: a fresh `npm start` shows revenue, not $0.
    expect(revenue[0]?.amount).toBeGreaterThan(0);
    expect(
      await page.locator('[data-currency="usd"] [data-metric="recurring"]').textContent(),
    ).toBe(`$${((revenue[0]?.amount ?? 0) / 100).toFixed(2)}`);
    expect(revenue[0]?.overage).toBeGreaterThan(0);
    expect(
      await page.locator('[data-currency="usd"] [data-metric="overage-amount"]').textContent(),
    ).toBe(`$${(Math.round(revenue[0]?.overage ?? 0) / 100).toFixed(2)}`);
    const globex = (await demoRows()).find((r) => r.plan_name === 'Pro (demo)');
    expect(globex?.level).toBe('overage');
    expect(
      await page
        .locator(`table.ranked[data-list="near-limit"] tr[data-tenant="${globex?.tenant_id}"]`)
        .count(),
    ).toBe(1);
    await expectAccessibleAndPictured(page, 'operator-overview.png');
    await page.context().close();
  });

  it('lists every demo tenant with the numbers the database holds', async () => {
    const page = await openDemoTenants();
    const expected = await demoRows();
    await expect.poll(() => tenantNames(page)).toEqual(expected.map((r) => r.tenant_name));
    for (const row of expected) {
      const tr = rowOf(page, row.tenant_id);
      expect(await tr.locator('[data-metric="used"]').textContent()).toBe(count(row.used));
      expect(await tr.locator('[data-metric="executions"]').textContent()).toBe(
        count(row.executions),
      );
      expect(await tr.locator('[data-metric="reserved"]').textContent()).toBe(count(row.reserved));
      expect(await tr.locator('[data-metric="quota"]').textContent()).toBe(
        row.quota === null ? 'Unlimited' : count(row.quota),
      );
      expect(await tr.locator('[data-level]').getAttribute('data-level')).toBe(row.level);
      expect(await tr.locator('[data-metric="plan"]').textContent()).toBe(row.plan_name);
    }
    await expectAccessibleAndPictured(page, 'operator-tenants.png');
    await page.context().close();
  });

  it('fits the tenants table in its card at 1280 px, wrapping a long name and reference', async () => {
    const ref = `${uniqueId('wide')}-${'0123456789'.repeat(5)}`;
    const { rows } = await superuser().query<{ id: string; created_at: Date }>(
      `insert into public.tenants (name, external_ref, plan_id)
       values ('Northwind Traders International Holdings, Europe, Middle East and Africa', $1, 'demo-free')
       returning id, created_at`,
      [ref],
    );
    const [wide] = rows;
    if (!wide) throw new Error('no tenant inserted');
    try {
      const page = await openDemoTenants();
      await page.setViewportSize({ width: 1280, height: 900 });
      await expect.poll(() => tenantNames(page)).toHaveLength(3);
      const demoTable = await tenantsTableWidths(page);
      expect(demoTable.scrollWidth).toBeLessThanOrEqual(demoTable.clientWidth);

      await page.getByLabel('Search name or reference').fill(ref);
      const row = rowOf(page, wide.id);
      await row.waitFor();
      const wideTable = await tenantsTableWidths(page);
      expect(wideTable.scrollWidth).toBeLessThanOrEqual(wideTable.clientWidth);
      // The day shows; the time of day is in the title.
      const created = row.locator('[data-metric="created"] time');
      const at = new Date(wide.created_at);
      expect(await created.textContent()).toBe(
        at.toLocaleDateString('en-US', { dateStyle: 'medium', timeZone: 'UTC' }),
      );
      expect(await created.getAttribute('title')).toBe(
        at.toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short', timeZone: 'UTC' }),
      );
      await expectAccessibleAndPictured(page, 'operator-tenants-wide.png');
      await page.context().close();
    } finally {
      await superuser().query('delete from public.tenants where id = $1', [wide.id]);
    }
  });

  it('sorts on a column both ways, and filters by plan and by level', async () => {
    const page = await openDemoTenants();
    const rows = await demoRows();
    await expect.poll(() => tenantNames(page)).toHaveLength(3);
    const byUsed = [...rows].sort((a, b) => b.used - a.used).map((r) => r.tenant_name);
    const used = page.locator('th[data-column="used"]');
    await used.getByRole('button').click();
    await expect.poll(() => tenantNames(page)).toEqual(byUsed);
    expect(await used.getAttribute('aria-sort')).toBe('descending');
    expect(await page.locator('th[data-column="name"]').getAttribute('aria-sort')).toBe('none');
    await used.getByRole('button').click();
    await expect.poll(() => tenantNames(page)).toEqual([...byUsed].reverse());
    expect(await used.getAttribute('aria-sort')).toBe('ascending');

    await page.getByLabel('Plan').selectOption({ label: 'Pro (demo)' });
    await expect.poll(() => tenantNames(page)).toEqual(['Globex (pro plan)']);
    await page.getByLabel('Plan').selectOption({ label: 'All plans' });
    await page.getByLabel('Level').selectOption('overage');
    await expect
      .poll(() => tenantNames(page))
      .toEqual(rows.filter((r) => r.level === 'overage').map((r) => r.tenant_name));
    await page.context().close();
  });

  it('pages through the server with next and previous', async () => {
    // More tenants than one page holds, on a plan of their own (made after the overview's
    // screenshot, which shows the demo alone).
    const pagingPlan = uniqueId('paging');
    await serviceClient().rpc('set_plan', {
      id: pagingPlan,
      name: 'Paging',
      included_executions: 100,
    });
    await superuser().query(
      `insert into public.tenants (name, external_ref, plan_id)
       select 'Paging tenant ' || lpad(i::text, 2, '0'), 'paging-' || i, $1 from generate_series(1, 30) i`,
      [pagingPlan],
    );
    const page = await openAsOperator('#/console/tenants');
    await page.getByLabel('Search name or reference').fill('paging-');
    await expect.poll(async () => (await tenantNames(page))[0]).toBe('Paging tenant 01');
    const first = await tenantNames(page);
    expect(first).toHaveLength(25);
    expect(await page.locator('table.tenants caption').textContent()).toContain('1–25 of 30');
    await page.getByRole('button', { name: 'Next' }).click();
    await expect.poll(() => tenantNames(page)).toHaveLength(5);
    expect((await tenantNames(page))[4]).toBe('Paging tenant 30');
    expect(await page.getByRole('button', { name: 'Next' }).isDisabled()).toBe(true);
    await page.getByRole('button', { name: 'Previous' }).click();
    await expect.poll(() => tenantNames(page)).toEqual(first);
    await page.context().close();
  });

  it('shows the latest search when the reply to an earlier query comes late', async () => {
    const globex = demo.find((t) => t.ref === 'demo-globex') as { name: string };
    const page = await site.newPage();
    const unfiltered = await holdNextCall(page, 'operator_tenants', (args) => !args.search);
    await page.goto(`${site.url}#/console/tenants`);
    await signIn(page, operator.email, operator.password);
    await unfiltered.held;
    await page.getByLabel('Search name or reference').fill('demo-globex');
    await expect.poll(() => tenantNames(page)).toEqual([globex.name]);
    await unfiltered.release();
    expect(await tenantNames(page)).toEqual([globex.name]);
    await page.context().close();
  });

  it('drills down into a tenant: its dashboard, sources and Stripe ledger', async () => {
    const globex = demo.find((t) => t.ref === 'demo-globex') as { id: string; name: string };
    const page = await openAsOperator(`#/console/tenants/${globex.id}`);
    await page.getByRole('heading', { name: globex.name, level: 1 }).waitFor();
    const [row] = (await demoRows()).filter((r) => r.tenant_id === globex.id);
    const widget = page.locator('flowmeter-usage');
    await widget.locator('[data-metric="used"]').waitFor();
    expect(await widget.locator('[data-metric="used"]').textContent()).toBe(count(row.used));
    expect(await widget.locator('[data-metric="level"]').getAttribute('data-level')).toBe(
      'overage',
    );

    const { rows: sources } = await superuser().query(
      'select id, name, enabled from public.n8n_sources where tenant_id = $1 order by name, id',
      [globex.id],
    );
    expect(await page.locator('table.sources tbody tr').count()).toBe(sources.length);
    for (const s of sources) {
      expect(await page.locator(`table.sources tr[data-source="${s.id}"]`).count()).toBe(1);
    }
    const { rows: reports } = await superuser().query(
      'select id, status, value::int from public.meter_reports where tenant_id = $1 order by id desc',
      [globex.id],
    );
    expect(reports.length).toBeGreaterThan(0);
    for (const r of reports) {
      const tr = page.locator(`table.ledger tr[data-report="${r.id}"]`);
      expect(await tr.getAttribute('data-status')).toBe(r.status);
      expect(await tr.locator('[data-field="value"]').textContent()).toBe(count(r.value));
    }
    const pending = reports.filter((r) => r.status === 'pending').length;
    expect(await page.locator('[data-count="pending"] .chip-n').textContent()).toBe(count(pending));
    await expectAccessibleAndPictured(page, 'operator-tenant.png');
    await page.context().close();
  });

  it('shows a tenant’s corrections, and the corrected executions in its billing periods', async () => {
    const globex = demo.find((t) => t.ref === 'demo-globex') as { id: string; name: string };
    // A correction as `flowmeter adjust` leaves one that became a credit.
    const { rows } = await superuser().query<{ id: string; period_start: Date }>(
      `insert into public.meter_corrections (tenant_id, period_start, period_end, stripe_customer_id, event_name,
         kind, delta, reason, requested_by, request_key, identifier, method, credit_amount, currency, status,
         stripe_object_id, sent_at)
       select c.tenant_id, c.period_start, c.period_end, 'cus_demo', 'n8n_executions', 'adjustment', -12,
              'test workflow runs billed by mistake', 'flowmeter adjust (ops)', 'browser:' || gen_random_uuid(),
              'flowmeter:correction:' || md5(random()::text), 'credit', 240, 'usd', 'sent', 'cbtxn_demo', now()
       from public.usage_counters c where c.tenant_id = $1 order by c.period_start desc limit 1
       returning id, period_start`,
      [globex.id],
    );
    const [correction] = rows;
    if (!correction) throw new Error('globex has no billing period');
    const page = await openAsOperator(`#/console/tenants/${globex.id}`);
    await page.getByRole('heading', { name: 'Corrections', level: 2 }).waitFor();
    const tr = page.locator(`table.corrections tr[data-correction="${correction.id}"]`);
    expect(await tr.locator('[data-metric="delta"]').textContent()).toBe('-12');
    expect(await tr.locator('[data-metric="sent-as"]').textContent()).toBe('credit of $2.40');
    expect(await tr.locator('[data-metric="status"]').textContent()).toBe('sent');
    expect(await tr.textContent()).toContain('test workflow runs billed by mistake');
    const corrected = await page
      .locator('table.history tbody tr [data-metric="corrected"]')
      .allTextContents();
    expect(corrected).toContain('-12');
    await expectNoSeriousA11yViolations(page);
    await tr.scrollIntoViewIfNeeded();
    await screenshot(page, 'operator-corrections.png');
    await page.context().close();
    await superuser().query('delete from public.meter_corrections where id = $1', [correction.id]);
  });

  it('reloads a tenant when the tab becomes visible again and every 30 seconds, saying when', async () => {
    const initech = demo.find((t) => t.ref === 'demo-initech') as { id: string; name: string };
    const used = async () =>
      count((await demoRows()).find((r) => r.tenant_id === initech.id)?.used as number);
    const page = await site.newPage();
    await page.clock.install();
    await page.goto(`${site.url}#/console/tenants/${initech.id}`);
    await signIn(page, operator.email, operator.password);
    const shown = page.locator('flowmeter-usage [data-metric="used"]');
    await shown.waitFor();
    await page.locator('.refreshed time').waitFor();
    await expect.poll(() => shown.textContent()).toBe(await used());
    const firstRefresh = await page.locator('.refreshed time').getAttribute('datetime');

    const run = (startedAt: number): Run => ({
      workflow: 'wfOrders',
      startedAt,
      status: 'success',
      durationMs: 1000,
    });
    const before = await used();
    await ingest(initech.id, [run(Date.now() - 5000)], serviceClient());
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await expect.poll(() => shown.textContent()).not.toBe(before);
    expect(await shown.textContent()).toBe(await used());

    const afterVisible = await used();
    await ingest(initech.id, [run(Date.now() - 4000)], serviceClient());
    await page.clock.runFor(30_000);
    await expect.poll(() => shown.textContent()).not.toBe(afterVisible);
    expect(await shown.textContent()).toBe(await used());
    expect(await page.locator('.refreshed time').getAttribute('datetime')).not.toBe(firstRefresh);
    await page.context().close();
  });

  it('stays on the tenant moved to when the previous tenant’s reply comes late, loaded or reloaded', async () => {
    const [acme, globex] = ['demo-acme', 'demo-globex'].map(
      (ref) => demo.find((t) => t.ref === ref) as { id: string; name: string },
    ) as [{ id: string; name: string }, { id: string; name: string }];
    const page = await site.newPage();
    await page.clock.install();

    const firstLoad = await holdNextCall(
      page,
      'operator_tenant',
      (args) => args.tenant_id === acme.id,
    );
    await page.goto(`${site.url}#/console/tenants/${acme.id}`);
    await signIn(page, operator.email, operator.password);
    await moveWhileHeld(page, firstLoad, globex);

    await openTenant(page, acme);
    await page.getByRole('heading', { name: acme.name, level: 1 }).waitFor();
    const reload = await holdNextCall(
      page,
      'operator_tenant',
      (args) => args.tenant_id === acme.id,
    );
    await page.clock.runFor(30_000);
    await moveWhileHeld(page, reload, globex);
    await page.context().close();
  });

  it('shows Not found inside the console for a tenant address whose % escape is malformed, opened or moved to', async () => {
    const acme = demo.find((t) => t.ref === 'demo-acme') as { id: string; name: string };
    const malformed = '#/console/tenants/%E0%A4%A';
    const page = await site.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(`${site.url}${malformed}`);
    await signIn(page, operator.email, operator.password);
    const notFound = page.getByRole('alert').filter({ hasText: 'Not found' });
    await notFound.waitFor();
    expect(await notFound.textContent()).toBe('Not found: no tenant has the id %E0%A4%A.');
    expect(await page.getByRole('navigation', { name: 'Console' }).count()).toBe(1);
    expect(
      await page
        .getByRole('link', { name: 'Tenants', exact: true })
        .first()
        .getAttribute('aria-current'),
    ).toBe('page');
    expect(await page.getByRole('button', { name: 'Sign out' }).count()).toBe(1);
    await expectAccessibleAndPictured(page, 'operator-tenant-malformed-address.png');

    // From a tenant's page, without a reload: the tenant's page gives way to Not found.
    await openTenant(page, acme);
    await page.getByRole('heading', { name: acme.name, level: 1 }).waitFor();
    await page.evaluate((hash) => {
      location.hash = hash;
    }, malformed);
    await notFound.waitFor({ timeout: AT_ONCE });
    expect(await page.getByRole('heading', { name: acme.name, level: 1 }).count()).toBe(0);
    expect(errors).toEqual([]);
    await page.context().close();
  });

  it('shows a failing source the test makes on the health page, and refreshes it', async () => {
    const acme = demo.find((t) => t.ref === 'demo-acme') as { id: string; name: string };
    const source = await sourceNobodyAnswers(acme.id, 'broken');
    const page = await openAsOperator('#/console/health');
    await page.getByText('Refreshed').waitFor();
    const firstRefresh = await page.locator('.refreshed time').getAttribute('datetime');

    // A collector run that fails on it, through the collector's own lease functions.
    const claimed = await claimSource(source.id, {}, serviceClient());
    await serviceClient().rpc('release_collector_sources', {
      source_ids: [source.id],
      lease_tokens: [claimed.lease_token],
      errors: ['n8n answered 401 Unauthorized'],
    });
    await page.getByRole('button', { name: 'Refresh now' }).click();
    const failing = page.locator(`table.worst-sources tr[data-source="${source.id}"]`);
    await expect.poll(() => failing.textContent()).toContain('n8n answered 401 Unauthorized');
    expect(await failing.textContent()).toContain('Failing');
    await expect
      .poll(() => page.locator('ul.findings').textContent())
      .toMatch(/source(s)? failing/);
    expect(await page.locator('ul.findings').textContent()).toContain('What to do');
    expect(await page.locator('.refreshed time').getAttribute('datetime')).not.toBe(firstRefresh);
    const toAcme = `a[href="#/console/tenants/${acme.id}"]`;
    expect(await failing.locator(toAcme).count()).toBe(1);
    const findingLink = page.locator(`ul.findings ${toAcme}`);
    expect(await findingLink.textContent()).toBe(acme.name);
    await expectAccessibleAndPictured(page, 'operator-health.png');
    await findingLink.click();
    await page.getByRole('heading', { name: acme.name, level: 1 }).waitFor();
    await page.context().close();
  });

  it('says the health findings are not current while a reload fails, until one succeeds', async () => {
    const page = await site.newPage();
    await page.clock.install();
    await page.goto(`${site.url}#/console/health`);
    await signIn(page, operator.email, operator.password);
    await page.getByRole('heading', { name: /Needs attention/ }).waitFor();
    await page.locator('.refreshed time').waitFor();
    const refreshedAt = await page.locator('.refreshed time').getAttribute('datetime');
    const findings = await page.locator('section[aria-labelledby="findings"]').textContent();

    const restore = await unreachable(page, 'operator_health');
    await page.getByRole('button', { name: 'Refresh now' }).click();
    const stale = page.getByRole('alert').filter({ hasText: 'Not refreshed' });
    await stale.waitFor({ timeout: AT_ONCE });
    expect(await stale.textContent()).toMatch(
      /^Not refreshed: The database cannot be reached\..* These figures are from\s+\S.*\.$/s,
    );
    expect(await stale.locator('time').getAttribute('datetime')).toBe(refreshedAt);
    // The findings stay, under the warning, rather than blanking out.
    expect(await page.locator('section[aria-labelledby="findings"]').textContent()).toBe(findings);
    await expectAccessibleAndPictured(page, 'operator-health-not-refreshed.png');

    // The 30 s reload fails the same way, and the next one that succeeds ends the warning.
    await page.clock.runFor(30_000);
    await expect.poll(() => stale.count()).toBe(1);
    await restore();
    await page.clock.runFor(30_000);
    await expect.poll(() => stale.count()).toBe(0);
    expect(await page.locator('.refreshed time').getAttribute('datetime')).not.toBe(refreshedAt);
    await page.context().close();
  });

  it('outlines Refresh now as the topbar’s Sign out, visibly on the page background', async () => {
    const page = await openAsOperator('#/console/health');
    const outline = (name: string) =>
      page.getByRole('button', { name }).evaluate((button) => {
        const style = getComputedStyle(button);
        let behind = 'rgb(255, 255, 255)';
        for (let e = button.parentElement; e; e = e.parentElement) {
          const color = getComputedStyle(e).backgroundColor;
          if (color !== 'rgba(0, 0, 0, 0)') {
            behind = color;
            break;
          }
        }
        return {
          look: {
            border: `${style.borderTopWidth} ${style.borderTopStyle} ${style.borderTopColor}`,
            background: style.backgroundColor,
            font: `${style.fontSize} ${style.fontWeight}`,
            padding: style.padding,
          },
          borderColor: style.borderTopColor,
          behind,
        };
      });
    const refresh = await outline('Refresh now');
    const signOut = await outline('Sign out');
    expect(refresh.look).toEqual(signOut.look);
    expect(refresh.behind).not.toBe(signOut.behind);
    for (const button of [refresh, signOut]) {
      expect(contrast(button.borderColor, button.behind)).toBeGreaterThanOrEqual(VISIBLE_OUTLINE);
    }
    await page.context().close();
  });

  /**
   * The health page's findings, with one scheduled run recorded that `minutesAgo` ago and
   * ended ok with `summary`; the run is removed afterwards (other tests read the same stack).
   */
  async function healthWithRun(
    run: { name: string; minutesAgo: number; summary?: unknown },
    check: (page: Page, findings: Locator) => Promise<void>,
  ) {
    const { rows } = await superuser().query<{ id: string }>(
      `insert into public.scheduled_runs (function_name, started_at, finished_at, ok, summary)
       values ($1, now() - make_interval(mins => $2), now() - make_interval(mins => $2) + interval '2 seconds', true, $3)
       returning id`,
      [run.name, run.minutesAgo, run.summary ?? null],
    );
    try {
      const page = await openAsOperator('#/console/health');
      await check(page, page.locator('ul.findings'));
      await page.context().close();
    } finally {
      await superuser().query('delete from public.scheduled_runs where id = $1', [rows[0]?.id]);
    }
  }

  it('names a scheduled function that stopped running on the health page, with what to do', async () => {
    await healthWithRun({ name: 'report-usage', minutesAgo: 180 }, async (page, findings) => {
      await expect
        .poll(() => findings.textContent())
        .toContain('report-usage has not run for 3 hours');
      expect(await findings.textContent()).toContain('flowmeter report');
      // The table marks it by the same rule, and lists the functions that never ran.
      const row = (name: string) =>
        page.locator(`table.scheduled-functions tr[data-function="${name}"]`);
      expect(await row('report-usage').textContent()).toMatch(/hourly.*Overdue.*ok/s);
      expect(await row('deliver-alerts').textContent()).toMatch(/every 5 minutes\s*never run/);
      expect(await page.locator('table.scheduled-functions tbody tr').count()).toBe(5);
      await expectAccessibleAndPictured(page, 'operator-health-overdue.png');
    });
  });

  it('names the comparisons the latest reconciliation could not make on the health page, with what to do', async () => {
    const summary = {
      counterFindings: 0,
      stripeChecked: 3,
      stripeDeferred: 0,
      stripeResumeFrom: null,
      stripeFailed: 2,
      stripeError: "cus_gone on mtr_demo: No such customer: 'cus_gone'",
      stripeFindings: 0,
      previewChecked: 0,
      previewFindings: 0,
      previewSkipped: 0,
      previewFailed: 0,
      previewError: null,
    };
    await healthWithRun(
      { name: 'reconcile-usage', minutesAgo: 1, summary },
      async (page, findings) => {
        await expect
          .poll(() => findings.textContent())
          .toContain("reconcile-usage could not compare 2 customer-periods with Stripe's meter");
        expect(await findings.textContent()).toContain("No such customer: 'cus_gone'");
        await expectAccessibleAndPictured(page, 'operator-health-reconcile.png');
      },
    );
  });

  it('names a Stripe customer who subscribed to a plan with no tenant on the health page, with what to do', async () => {
    const [price, customer, subscription, event] = ['price', 'cus', 'sub', 'evt'].map(
      (prefix) => `${prefix}_${uniqueId('console').replaceAll('-', '')}`,
    );
    await superuser().query(
      `insert into public.plan_prices (stripe_price_id, plan_id)
       select $1, plan_id from public.tenants where external_ref = 'demo-globex'`,
      [price],
    );
    try {
      await superuser().query(
        `select public.apply_stripe_subscription_event(
           event_id => $1, event_type => 'customer.subscription.created', event_created => now(),
           subscription_id => $2, subscription_created => now(), customer_id => $3,
           status => 'active', price_ids => array[$4], period_start => now(),
           period_end => now() + interval '30 days')`,
        [event, subscription, customer, price],
      );
      const page = await openAsOperator('#/console/health');
      const findings = page.locator('ul.findings');
      await expect
        .poll(() => findings.textContent())
        .toContain(`Stripe customer ${customer} subscribed to a plan`);
      expect(await findings.textContent()).toContain(
        `flowmeter tenants link <tenant> --stripe-customer ${customer}`,
      );
      await expectAccessibleAndPictured(page, 'operator-health-customer-without-tenant.png');
      await page.context().close();
    } finally {
      await superuser().query('delete from public.stripe_events where id = $1', [event]);
      await superuser().query('delete from public.plan_prices where stripe_price_id = $1', [price]);
    }
  });

  it('disables a source after confirmation: the database changes and the action is recorded', async () => {
    const initech = demo.find((t) => t.ref === 'demo-initech') as { id: string };
    const source = await latestEnabledSource(initech.id);
    const page = await openAsOperator(`#/console/tenants/${initech.id}`);
    const row = page.locator(`table.sources tr[data-source="${source.id}"]`);
    await row.getByRole('button', { name: 'Disable' }).click();
    const dialog = page.getByRole('dialog');
    await dialog.waitFor();
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Cancel');
    await expectAccessibleAndPictured(page, 'operator-confirm.png');
    await dialog.getByRole('button', { name: 'Cancel' }).click();
    const kept = await superuser().query('select enabled from public.n8n_sources where id = $1', [
      source.id,
    ]);
    expect(kept.rows[0].enabled).toBe(true);

    await row.getByRole('button', { name: 'Disable' }).click();
    await dialog.getByRole('button', { name: 'Disable source' }).click();
    await page.getByRole('status').filter({ hasText: 'is disabled' }).waitFor();
    await row.locator('[data-metric="enabled"]').filter({ hasText: 'Disabled' }).waitFor();
    const after = await superuser().query('select enabled from public.n8n_sources where id = $1', [
      source.id,
    ]);
    expect(after.rows[0].enabled).toBe(false);
    expect(await actionsOn(source.id)).toEqual(disabledOnceBy(initech.id));
    await page.context().close();
  });

  it('acknowledges a source’s one gap after confirmation, in words for one gap', async () => {
    const acme = demo.find((t) => t.ref === 'demo-acme') as { id: string };
    const source = await sourceNobodyAnswers(acme.id, 'one gap');
    try {
      await superuser().query(
        `insert into public.collection_gaps (source_id, tenant_id, kind, from_id, to_id)
         values ($1, $2, 'missing', 7, 7)`,
        [source.id, acme.id],
      );
      const page = await openAsOperator(`#/console/tenants/${acme.id}`);
      const row = page.locator(`table.sources tr[data-source="${source.id}"]`);
      await row.getByRole('button', { name: 'Acknowledge gaps' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.waitFor();
      expect(await dialog.locator('h2').textContent()).toBe('Acknowledge the gap of one gap?');
      expect(await dialog.locator('p').textContent()).toBe(
        '1 gap is marked as seen: it stays listed, and no longer counts as needing attention.',
      );
      await dialog.getByRole('button', { name: 'Acknowledge gaps' }).click();
      await page.getByRole('status').filter({ hasText: '1 gap acknowledged.' }).waitFor();
      await page.context().close();
    } finally {
      await superuser().query('delete from public.n8n_sources where id = $1', [source.id]);
    }
  });

  it('says an action is done but the tenant shown is from before it when the reload after it fails', async () => {
    const acme = demo.find((t) => t.ref === 'demo-acme') as { id: string };
    const source = await sourceNobodyAnswers(acme.id, 'reload fails');
    try {
      const page = await openAsOperator(`#/console/tenants/${acme.id}`);
      const row = page.locator(`table.sources tr[data-source="${source.id}"]`);
      const state = row.locator('[data-metric="enabled"]');
      await state.filter({ hasText: 'Enabled' }).waitFor();
      const restore = await unreachable(page, 'operator_tenant');
      await row.getByRole('button', { name: 'Disable' }).click();
      await page.getByRole('dialog').getByRole('button', { name: 'Disable source' }).click();
      const stale = page.getByRole('alert').filter({ hasText: 'Not refreshed' });
      await stale.waitFor({ timeout: AT_ONCE });
      expect(await stale.textContent()).toContain('The database cannot be reached.');
      const outcome = page.getByRole('status').filter({ hasText: 'is disabled' });
      expect(await outcome.textContent()).toBe(
        'reload fails is disabled. The page could not reload since: below is the tenant as it was before.',
      );
      expect(await state.textContent()).toBe('Enabled');
      const { rows } = await superuser().query(
        'select enabled from public.n8n_sources where id = $1',
        [source.id],
      );
      expect(rows[0]?.enabled).toBe(false);
      expect(await actionsOn(source.id)).toEqual(disabledOnceBy(acme.id));
      await expectAccessibleAndPictured(page, 'operator-action-not-reloaded.png');

      // The next reload that succeeds shows the result, and the page stops saying it is old.
      await restore();
      await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
      await state.filter({ hasText: 'Disabled' }).waitFor({ timeout: AT_ONCE });
      expect(await stale.count()).toBe(0);
      expect(await outcome.textContent()).toBe('reload fails is disabled.');
      await page.context().close();
    } finally {
      await superuser().query('delete from public.n8n_sources where id = $1', [source.id]);
    }
  });

  it('says what an action did only on its tenant’s page, when the operator moved on before it finished', async () => {
    const [globex, acme] = ['demo-globex', 'demo-acme'].map(
      (ref) => demo.find((t) => t.ref === ref) as { id: string; name: string },
    ) as [{ id: string; name: string }, { id: string; name: string }];
    const source = await latestEnabledSource(globex.id);
    const page = await openAsOperator(`#/console/tenants/${globex.id}`);
    const disabling = await holdNextCall(
      page,
      'operator_set_source_enabled',
      (args) => args.source_id === source.id,
    );
    await page
      .locator(`table.sources tr[data-source="${source.id}"]`)
      .getByRole('button', { name: 'Disable' })
      .click();
    await page.getByRole('dialog').getByRole('button', { name: 'Disable source' }).click();
    await moveWhileHeld(page, disabling, acme);
    expect(await page.locator('console-tenant .banner').count()).toBe(0);
    expect(await actionsOn(source.id)).toEqual(disabledOnceBy(globex.id));
    await page.context().close();
  });
});

describe('when the operator’s session ends', { timeout: BROWSER_TIMEOUT }, () => {
  it('returns to the sign-in form and says why', async () => {
    const page = await site.newPage();
    await page.route('**/rest/v1/rpc/operator_overview**', sessionExpired);
    await page.goto(site.url);
    await signIn(page, operator.email, operator.password);
    await page.locator('form.sign-in').waitFor();
    expect(await page.locator('form.sign-in [role="alert"]').textContent()).toContain(
      'Your session has ended',
    );
    expect(await page.getByRole('navigation', { name: 'Console' }).count()).toBe(0);
    await page.context().close();
  });
});

describe('when the operator mark is taken away', { timeout: BROWSER_TIMEOUT }, () => {
  it('removes every figure of the console at its next reload, and says who gives the access back', async () => {
    // An operator of this test's own: the demo's signs in again below.
    const { email, password, page } = await ownOperatorOnOverview('revoked');
    const globex = demo.find((t) => t.ref === 'demo-globex') as { id: string; name: string };
    await openTenant(page, globex);
    await page.locator('table.sources').waitFor();
    await page.locator('flowmeter-usage [data-metric="used"]').waitFor();

    // As `flowmeter operators remove` does. The page's token keeps the mark until it is
    // refreshed; the console's calls go out with a token of the account issued since, as
    // when another tab refreshed it, so the real database refuses them.
    const removed = await removeOperator({ db: serviceClient(), email });
    expect(removed.ok).toBe(true);
    const unmarked = await accessToken(email, password);
    await page.route('**/rest/v1/rpc/operator_*', (route) =>
      route.continue({
        headers: { ...route.request().headers(), authorization: `Bearer ${unmarked}` },
      }),
    );
    const refused = page.waitForResponse(
      (r) => r.url().endsWith('/rpc/operator_tenant') && r.status() === 403,
    );
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await refused;

    const heading = page.getByRole('heading', { name: 'Operator access ended', level: 1 });
    await heading.waitFor({ timeout: AT_ONCE });
    expect(
      await page
        .locator('flowmeter-console, console-tenant, flowmeter-usage, table, .banner')
        .count(),
    ).toBe(0);
    expect(await visibleText(page)).not.toContain(globex.name);
    expect(await page.getByRole('alert').textContent()).toContain(
      `${email} is no longer an operator`,
    );
    expect(await page.locator('.not-operator code').textContent()).toBe(
      `flowmeter operators add --email ${email}`,
    );
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(
      'Operator access ended',
    );
    await expectAccessibleAndPictured(page, 'operator-access-ended.png');

    // Off the console the account is anyone's: its own usage loads (it has no tenant), and
    // back on the console's address nothing of the console returns.
    await page.getByRole('link', { name: 'Go to your usage' }).click();
    await page.getByRole('heading', { name: 'No tenant yet' }).waitFor({ timeout: AT_ONCE });
    await page.goBack();
    await heading.waitFor();
    expect(await page.locator('flowmeter-console').count()).toBe(0);

    // Signing out is the way to another account, which gets the console again.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.unrouteAll();
    await signIn(page, operator.email, operator.password);
    await page.getByRole('heading', { name: globex.name, level: 1 }).waitFor();
    expect(await heading.count()).toBe(0);
    await page.context().close();
  });

  it('removes the console when a refreshed token no longer carries the mark, on the overview, which never reloads', async () => {
    const { email, page } = await ownOperatorOnOverview('unmarked');

    const removed = await removeOperator({ db: serviceClient(), email });
    expect(removed.ok).toBe(true);
    // What supabase-js does on its own before the token expires.
    await page.evaluate(async () => {
      const dashboard = document.querySelector<FlowmeterDashboard>('flowmeter-dashboard');
      const refreshed = await dashboard?.client?.auth.refreshSession();
      if (refreshed?.error) throw refreshed.error;
    });

    await page
      .getByRole('heading', { name: 'Operator access ended', level: 1 })
      .waitFor({ timeout: AT_ONCE });
    expect(await page.locator('flowmeter-console, console-overview, table').count()).toBe(0);
    expect(await page.getByRole('alert').textContent()).toContain(
      `${email} is no longer an operator`,
    );
    await page.context().close();
  });
});

/** A fresh access token of the account, as GoTrue issues it now (without a removed mark). */
async function accessToken(email: string, password: string): Promise<string> {
  const client = createClient(own.stack.supabaseUrl, own.stack.anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
  const { data, error } = await client.auth.signInWithPassword({ email, password });
  if (error || !data.session) throw error ?? new Error('no session');
  return data.session.access_token;
}

describe('signed in as a tenant user', { timeout: BROWSER_TIMEOUT }, () => {
  it('is told the console is for operators, nothing is loaded behind it, and its usage is one click away', async () => {
    const page = await site.newPage();
    const calls: string[] = [];
    page.on('request', (r) => {
      const rpc = /\/rest\/v1\/rpc\/(\w+)/.exec(r.url())?.[1];
      if (rpc) calls.push(rpc);
    });
    await page.goto(`${site.url}#/console`);
    await signIn(page, tenantUser.email, tenantUser.password);
    await page.getByRole('heading', { name: 'Operators only' }).waitFor();
    expect(await page.getByRole('navigation', { name: 'Console' }).count()).toBe(0);
    expect(await page.locator('table.tenants, table.ranked').count()).toBe(0);
    await expectAccessibleAndPictured(page, 'operator-not-operator.png');
    // Neither operator data nor the user's own usage, which this page does not show.
    expect(calls).toEqual([]);
    await page.getByRole('link', { name: 'Go to your usage' }).click();
    await page.locator('flowmeter-usage [data-metric="used"]').waitFor({ timeout: AT_ONCE });
    expect(new URL(page.url()).hash).toBe('');
    expect(await page.getByRole('heading', { name: 'Usage', level: 1 }).count()).toBe(1);
    // Focus lands on the page the link led to, not on the page's body.
    expect(await page.evaluate(() => document.activeElement?.textContent?.trim())).toBe('Usage');
    await page.context().close();
  });

  it('gets 403 from the operator RPCs with the same session', async () => {
    const client = createClient(own.stack.supabaseUrl, own.stack.anonKey, {
      auth: { persistSession: false, autoRefreshToken: false },
    });
    const { error } = await client.auth.signInWithPassword(tenantUser);
    expect(error).toBeNull();
    for (const fn of ['operator_overview', 'operator_tenants', 'operator_health'] as const) {
      const response = await client.rpc(fn);
      expect(response.status).toBe(403);
      expect(response.error?.code).toBe('42501');
    }
  });
});
