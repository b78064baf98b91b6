import { readFile } from 'node:fs/promises';
import type { Page } from '@playwright/test';
import { beforeAll, describe, expect, it } from 'vitest';
import type { FlowmeterDashboard } from '../../web/src/dashboard.ts';
import type { FlowmeterUsage } from '../../web/src/widget/flowmeter-usage.ts';
import {
  createSignInUser,
  expectNoSeriousA11yViolations,
  newContext,
  screenshot,
  sessionExpired,
  signIn,
  visibleText,
} from '../support/browser.ts';
import { parseCsv } from '../support/csv.ts';
import { superuser } from '../support/stack.ts';
import { ingest, type SeededTenant, seedUsageTenant } from '../support/usage-data.ts';
import { expectAccessibleAndPictured, useDashboardInBrowser } from './dashboard-in-browser.ts';

/**
 * The tenant dashboard in a real browser (the system's Chromium), served as `npm start`
 * serves it, signed in through its form against the local Supabase Auth subset. What the
 * page shows is compared with the database, read as the superuser.
 */
const site = useDashboardInBrowser();
let acme: SeededTenant;
let other: SeededTenant;
let member: { email: string; password: string };
let labs: SeededTenant;
let labsMember: { email: string; password: string };
let billed: SeededTenant;
let billedMember: { email: string; password: string };

/** The tenants this file seeds, one a row, with the part each plays. */
const SEEDS = {
  acme: { name: 'Acme Corp', included: 1500, previousPerDay: 45, currentPerDay: 105 },
  // Acme's member must never see this one.
  other: { name: 'Umbrella Hidden Ltd', included: 9000, previousPerDay: 11, currentPerDay: 37 },
  // A hard limit reserves the runs it allows: more asked for than there is room for, at any
  // time of day (just after midnight UTC today has almost no runs yet, so the room is
  // largest then: about 67 of 480).
  labs: {
    name: 'Acme Labs',
    policy: 'hard_limit',
    included: 480,
    previousPerDay: 12,
    currentPerDay: 28,
    reservations: 120,
  },
  // A Stripe subscriber whose invoice preview the server has cached.
  billed: { name: 'Globex Billing', included: 1000, previousPerDay: 20, currentPerDay: 30 },
} satisfies Record<string, Parameters<typeof seedUsageTenant>[0]>;

beforeAll(async () => {
  acme = await seedUsageTenant(SEEDS.acme);
  other = await seedUsageTenant(SEEDS.other);
  member = await createSignInUser([acme.tenantId]);
  labs = await seedUsageTenant(SEEDS.labs);
  labsMember = await createSignInUser([labs.tenantId]);
  billed = await seedUsageTenant(SEEDS.billed);
  await superuser().query(
    `update public.tenants set stripe_customer_id = 'cus_globex', stripe_subscription_id = 'sub_globex',
       subscription_status = 'active' where id = $1`,
    [billed.tenantId],
  );
  await superuser().query(
    `insert into public.invoice_previews (tenant_id, period_start, period_end, stripe_customer_id,
       stripe_subscription_id, status, currency, total, amount_due, subtotal, usage_quantity, usage_amount, fetched_at)
     values ($1, $2, $3, 'cus_globex', 'sub_globex', 'ok', 'eur', 2925, 2925, 2925, 1050, 25, now())`,
    [billed.tenantId, billed.periodStart, billed.periodEnd],
  );
  billedMember = await createSignInUser([billed.tenantId]);
}, 180_000);

const BROWSER_TIMEOUT = 90_000;

async function openSignedIn(user = member): Promise<Page> {
  const context = await newContext(site.browser);
  const page = await context.newPage();
  await page.goto(site.url);
  await signIn(page, user.email, user.password);
  await usage(page).locator('[data-metric="used"]').waitFor();
  await page.getByText('Updated').waitFor();
  return page;
}

async function openSignedInWithoutData(user: { email: string; password: string }): Promise<Page> {
  const page = await site.newPage();
  await page.goto(site.url);
  await signIn(page, user.email, user.password);
  return page;
}

const usage = (page: Page) => page.locator('flowmeter-usage');
const metric = (page: Page, name: string) => usage(page).locator(`[data-metric="${name}"]`);
const count = (n: number) => n.toLocaleString('en-US');

async function counters(tenant: SeededTenant) {
  const { rows } = await superuser().query<{ billable: number; reserved: number; quota: number }>(
    `select c.billable::int, c.reserved::int, p.included_executions::int as quota
     from public.usage_counters c join public.tenants t on t.id = c.tenant_id
     join public.plans p on p.id = t.plan_id
     where c.tenant_id = $1 and c.period_start = $2`,
    [tenant.tenantId, tenant.periodStart],
  );
  const row = rows[0];
  if (!row) throw new Error('no counters for the seeded period');
  return row;
}

describe('the sign-in page', { timeout: BROWSER_TIMEOUT }, () => {
  it('has labelled fields and no serious accessibility violation', async () => {
    const page = await site.newPage();
    await page.goto(site.url);
    await expect.poll(() => page.getByLabel('Email').isVisible()).toBe(true);
    await expect.poll(() => page.getByLabel('Password').isVisible()).toBe(true);
    await expectNoSeriousA11yViolations(page);
    await page.context().close();
  });

  it('says the password is wrong, and shows no data', async () => {
    const page = await site.newPage();
    const rpcCalls: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/rest/v1/rpc/')) rpcCalls.push(r.url());
    });
    await page.goto(site.url);
    await signIn(page, member.email, 'not-the-password');
    await page.getByRole('alert').filter({ hasText: 'Wrong email or password.' }).waitFor();
    await screenshot(page, 'sign-in-wrong-password.png');
    expect(await visibleText(page)).not.toContain(acme.name);
    expect(await usage(page).count()).toBe(0);
    expect(rpcCalls).toEqual([]);
    await page.context().close();
  });

  it('says when the sign-in service cannot be reached', async () => {
    const page = await site.newPage();
    await page.goto(site.url);
    await page.route('**/auth/v1/token**', (route) => route.abort('connectionrefused'));
    await signIn(page, member.email, member.password);
    await page.getByRole('alert').filter({ hasText: 'cannot be reached' }).waitFor();
    await page.context().close();
  });
});

describe('signed in as a tenant user', { timeout: BROWSER_TIMEOUT }, () => {
  it("shows the tenant's counters as the database holds them, and nothing of another tenant", async () => {
    const page = await site.newPage();
    const bodies: string[] = [];
    page.on('response', async (r) => {
      if (r.url().includes('/rest/v1/rpc/')) bodies.push(await r.text().catch(() => ''));
    });
    await page.goto(site.url);
    await signIn(page, member.email, member.password);
    await metric(page, 'used').waitFor();

    const db = await counters(acme);
    const overage = Math.max(0, db.billable - db.quota);
    expect(await metric(page, 'used').textContent()).toBe(count(db.billable));
    expect(await metric(page, 'quota').textContent()).toBe(count(db.quota));
    expect(await metric(page, 'reserved').textContent()).toBe(count(db.reserved));
    expect(await metric(page, 'remaining').textContent()).toBe(
      count(Math.max(0, db.quota - db.billable)),
    );
    expect(await metric(page, 'overage').textContent()).toBe(count(overage));
    // 0.5 cents per execution over the quota, in euros, half cents rounded up
    expect(await metric(page, 'overage-cost').textContent()).toBe(
      `€${(Math.round(overage * 0.5) / 100).toFixed(2)}`,
    );
    expect(await metric(page, 'level').getAttribute('data-level')).toBe(
      overage > 0 ? 'overage' : 'warning',
    );
    const daysLeft = Math.ceil((acme.periodEnd.getTime() - Date.now()) / 86_400_000);
    expect(await metric(page, 'days-left').textContent()).toBe(
      `${daysLeft} ${daysLeft === 1 ? 'day' : 'days'} left`,
    );

    const workflows = await superuser().query<{ workflow_id: string; n: number }>(
      `select workflow_id, count(*)::int as n from public.executions
       where tenant_id = $1 and period_start = $2 group by workflow_id`,
      [acme.tenantId, acme.periodStart],
    );
    for (const w of workflows.rows) {
      const row = page.locator(`tr[data-workflow="${w.workflow_id}"]`);
      expect(await row.locator('[data-metric="executions"]').textContent()).toBe(count(w.n));
    }

    const periods = await superuser().query<{ period_start: Date; billable: number; sent: number }>(
      `select c.period_start, c.billable::int,
              coalesce((select sum(r.value) from public.meter_reports r where r.tenant_id = c.tenant_id
                and r.period_start = c.period_start and r.status = 'sent'), 0)::int as sent
       from public.usage_counters c where c.tenant_id = $1`,
      [acme.tenantId],
    );
    expect(periods.rows).toHaveLength(2);
    for (const p of periods.rows) {
      const row = page.locator(`tr[data-period^="${p.period_start.toISOString().slice(0, 19)}"]`);
      expect(await row.locator('[data-metric="used"]').textContent()).toBe(count(p.billable));
      expect(await row.locator('[data-metric="reported"]').textContent()).toBe(count(p.sent));
    }

    const text = await visibleText(page);
    expect(text).toContain(acme.name);
    expect(text).not.toContain(other.name);
    expect(text).not.toContain(labs.name);
    const hidden = await counters(other);
    expect(text).not.toMatch(new RegExp(`(?<![\\d,.])${count(hidden.billable)}(?![\\d,.])`));
    expect(bodies.join('\n')).not.toContain(other.tenantId);
    expect(bodies.join('\n')).not.toContain(other.name);
    await page.context().close();
  });

  it('shows reserved runs apart and says when a hard limit blocks runs', async () => {
    const page = await openSignedIn(labsMember);
    const db = await counters(labs);
    expect(db.reserved).toBeGreaterThan(0);
    expect(db.billable + db.reserved).toBe(db.quota);
    expect(await metric(page, 'used').textContent()).toBe(count(db.billable));
    expect(await metric(page, 'reserved').textContent()).toBe(count(db.reserved));
    expect(await metric(page, 'at-limit').textContent()).toContain('new runs are refused now');
    expect(await visibleText(page)).not.toContain(acme.name);
    await page.context().close();
  });

  it('charts one point per day of the period so far, against the previous period', async () => {
    const page = await openSignedIn();
    const chart = await usage(page).evaluate((el: FlowmeterUsage) => ({
      labels: el.chart?.data.labels?.length,
      current: el.chart?.data.datasets[0]?.data,
      previous: el.chart?.data.datasets[1]?.data.length,
    }));
    expect(chart.current).toHaveLength(acme.daysSoFar);
    const days = (from: Date, to: Date) => (to.getTime() - from.getTime()) / 86_400_000;
    const previousDays = days(acme.previousPeriodStart, acme.periodStart);
    expect(chart.previous).toBe(previousDays);
    // Day 1 … the last day of the longer period
    expect(chart.labels).toBe(Math.max(previousDays, days(acme.periodStart, acme.periodEnd)));
    const { rows } = await superuser().query<{ billable: number }>(
      `select count(*)::int as billable from public.executions
       where tenant_id = $1 and occurred_at >= $2 and billable`,
      [acme.tenantId, acme.periodStart],
    );
    expect((chart.current as number[]).reduce((a, b) => a + b, 0)).toBe(rows[0]?.billable);
    // Hovering a day shows its numbers, this period's and the previous period's.
    const third = await usage(page).evaluate((el: FlowmeterUsage) => {
      const point = el.chart?.getDatasetMeta(0).data[2];
      return { x: point?.x ?? 0, y: point?.y ?? 0 };
    });
    const box = await usage(page).locator('canvas').boundingBox();
    if (!box) throw new Error('the chart has no box');
    await page.mouse.move(box.x + third.x, box.y + third.y);
    await expect
      .poll(() =>
        usage(page).evaluate((el: FlowmeterUsage) =>
          el.chart?.tooltip?.body?.flatMap((b) => b.lines),
        ),
      )
      .toEqual([
        expect.stringMatching(
          new RegExp(
            `^This period \\(.+\\): ${(chart.current as number[])[2]} billable of \\d+, \\d+ failed$`,
          ),
        ),
        expect.stringMatching(/^Previous period \(.+\): \d+ billable of \d+, \d+ failed$/),
      ]);
    await usage(page).getByText('Daily numbers').click();
    expect(await usage(page).locator('tbody tr').count()).toBe(acme.daysSoFar);
    await page.context().close();
  });

  it('marks an alert read, and it stays read', async () => {
    const page = await openSignedIn();
    const { rows } = await superuser().query<{ id: string; threshold: number }>(
      'select id, threshold from public.usage_alerts where tenant_id = $1 and read_at is null order by threshold desc',
      [acme.tenantId],
    );
    const alert = rows[0];
    if (!alert) throw new Error('the seeded tenant has no unread alert');
    const item = page.locator(`li[data-alert="${alert.id}"]`);
    // unread first
    expect(await page.locator('li[data-alert]').first().getAttribute('class')).toBe('unread');
    await item.getByRole('button', { name: 'Mark as read' }).click();
    await item.getByText('Read', { exact: true }).waitFor();
    const stored = await superuser().query(
      'select read_at from public.usage_alerts where id = $1',
      [alert.id],
    );
    expect(stored.rows[0]?.read_at).not.toBeNull();
    await page.reload();
    await page.locator(`li[data-alert="${alert.id}"].read`).waitFor();
    await page.context().close();
  });

  it('returns to the sign-in form, saying why, when marking an alert read finds the session ended', async () => {
    const page = await openSignedIn();
    await page.route('**/rest/v1/rpc/mark_alert_read**', sessionExpired);
    await page.getByRole('button', { name: 'Mark as read' }).first().click();
    await page.locator('form.sign-in').waitFor();
    expect(await page.locator('form.sign-in [role="alert"]').textContent()).toBe(
      'Your session has ended. Sign in again.',
    );
    expect(await usage(page).count()).toBe(0);
    await expectAccessibleAndPictured(page, 'mark-read-session-ended.png');
    await page.context().close();
  });

  it('keeps the alerts listed and says beside the alert when marking it read fails', async () => {
    const page = await openSignedIn();
    const alerts = page.locator('li[data-alert]');
    const listed = await alerts.count();
    const alertId = await page
      .locator('li[data-alert]:has(button)')
      .first()
      .getAttribute('data-alert');
    const item = page.locator(`li[data-alert="${alertId}"]`);
    try {
      await page.route('**/rest/v1/rpc/mark_alert_read**', (route) =>
        route.abort('connectionrefused'),
      );
      await item.getByRole('button', { name: 'Mark as read' }).click();
      const failure = item.getByRole('alert');
      await failure.waitFor();
      expect(await failure.textContent()).toBe(
        'Not marked as read: The usage service cannot be reached. Check your connection, then try again.',
      );
      expect(await page.getByRole('alert').count()).toBe(1);
      expect(await alerts.count()).toBe(listed);
      await expectAccessibleAndPictured(page, 'mark-read-failed.png');

      // Tried again once the service answers: marked, and the failure is no longer said.
      await page.unroute('**/rest/v1/rpc/mark_alert_read**');
      await item.getByRole('button', { name: 'Mark as read' }).click();
      await item.getByText('Read', { exact: true }).waitFor();
      expect(await page.getByRole('alert').count()).toBe(0);
      await page.context().close();
    } finally {
      // The alert stays unread for the tests after this one, as seeded.
      await superuser().query('update public.usage_alerts set read_at = null where id = $1', [
        alertId,
      ]);
    }
  });

  it('refreshes when the tab becomes visible again, and every 30 seconds', async () => {
    const context = await newContext(site.browser);
    const page = await context.newPage();
    await page.clock.install();
    await page.goto(site.url);
    await signIn(page, member.email, member.password);
    await metric(page, 'used').waitFor();
    const before = (await counters(acme)).billable;
    await expect.poll(() => metric(page, 'used').textContent()).toBe(count(before));

    const now = Date.now();
    await ingest(acme.tenantId, [
      { workflow: 'orders-sync', startedAt: now - 5000, status: 'success', durationMs: 1000 },
    ]);
    await page.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
    await expect.poll(() => metric(page, 'used').textContent()).toBe(count(before + 1));

    await ingest(acme.tenantId, [
      { workflow: 'orders-sync', startedAt: now - 4000, status: 'success', durationMs: 1000 },
    ]);
    await page.clock.runFor(30_000);
    await expect.poll(() => metric(page, 'used').textContent()).toBe(count(before + 2));
    await context.close();
  });

  it('has no serious accessibility violation, and is photographed with its data', async () => {
    const page = await openSignedIn();
    await expectAccessibleAndPictured(page, 'tenant-dashboard.png');
    await page.context().close();
  });

  it('tells a user of no tenant that they have none', async () => {
    const page = await openSignedInWithoutData(await createSignInUser([]));
    await page.getByRole('heading', { name: 'No tenant yet' }).waitFor();
    await screenshot(page, 'no-tenant.png');
    await page.context().close();
  });

  it('keeps the last numbers and says so when a refresh fails', async () => {
    const page = await openSignedIn();
    const shown = await metric(page, 'used').textContent();
    await page.route('**/rest/v1/rpc/**', (route) => route.abort('connectionrefused'));
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.getByRole('alert').filter({ hasText: 'cannot be reached' }).waitFor();
    await screenshot(page, 'refresh-failed.png');
    expect(await metric(page, 'used').textContent()).toBe(shown);
    await page.unroute('**/rest/v1/rpc/**');
    await page.getByRole('button', { name: 'Refresh' }).click();
    await expect.poll(() => page.getByRole('alert').count()).toBe(0);
    await page.context().close();
  });

  it('leaves each remaining tenant its own panel when the user leaves a tenant, even while panels cannot reload', async () => {
    const north = await seedUsageTenant({
      name: 'Twin North',
      included: 100,
      previousPerDay: 3,
      currentPerDay: 8,
    });
    const south = await seedUsageTenant({
      name: 'Twin South',
      included: 200,
      previousPerDay: 4,
      currentPerDay: 12,
    });
    const user = await createSignInUser([north.tenantId, south.tenantId]);
    const alertsOf = async (tenant: SeededTenant) => {
      const { rows } = await superuser().query<{ id: string }>(
        'select id::text from public.usage_alerts where tenant_id = $1 order by id',
        [tenant.tenantId],
      );
      return rows.map((r) => r.id);
    };
    const page = await openSignedInWithoutData(user);
    await page.getByText('Updated').waitFor();
    const panels = page.locator('flowmeter-tenant-panel');
    expect(await panels.count()).toBe(2);
    // The user leaves the tenant shown first, so the one that stays moves up a place.
    const [left, stays] =
      (await panels.first().getAttribute('tenant-id')) === north.tenantId
        ? [north, south]
        : [south, north];
    expect(await alertsOf(left)).not.toEqual([]);
    await superuser().query(
      'delete from public.tenant_members where tenant_id = $1 and user_id = $2',
      [left.tenantId, user.userId],
    );
    // Only the tenant list answers: each panel keeps what it showed before.
    await page.route(
      (url) =>
        url.pathname.includes('/rpc/') && !url.pathname.endsWith('/rpc/tenant_usage_summary'),
      (route) => route.abort('connectionrefused'),
    );
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.getByRole('alert').filter({ hasText: 'cannot be reached' }).waitFor();
    expect(await panels.count()).toBe(1);
    const panel = page.getByRole('region', { name: stays.name });
    const shown = await panel
      .locator('li[data-alert]')
      .evaluateAll((items) => items.map((li) => li.getAttribute('data-alert')));
    expect(shown.sort()).toEqual((await alertsOf(stays)).sort());
    expect(await visibleText(page)).not.toContain(left.name);
    await screenshot(page, 'left-a-tenant-not-refreshed.png');
    await page.context().close();
  });

  it('shows nothing of a tenant at the first refresh after the user is removed from it, their only one', async () => {
    const gone = await seedUsageTenant({
      name: 'Removed Member Co',
      included: 100,
      previousPerDay: 2,
      currentPerDay: 5,
    });
    const user = await createSignInUser([gone.tenantId]);
    const page = await openSignedIn(user);
    expect(await visibleText(page)).toContain(gone.name);
    await superuser().query(
      'delete from public.tenant_members where tenant_id = $1 and user_id = $2',
      [gone.tenantId, user.userId],
    );
    await page.getByRole('button', { name: 'Refresh' }).click();
    await page.getByRole('heading', { name: 'No tenant yet' }).waitFor();
    expect(await page.locator('flowmeter-tenant-panel, flowmeter-usage, table').count()).toBe(0);
    expect(await page.getByRole('alert').count()).toBe(0);
    expect(await visibleText(page)).not.toContain(gone.name);
    await page.context().close();
  });

  it('reads the summary once per refresh', async () => {
    const page = await site.newPage();
    const calls: string[] = [];
    page.on('request', (r) => {
      const fn = /\/rest\/v1\/rpc\/([a-z_]+)/.exec(r.url())?.[1];
      if (fn) calls.push(fn);
    });
    await page.goto(site.url);
    await signIn(page, member.email, member.password);
    await page.getByText('Updated').waitFor();
    const callsOf = (fn: string) => calls.filter((c) => c === fn).length;
    expect(callsOf('tenant_usage_summary')).toBe(1);
    expect(callsOf('tenant_usage_daily')).toBe(1);

    await page.getByRole('button', { name: 'Refresh' }).click();
    await expect.poll(() => callsOf('tenant_usage_history')).toBe(2);
    await page.getByText('Updated').waitFor();
    expect(callsOf('tenant_usage_summary')).toBe(2);
    expect(callsOf('tenant_usage_daily')).toBe(2);
    await page.context().close();
  });

  it('shows the new user’s tenants when another user signs in in another tab', async () => {
    const context = await newContext(site.browser);
    const first = await context.newPage();
    await first.goto(site.url);
    await signIn(first, member.email, member.password);
    await metric(first, 'used').waitFor();
    expect(await visibleText(first)).toContain(acme.name);

    // The other tab shares the session: signing in there replaces it without a sign-out.
    const second = await context.newPage();
    await second.goto(site.url);
    await second.getByText('Updated').waitFor();
    await second.evaluate(
      async ({ email, password }) => {
        const { error } =
          (await document
            .querySelector<FlowmeterDashboard>('flowmeter-dashboard')
            ?.client?.auth.signInWithPassword({ email, password })) ?? {};
        if (error) throw error;
      },
      { email: labsMember.email, password: labsMember.password },
    );
    await first.getByRole('heading', { name: labs.name }).waitFor();
    await first.getByText(labsMember.email).waitFor();
    await first.getByText('Updated').waitFor();
    expect(await visibleText(first)).not.toContain(acme.name);
    await context.close();
  });

  it("downloads the period's executions as CSV: the rows are the tenant's counters", async () => {
    const page = await openSignedIn();
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download CSV' }).click(),
    ]);
    const path = await download.path();
    const rows = parseCsv(await readFile(path, 'utf8'));
    const { rows: db } = await superuser().query<{ executions: number; billable: number }>(
      `select executions::int, billable::int from public.usage_counters
       where tenant_id = $1 and period_start = $2`,
      [acme.tenantId, acme.periodStart],
    );
    expect(rows).toHaveLength(db[0]?.executions ?? -1);
    expect(rows.filter((r) => r.billable === 'true')).toHaveLength(db[0]?.billable ?? -1);
    const { rows: sources } = await superuser().query<{ id: string }>(
      'select id from public.n8n_sources where tenant_id = $1',
      [acme.tenantId],
    );
    const own = new Set(sources.map((s) => s.id));
    expect(rows.every((r) => own.has(r.source_id ?? ''))).toBe(true);
    expect(new Set(rows.map((r) => r.billing_period_start))).toEqual(
      new Set([
        expect.stringMatching(new RegExp(`^${acme.periodStart.toISOString().slice(0, 19)}`)),
      ]),
    );
    await page.context().close();
  });

  it("shows Stripe's upcoming invoice beside flowmeter's estimate", async () => {
    const page = await openSignedIn(billedMember);
    expect(await metric(page, 'invoice-total').textContent()).toBe('€29.25');
    expect(await metric(page, 'invoice-usage').textContent()).toBe('1,050 executions for €0.25');
    expect(await metric(page, 'overage-cost').textContent()).toMatch(/^€/);
    await screenshot(page, 'invoice-preview.png');
    await page.context().close();
  });

  it('says on the standalone widget that its numbers are old when a refresh fails', async () => {
    const page = await openSignedIn();
    const shown = await metric(page, 'used').textContent();
    // The widget alone, as an embedder uses it: it reads the summary itself.
    await page.evaluate(() => {
      const widget = document.createElement('flowmeter-usage');
      widget.id = 'standalone';
      widget.setAttribute('refresh-interval', '0');
      widget.setAttribute('tenant-id', document.querySelector('flowmeter-usage')?.tenantId ?? '');
      widget.client = document.querySelector<FlowmeterDashboard>('flowmeter-dashboard')?.client;
      document.body.append(widget);
    });
    const standalone = page.locator('#standalone');
    await standalone.locator('[data-metric="used"]').waitFor();
    expect(await standalone.locator('[data-metric="stale"]').count()).toBe(0);
    await page.route('**/rest/v1/rpc/**', (route) => route.abort('connectionrefused'));
    await standalone.evaluate((el: FlowmeterUsage) => el.refresh());
    const note = standalone.locator('[data-metric="stale"]');
    await note.waitFor();
    expect(await note.textContent()).toMatch(
      /^Not refreshed: The usage service cannot be reached\..* The numbers are from /s,
    );
    expect(await standalone.locator('[data-metric="used"]').textContent()).toBe(shown);
    await page.unroute('**/rest/v1/rpc/**');
    await standalone.evaluate((el: FlowmeterUsage) => el.refresh());
    await expect.poll(() => note.count()).toBe(0);
    await page.context().close();
  });

  it('signs out to the sign-in page, and stays signed out', async () => {
    const page = await openSignedIn();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await usage(page).count()).toBe(0);
    await page.reload();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await visibleText(page)).not.toContain(acme.name);
    await page.context().close();
  });
});
