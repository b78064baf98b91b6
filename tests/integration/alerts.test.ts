import { randomBytes } from 'node:crypto';
import { delay, HttpResponse, http } from 'msw';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createResendEmailChannel } from '../../src/alerts/channels/email.ts';
import type { AlertMessage } from '../../src/alerts/channels/message.ts';
import { createSlackChannel } from '../../src/alerts/channels/slack.ts';
import { deliverAlerts, drainAlerts, NO_EMAIL_PROVIDER } from '../../src/alerts/deliver-alerts.ts';
import { alertChannelFactories } from '../../src/alerts/from-config.ts';
import { loadAlertsConfig } from '../../src/config/alerts-env.ts';
import { ConfigError } from '../../src/config/env.ts';
import { fail } from '../../src/domain/result.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { needsAttention } from '../../src/ops/attention.ts';
import { collect, createSource, type TestSource, useN8nServer } from '../support/collector.ts';
import { dropRequest, faultyDb, loseResponse, rpcFetch } from '../support/faults.ts';
import { addMember, createPlan, createUser, setPlan } from '../support/fixtures.ts';
import { DAY, HOUR } from '../support/milliseconds.ts';
import { succeeded } from '../support/result.ts';
import {
  anonClient,
  asRole,
  serviceClient,
  stack,
  superuser,
  uniqueId,
  userClient,
} from '../support/stack.ts';
import { operatorStatusOf } from '../support/status.ts';

/**
 * Usage alerts end to end: executions ingested by the real collector (fake n8n through
 * msw) raise alerts in SQL; deliverAlerts sends them to Slack and Resend (msw) and
 * records the outcome. Each test uses fresh tenants with channels of their own.
 */
const server = useN8nServer();

const RESEND_KEY = 're_test_0123456789';
const FROM = 'Flowmeter <alerts@flowmeter.test>';

const baseEnv = {
  SUPABASE_URL: stack.supabaseUrl,
  SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
};
const channels = alertChannelFactories(
  loadAlertsConfig({ ...baseEnv, RESEND_API_KEY: RESEND_KEY, ALERT_EMAIL_FROM: FROM }),
);
/** A delivery run over this tenant's alerts only: other test files' alerts are theirs. */
const deliver = (tenantId: string, factories = channels) =>
  succeeded(
    deliverAlerts({
      db: serviceClient(),
      channels: factories,
      log: silentLogger,
      tenantIds: [tenantId],
    }),
  );

// Fakes ---------------------------------------------------------------------------------

interface SlackRequest {
  status: number;
  text: string;
}

/** One Slack incoming webhook: records what it got, answers 200 "ok" unless told to fail. */
function fakeSlack() {
  const url = `https://hooks.slack.com/services/T0TEST/B0TEST/${randomBytes(12).toString('hex')}`;
  const requests: SlackRequest[] = [];
  const failures: number[] = [];
  server.use(
    http.post(url, async ({ request }) => {
      const body = (await request.json()) as { text: string; blocks: unknown[] };
      expect(body.blocks.length).toBeGreaterThan(0);
      const status = failures.shift() ?? 200;
      requests.push({ status, text: body.text });
      return status === 200
        ? HttpResponse.text('ok')
        : HttpResponse.text('internal_error', { status });
    }),
  );
  return {
    url,
    requests,
    failNext(status: number, times: number) {
      for (let i = 0; i < times; i++) failures.push(status);
    },
  };
}

interface ResendRequest {
  idempotencyKey: string | null;
  authorization: string | null;
  body: { from: string; to: string[]; subject: string; text: string };
  answered: 'ok' | 'lost';
}

/** Resend's POST /emails: every request recorded; `loseNext` drops the answer after accepting. */
const resend = {
  requests: [] as ResendRequest[],
  lost: 0,
  to(address: string) {
    return this.requests.filter((r) => r.body.to.includes(address));
  },
};
beforeAll(() => {
  server.use(
    http.post('https://api.resend.com/emails', async ({ request }) => {
      const answered = resend.lost > 0 ? 'lost' : 'ok';
      if (answered === 'lost') resend.lost--;
      resend.requests.push({
        idempotencyKey: request.headers.get('idempotency-key'),
        authorization: request.headers.get('authorization'),
        body: (await request.json()) as ResendRequest['body'],
        answered,
      });
      return answered === 'lost'
        ? HttpResponse.error()
        : HttpResponse.json({ id: randomBytes(8).toString('hex') });
    }),
  );
});

// Helpers -------------------------------------------------------------------------------

/** A tenant on a fresh plan, its billing period pinned around now (no month boundary). */
async function meteredTenant(plan: { quota: number; thresholds?: number[] }) {
  const planId = (await createPlan({ included_executions: plan.quota })).id;
  if (plan.thresholds) {
    await setPlan({
      id: planId,
      name: 'Thresholds plan',
      included_executions: plan.quota,
      alert_thresholds: plan.thresholds,
    });
  }
  const source = await createSource(server, { planId });
  const period = await pinPeriod(source.tenantId, Date.now() - 5 * DAY, Date.now() + 25 * DAY);
  return { source, tenantId: source.tenantId, planId, period };
}

async function pinPeriod(tenantId: string, start: number, end: number) {
  const period = { start: new Date(start), end: new Date(end) };
  await superuser().query(
    'update public.tenants set current_period_start = $2, current_period_end = $3 where id = $1',
    [tenantId, period.start, period.end],
  );
  return period;
}

/** n billable executions that started a moment ago, then one collector run. */
async function ingest(source: TestSource, n: number) {
  source.fake.addMany(n, (i) => ({ startedAt: new Date(Date.now() - 60_000 + i).toISOString() }));
  const summary = await collect([source]);
  expect(summary.errors).toEqual([]);
}

async function addChannel(kind: 'slack' | 'email', target: string, tenantId: string) {
  const { data, error } = await serviceClient().rpc('add_alert_channel', {
    kind,
    target,
    tenant_id: tenantId,
  });
  if (error || !data) throw new Error(`add_alert_channel: ${error?.message}`);
  return data;
}

interface AlertRow {
  id: number;
  threshold: number;
  used: number;
  quota: number;
  period_start: Date;
  period_end: Date;
  read_at: Date | null;
}

async function alertsOf(tenantId: string): Promise<AlertRow[]> {
  const { rows } = await superuser().query(
    `select id::int, threshold, used::int, quota::int, period_start, period_end, read_at
     from public.usage_alerts where tenant_id = $1 order by period_start, threshold`,
    [tenantId],
  );
  return rows;
}

const thresholdsOf = async (tenantId: string) =>
  (await alertsOf(tenantId)).map((a) => ({ threshold: a.threshold, used: a.used }));

async function deliveriesOf(tenantId: string) {
  const { rows } = await superuser().query(
    `select d.alert_id::int, d.channel_id::int, a.threshold, d.status, d.attempts, d.delivery_key,
            d.last_error, d.next_attempt_at, d.delivered_at
     from public.alert_deliveries d join public.usage_alerts a on a.id = d.alert_id
     where a.tenant_id = $1 order by a.threshold, d.channel_id`,
    [tenantId],
  );
  return rows;
}

/** The backoff has passed: failed deliveries of this tenant are due now. */
async function backoffElapses(tenantId: string) {
  await superuser().query(
    `update public.alert_deliveries d set next_attempt_at = now()
     from public.usage_alerts a
     where a.id = d.alert_id and a.tenant_id = $1 and d.status = 'failed' and d.next_attempt_at is not null`,
    [tenantId],
  );
}

async function disableChannel(channelId: number) {
  await superuser().query('update public.alert_channels set enabled = false where id = $1', [
    channelId,
  ]);
}

// Raising -------------------------------------------------------------------------------

describe('raising alerts from collected usage', () => {
  it('crossing 80 % and 100 % raises exactly one alert per threshold, with one delivery per channel', async () => {
    const { source, tenantId, period } = await meteredTenant({ quota: 10 });
    const slack = fakeSlack();
    const channel = await addChannel('slack', slack.url, tenantId);

    await ingest(source, 7);
    expect(await alertsOf(tenantId)).toEqual([]);

    await ingest(source, 1);
    expect(await thresholdsOf(tenantId)).toEqual([{ threshold: 80, used: 8 }]);

    await ingest(source, 1);
    await ingest(source, 3);
    await collect([source]);
    await collect([source]);
    const alerts = await alertsOf(tenantId);
    expect(alerts).toEqual([
      expect.objectContaining({ threshold: 80, used: 8, quota: 10, read_at: null }),
      expect.objectContaining({ threshold: 100, used: 12, quota: 10, read_at: null }),
    ]);
    for (const alert of alerts) {
      expect(alert.period_start).toEqual(period.start);
      expect(alert.period_end).toEqual(period.end);
    }

    const deliveries = await deliveriesOf(tenantId);
    expect(deliveries).toEqual(
      alerts.map((alert) =>
        expect.objectContaining({
          alert_id: alert.id,
          channel_id: channel.id,
          status: 'pending',
          attempts: 0,
          delivery_key: `flowmeter-alert-${alert.id}-${channel.id}`,
        }),
      ),
    );

    await deliver(tenantId);
    expect(slack.requests.map((r) => r.status)).toEqual([200, 200]);
    expect(slack.requests.map((r) => r.text)).toEqual([
      expect.stringMatching(/has used 80 % of the executions included in its plan: 8 of 10/),
      expect.stringMatching(/has used all the executions included in its plan: 12 of 10/),
    ]);
    expect((await deliveriesOf(tenantId)).map((d) => d.status)).toEqual(['delivered', 'delivered']);

    await deliver(tenantId);
    expect(slack.requests).toHaveLength(2);
  });

  it('follows the plan: {80, 95, 100} raises three alerts, each when its threshold is reached', async () => {
    const { source, tenantId } = await meteredTenant({ quota: 20, thresholds: [80, 95, 100] });
    await ingest(source, 15);
    expect(await thresholdsOf(tenantId)).toEqual([]);
    await ingest(source, 1);
    expect(await thresholdsOf(tenantId)).toEqual([{ threshold: 80, used: 16 }]);
    await ingest(source, 2);
    expect(await thresholdsOf(tenantId)).toHaveLength(1);
    await ingest(source, 1);
    expect(await thresholdsOf(tenantId)).toEqual([
      { threshold: 80, used: 16 },
      { threshold: 95, used: 19 },
    ]);
    await ingest(source, 1);
    expect(await thresholdsOf(tenantId)).toEqual([
      { threshold: 80, used: 16 },
      { threshold: 95, used: 19 },
      { threshold: 100, used: 20 },
    ]);
  });

  it('thresholds crossed at once are alerted, and posted, lowest first', async () => {
    const thresholds = [25, 50, 75, 80, 90, 95, 100];
    const { source, tenantId } = await meteredTenant({ quota: 10, thresholds });
    const slack = fakeSlack();
    await addChannel('slack', slack.url, tenantId);
    await ingest(source, 10);
    const { rows } = await superuser().query(
      'select threshold from public.usage_alerts where tenant_id = $1 order by id',
      [tenantId],
    );
    expect(rows.map((r) => r.threshold)).toEqual(thresholds);
    await deliver(tenantId);
    expect(slack.requests.map((r) => r.text.match(/has used (\d+) %|has used all/)?.[0])).toEqual([
      ...thresholds.slice(0, -1).map((t) => `has used ${t} %`),
      'has used all',
    ]);
  });

  it('two sources of one tenant collected in parallel, again and again, still raise one alert per threshold', async () => {
    const { source: a, tenantId, planId } = await meteredTenant({ quota: 1000 });
    const b = await createSource(server, { tenantId, planId });
    const slack = fakeSlack();
    await addChannel('slack', slack.url, tenantId);
    const add = (source: TestSource, n: number) =>
      source.fake.addMany(n, (i) => ({
        startedAt: new Date(Date.now() - 120_000 + i).toISOString(),
      }));

    // 700, then 820 (80 % crossed while both ingest), then 1,020 (100 % crossed likewise).
    for (const perSource of [350, 60, 100]) {
      add(a, perSource);
      add(b, perSource);
      const runs = await Promise.all([collect([a]), collect([b])]);
      expect(runs.flatMap((r) => r.errors)).toEqual([]);
    }
    // Runs racing for the same sources, and repeats: nothing new to count.
    await Promise.all([collect([a]), collect([b]), collect([a, b]), collect([b, a])]);
    await collect([a, b]);

    const { rows } = await superuser().query(
      'select sum(billable)::int as billable from public.usage_counters where tenant_id = $1',
      [tenantId],
    );
    expect(rows[0].billable).toBe(1020);
    const alerts = await alertsOf(tenantId);
    expect(alerts.map((x) => x.threshold)).toEqual([80, 100]);
    const [at80, at100] = alerts as [AlertRow, AlertRow];
    expect(at80.used).toBeGreaterThanOrEqual(800);
    expect(at80.used).toBeLessThan(1000);
    expect(at100.used).toBeGreaterThanOrEqual(1000);
    expect(await deliveriesOf(tenantId)).toHaveLength(2);

    await deliver(tenantId);
    await deliver(tenantId);
    expect(slack.requests.map((r) => r.status)).toEqual([200, 200]);
  });

  it('a new billing period starts counting afresh and raises its own alerts', async () => {
    const { source, tenantId, period } = await meteredTenant({ quota: 10 });
    await ingest(source, 10);
    expect((await alertsOf(tenantId)).map((a) => a.threshold)).toEqual([80, 100]);

    // The subscription's period restarts (renewal, or a plan change resetting the cycle).
    const next = await pinPeriod(tenantId, Date.now() - HOUR, Date.now() + 30 * DAY);
    await ingest(source, 7);
    expect(await alertsOf(tenantId)).toHaveLength(2);
    await ingest(source, 1);
    await ingest(source, 2);

    const alerts = await alertsOf(tenantId);
    expect(
      alerts.map((a) => ({
        period_start: a.period_start,
        period_end: a.period_end,
        threshold: a.threshold,
        used: a.used,
      })),
    ).toEqual([
      { period_start: period.start, period_end: period.end, threshold: 80, used: 10 },
      { period_start: period.start, period_end: period.end, threshold: 100, used: 10 },
      { period_start: next.start, period_end: next.end, threshold: 80, used: 8 },
      { period_start: next.start, period_end: next.end, threshold: 100, used: 10 },
    ]);
  });
});

// The trigger's rules, as SQL, inside a transaction that is rolled back (so the global
// channel created here never receives another test file's alerts).
describe('raising alerts: plan and channel rules', () => {
  const asService = <T>(fn: (db: pg.PoolClient) => Promise<T>) => asRole('service_role', {}, fn);

  async function tenantOn(
    db: pg.PoolClient,
    plan: { quota: number | null; policy?: string; trialQuota?: number },
  ) {
    const planId = uniqueId('plan');
    await db.query(
      `select public.set_plan(id => $1, name => 'Rules', included_executions => $2,
              limit_policy => $3, overage_unit_amount => $4)`,
      [planId, plan.quota, plan.policy ?? 'hard_limit', plan.policy === 'overage' ? 1 : null],
    );
    if (plan.trialQuota !== undefined) {
      await db.query('update public.plans set trial_included_executions = $2 where id = $1', [
        planId,
        plan.trialQuota,
      ]);
    }
    const { rows } = await db.query('select (public.add_tenant($1, $2)).id', [
      uniqueId('tenant'),
      planId,
    ]);
    return rows[0].id as string;
  }

  async function count(db: pg.PoolClient, tenantId: string, billable: number) {
    await db.query(
      `insert into public.usage_counters as c (tenant_id, period_start, period_end, executions, billable, billable_success)
       values ($1, date_trunc('month', now()), date_trunc('month', now()) + interval '1 month', $2, $2, $2)
       on conflict (tenant_id, period_start) do update
         set executions = excluded.executions, billable = excluded.billable,
             billable_success = excluded.billable_success`,
      [tenantId, billable],
    );
  }

  /** A tenant at 80 % of its quota with an e-mail channel of its own: one delivery due. */
  async function oneDeliveryDue(db: pg.PoolClient, address: string) {
    const tenant = await tenantOn(db, { quota: 10 });
    await db.query("select public.add_alert_channel('email', $2, $1)", [tenant, address]);
    await count(db, tenant, 8);
    return tenant;
  }

  /** This tenant's due deliveries claimed (leased for 60 s), with `columns` of each. */
  const claimDeliveries = async (db: pg.PoolClient, tenantId: string, columns = '*') =>
    (
      await db.query(
        `select ${columns} from public.claim_alert_deliveries(1000, 60, array[$1]::uuid[])`,
        [tenantId],
      )
    ).rows;

  const alertsIn = async (db: pg.PoolClient, tenantId: string) =>
    (
      await db.query(
        'select threshold, used::int, quota::int from public.usage_alerts where tenant_id = $1 order by threshold',
        [tenantId],
      )
    ).rows;

  it('a global channel gets every tenant’s alerts; disabled and other tenants’ channels get none', async () => {
    await asService(async (db) => {
      const tenant = await tenantOn(db, { quota: 10 });
      const other = await tenantOn(db, { quota: 10 });
      const global = (
        await db.query(
          "select (public.add_alert_channel('slack', 'https://hooks.slack.com/services/T/B/global')).id::int",
        )
      ).rows[0].id;
      const own = (
        await db.query(
          "select (public.add_alert_channel('email', 'ops@tenant.test', $1)).id::int",
          [tenant],
        )
      ).rows[0].id;
      const disabled = (
        await db.query(
          "select (public.add_alert_channel('email', 'old@tenant.test', $1)).id::int",
          [tenant],
        )
      ).rows[0].id;
      await db.query('update public.alert_channels set enabled = false where id = $1', [disabled]);
      await db.query("select public.add_alert_channel('email', 'ops@other.test', $1)", [other]);

      await count(db, tenant, 8);
      const { rows } = await db.query(
        `select d.channel_id::int from public.alert_deliveries d
         join public.usage_alerts a on a.id = d.alert_id where a.tenant_id = $1 order by 1`,
        [tenant],
      );
      expect(rows.map((r) => r.channel_id)).toEqual([global, own].sort((x, y) => x - y));
    });
  });

  it('unlimited plans raise nothing; a trialing tenant is measured against the trial quota', async () => {
    await asService(async (db) => {
      const unlimited = await tenantOn(db, { quota: null, policy: 'unlimited' });
      await count(db, unlimited, 1_000_000);
      expect(await alertsIn(db, unlimited)).toEqual([]);

      const trialing = await tenantOn(db, { quota: 1000, trialQuota: 5 });
      await db.query("update public.tenants set subscription_status = 'trialing' where id = $1", [
        trialing,
      ]);
      await count(db, trialing, 4);
      expect(await alertsIn(db, trialing)).toEqual([{ threshold: 80, used: 4, quota: 5 }]);

      const overage = await tenantOn(db, { quota: 10, policy: 'overage' });
      await count(db, overage, 25);
      expect(await alertsIn(db, overage)).toEqual([
        { threshold: 80, used: 25, quota: 10 },
        { threshold: 100, used: 25, quota: 10 },
      ]);
    });
  });

  it('retries back off 30 s, 1 min, 2 min … capped at 1 h and stop after 10 attempts', async () => {
    await asService(async (db) => {
      const tenant = await oneDeliveryDue(db, 'ops@backoff.test');
      // The lease as text: a Date would drop its microseconds, and finishing matches it.
      const mine = () => claimDeliveries(db, tenant, '*, lease_expires_at::text as lease');

      const waits: number[] = [];
      for (let attempt = 1; attempt <= 10; attempt++) {
        const [claimed] = await mine();
        expect(claimed).toMatchObject({ attempt, threshold: 80 });
        const { rows } = await db.query(
          `select status, next_attempt_at, extract(epoch from next_attempt_at - now())::int as wait
           from public.finish_alert_delivery($1, $2, $3, false, 'boom')`,
          [claimed.alert_id, claimed.channel_id, claimed.lease],
        );
        if (rows[0].next_attempt_at !== null) {
          waits.push(rows[0].wait);
          await db.query(
            'update public.alert_deliveries set next_attempt_at = now() where alert_id = $1',
            [claimed.alert_id],
          );
        } else {
          expect(rows[0].status).toBe('failed');
        }
      }
      expect(waits).toEqual([30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
      expect(await mine()).toEqual([]);
    });
  });

  it('a send whose sender died is claimed again when its lease runs out, and given up at the limit', async () => {
    await asService(async (db) => {
      const tenant = await oneDeliveryDue(db, 'ops@lease.test');
      const claim = () => claimDeliveries(db, tenant, 'attempt');
      const mine = 'alert_id in (select id from public.usage_alerts where tenant_id = $1)';
      const expire = () =>
        db.query(
          `update public.alert_deliveries set lease_expires_at = now() - interval '1 second' where ${mine}`,
          [tenant],
        );

      expect(await claim()).toEqual([{ attempt: 1 }]);
      expect(await claim()).toEqual([]); // leased
      await expire();
      expect(await claim()).toEqual([{ attempt: 2 }]);

      await db.query(`update public.alert_deliveries set attempts = 10 where ${mine}`, [tenant]);
      await expire();
      expect(await claim()).toEqual([]);
      const { rows } = await db.query(
        `select d.status, d.next_attempt_at, d.last_error from public.alert_deliveries d
         join public.usage_alerts a on a.id = d.alert_id where a.tenant_id = $1`,
        [tenant],
      );
      expect(rows).toEqual([
        {
          status: 'failed',
          next_attempt_at: null,
          last_error: 'gave up: the last attempt never reported an outcome',
        },
      ]);
    });
  });
});

// Delivering ----------------------------------------------------------------------------

describe('delivering alerts', () => {
  it('a Slack outage is retried with backoff and each alert is posted exactly once when it recovers', async () => {
    const { source, tenantId } = await meteredTenant({ quota: 10 });
    const slack = fakeSlack();
    await addChannel('slack', slack.url, tenantId);
    await ingest(source, 10); // 80 % and 100 % at once
    slack.failNext(500, 3);

    await deliver(tenantId);
    expect(slack.requests.map((r) => r.status)).toEqual([500, 500]);
    const failed = await deliveriesOf(tenantId);
    expect(failed).toEqual([
      expect.objectContaining({ status: 'failed', attempts: 1 }),
      expect.objectContaining({ status: 'failed', attempts: 1 }),
    ]);
    expect(failed[0].last_error).toBe('Slack answered 500: internal_error');
    expect(failed[0].last_error).not.toContain(slack.url);
    expect(failed[0].next_attempt_at.getTime()).toBeGreaterThan(Date.now() + 20_000);

    await deliver(tenantId); // still backing off: nothing is sent
    expect(slack.requests).toHaveLength(2);

    await backoffElapses(tenantId);
    await deliver(tenantId); // the first still fails, the second goes through
    await backoffElapses(tenantId);
    await deliver(tenantId);
    await deliver(tenantId);
    await backoffElapses(tenantId);
    await deliver(tenantId);

    expect(slack.requests.map((r) => r.status)).toEqual([500, 500, 500, 200, 200]);
    const delivered = slack.requests.filter((r) => r.status === 200).map((r) => r.text);
    expect(delivered).toEqual(
      expect.arrayContaining([
        expect.stringContaining('has used 80 %'),
        expect.stringContaining('has used all the executions'),
      ]),
    );
    const final = await deliveriesOf(tenantId);
    expect(final.map((d) => d.status)).toEqual(['delivered', 'delivered']);
    expect(final.map((d) => d.attempts).sort()).toEqual([2, 3]);
    expect(final.every((d) => d.delivered_at instanceof Date && d.next_attempt_at === null)).toBe(
      true,
    );
  });

  it.each([
    ['never reaches the database', dropRequest],
    [
      'is answered 503 by the gateway',
      async () => new Response('upstream unavailable', { status: 503 }),
    ],
  ] as const)(
    'a Slack post whose recording %s is recorded on a retry and never posted again',
    async (_, fault) => {
      const { source, tenantId } = await meteredTenant({ quota: 10 });
      const slack = fakeSlack();
      await addChannel('slack', slack.url, tenantId);
      await ingest(source, 8); // 80 %: one alert, one delivery
      const db = faultyDb(
        rpcFetch((call, send) =>
          call.fn === 'finish_alert_delivery' && call.indexOfFn === 1 ? fault(call) : send(),
        ),
      );
      const first = await succeeded(
        deliverAlerts({ db, channels, log: silentLogger, tenantIds: [tenantId] }),
      );
      expect(first).toMatchObject({ claimed: 1, delivered: 1 });
      expect(await deliveriesOf(tenantId)).toEqual([
        expect.objectContaining({ status: 'delivered', attempts: 1 }),
      ]);

      // Had the outcome stayed unrecorded, the next run after the lease would post again.
      await superuser().query(
        `update public.alert_deliveries d set lease_expires_at = now() - interval '1 second'
         from public.usage_alerts a where a.id = d.alert_id and a.tenant_id = $1`,
        [tenantId],
      );
      expect(await deliver(tenantId)).toMatchObject({ claimed: 0 });
      expect(slack.requests.map((r) => r.status)).toEqual([200]);
    },
  );

  it('a claim that never reaches the database is the run’s unavailable failure; nothing is sent', async () => {
    const { source, tenantId } = await meteredTenant({ quota: 10 });
    const slack = fakeSlack();
    await addChannel('slack', slack.url, tenantId);
    await ingest(source, 8);
    const db = faultyDb(
      rpcFetch((call, send) => (call.fn === 'claim_alert_deliveries' ? dropRequest(call) : send())),
    );
    const run = await deliverAlerts({ db, channels, log: silentLogger, tenantIds: [tenantId] });
    expect(run).toMatchObject({
      ok: false,
      error: {
        code: 'unavailable',
        message: expect.stringMatching(/^claim_alert_deliveries failed: .*fetch failed/),
      },
    });
    expect(slack.requests).toEqual([]);
    expect(await deliveriesOf(tenantId)).toEqual([
      expect.objectContaining({ status: 'pending', attempts: 0 }),
    ]);
  });

  it('e-mail goes through Resend with the delivery key as Idempotency-Key, the same on a retry', async () => {
    const { source, tenantId } = await meteredTenant({ quota: 10 });
    const address = `${uniqueId('ops')}@tenant.test`;
    await addChannel('email', address, tenantId);
    await ingest(source, 8);

    resend.lost = 1; // Resend accepts the first request but its answer never arrives
    const first = await deliver(tenantId);
    expect(first.failed).toBeGreaterThanOrEqual(1);
    await backoffElapses(tenantId);
    await deliver(tenantId);
    await deliver(tenantId);

    const [delivery] = await deliveriesOf(tenantId);
    expect(delivery).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(delivery.last_error).toBeNull();
    const requests = resend.to(address);
    expect(requests.map((r) => r.answered)).toEqual(['lost', 'ok']);
    for (const request of requests) {
      expect(request.idempotencyKey).toBe(delivery.delivery_key);
      expect(request.authorization).toBe(`Bearer ${RESEND_KEY}`);
    }
    expect(delivery.delivery_key).toMatch(/^flowmeter-alert-\d+-\d+$/);
    // Resend de-duplicates only identical requests: the retry must carry the same payload.
    expect(requests[1]?.body).toEqual(requests[0]?.body);
    expect(requests[0]?.body).toMatchObject({
      from: FROM,
      to: [address],
      subject: expect.stringContaining('has used 80 % of the executions included in its plan'),
      text: expect.stringContaining('Used: 8 of 10 executions (80 %)'),
    });
  });

  it('draining sends everything due in claims small enough to finish within their lease', async () => {
    const thresholds = Array.from({ length: 12 }, (_, i) => (i + 1) * 10);
    const { source, tenantId } = await meteredTenant({ quota: 10, thresholds });
    const slack = fakeSlack();
    await addChannel('slack', slack.url, tenantId);
    await ingest(source, 12); // 120 %: every threshold crossed, one delivery each

    const claims: number[] = [];
    const db = faultyDb(
      rpcFetch(async (call, send) => {
        const response = await send();
        if (call.fn === 'claim_alert_deliveries') {
          claims.push(((await response.clone().json()) as unknown[]).length);
        }
        return response;
      }),
    );
    // 50 s of lease fit five 8-second sends on one channel, with a margin.
    const summary = await succeeded(
      drainAlerts({ db, channels, log: silentLogger, tenantIds: [tenantId], leaseSeconds: 50 }),
    );
    expect(summary).toEqual({ claimed: 12, delivered: 12, failed: 0, gaveUp: 0, deferred: 0 });
    expect(claims).toEqual([5, 5, 2, 0]);
    expect(slack.requests.map((r) => r.status)).toEqual(Array(12).fill(200));
  });

  it('deliveries a run had no time to send go back unsent, their attempt not counted, the last one included', async () => {
    const thresholds = [20, 40, 60];
    const { source, tenantId } = await meteredTenant({ quota: 10, thresholds });
    const slack = fakeSlack();
    await addChannel('slack', slack.url, tenantId);
    await ingest(source, 6);
    const mine = 'alert_id in (select id from public.usage_alerts where tenant_id = $1)';
    // One of them is on its last allowed attempt (9 failed, due now).
    await superuser().query(
      `update public.alert_deliveries set attempts = 9, status = 'failed', next_attempt_at = now()
       where ${mine} and alert_id = (select min(id) from public.usage_alerts where tenant_id = $1)`,
      [tenantId],
    );
    const attempts = async () =>
      (
        await superuser().query(
          `select attempts, status, lease_expires_at is null as unleased
           from public.alert_deliveries where ${mine} order by alert_id`,
          [tenantId],
        )
      ).rows;

    const late = await succeeded(
      deliverAlerts({
        db: serviceClient(),
        channels,
        log: silentLogger,
        tenantIds: [tenantId],
        startBy: Date.now() - 1,
      }),
    );
    expect(late).toEqual({ claimed: 3, delivered: 0, failed: 0, gaveUp: 0, deferred: 3 });
    expect(slack.requests).toEqual([]);
    expect(await attempts()).toEqual([
      { attempts: 9, status: 'failed', unleased: true },
      { attempts: 0, status: 'pending', unleased: true },
      { attempts: 0, status: 'pending', unleased: true },
    ]);

    // Due at once: the next run sends each, the last-attempt one too.
    const next = await succeeded(
      deliverAlerts({ db: serviceClient(), channels, log: silentLogger, tenantIds: [tenantId] }),
    );
    expect(next).toMatchObject({ claimed: 3, delivered: 3, deferred: 0 });
    expect(slack.requests).toHaveLength(3);
  });

  describe('a hand-back or an outcome the database did not answer: repeated, and only for its own claim', () => {
    async function deferredDeliveries(thresholds: number[]) {
      const { source, tenantId } = await meteredTenant({ quota: 10, thresholds });
      const slack = fakeSlack();
      await addChannel('slack', slack.url, tenantId);
      await ingest(source, 6);
      const rows = async () =>
        (
          await superuser().query(
            `select d.attempts, d.status, d.lease_expires_at
             from public.alert_deliveries d join public.usage_alerts a on a.id = d.alert_id
             where a.tenant_id = $1 order by d.alert_id`,
            [tenantId],
          )
        ).rows as Array<{ attempts: number; status: string; lease_expires_at: Date | null }>;
      const lateRun = (db: ReturnType<typeof faultyDb>) =>
        succeeded(
          deliverAlerts({ db, channels, log: silentLogger, tenantIds: [tenantId], startBy: 0 }),
        );
      return { tenantId, slack, rows, lateRun };
    }

    it('a give-back that never reached the database is tried again: nothing sent, no attempt counted', async () => {
      const t = await deferredDeliveries([20, 40]);
      const db = faultyDb(
        rpcFetch((call, send) =>
          call.fn === 'return_alert_deliveries' && call.indexOfFn === 1
            ? dropRequest(call)
            : send(),
        ),
      );
      expect(await t.lateRun(db)).toMatchObject({ claimed: 2, deferred: 2 });
      expect(await t.rows()).toEqual([
        { attempts: 0, status: 'pending', lease_expires_at: null },
        { attempts: 0, status: 'pending', lease_expires_at: null },
      ]);
      expect(t.slack.requests).toEqual([]);
    });

    type Claim = Array<{ attempt: number; lease_expires_at: string }>;

    /**
     * A client whose first `fn` call is applied and its answer lost; before that answer
     * would have come, another sender claims the tenant's delivery (after `meanwhile`).
     */
    function claimedElsewhereAfterLostAnswer(
      fn: string,
      tenantId: string,
      meanwhile: () => Promise<unknown> = async () => {},
    ) {
      const other: { claim: Claim } = { claim: [] };
      const db = faultyDb(
        rpcFetch(async (call, send) => {
          if (call.fn !== fn || call.indexOfFn !== 1) return send();
          return loseResponse(call, async () => {
            const response = await send();
            await meanwhile();
            const claimed = await serviceClient().rpc('claim_alert_deliveries', {
              tenant_ids: [tenantId],
            });
            other.claim = claimed.data ?? [];
            return response;
          });
        }),
      );
      return { db, other };
    }

    /** Still the other sender's: sending under its claim's lease, its attempts counted once. */
    async function expectStillClaimed(
      rows: () => Promise<
        Array<{ attempts: number; status: string; lease_expires_at: Date | null }>
      >,
      claim: Claim,
      attempts: number,
    ) {
      expect(claim).toMatchObject([{ attempt: attempts }]);
      const [row] = await rows();
      expect(row).toMatchObject({ attempts, status: 'sending' });
      expect(row?.lease_expires_at?.toISOString()).toBe(
        new Date(claim[0]?.lease_expires_at ?? 0).toISOString(),
      );
    }

    it("a give-back repeated after its answer was lost leaves another sender's later claim alone", async () => {
      const t = await deferredDeliveries([20]);
      const { db, other } = claimedElsewhereAfterLostAnswer('return_alert_deliveries', t.tenantId);
      expect(await t.lateRun(db)).toMatchObject({ claimed: 1, deferred: 1 });
      await expectStillClaimed(t.rows, other.claim, 1);
    });

    it("a failure recorded again after its answer was lost leaves another sender's later claim alone", async () => {
      const t = await deferredDeliveries([20]);
      t.slack.failNext(500, 1);
      // Its retry comes due before the other sender claims it.
      const { db, other } = claimedElsewhereAfterLostAnswer(
        'finish_alert_delivery',
        t.tenantId,
        () =>
          superuser().query(
            `update public.alert_deliveries set next_attempt_at = now()
           where alert_id in (select id from public.usage_alerts where tenant_id = $1)`,
            [t.tenantId],
          ),
      );
      expect(
        await succeeded(
          deliverAlerts({ db, channels, log: silentLogger, tenantIds: [t.tenantId] }),
        ),
      ).toMatchObject({ claimed: 1, failed: 1 });
      await expectStillClaimed(t.rows, other.claim, 2);
    });

    it('refuses keys that are not the claimed deliveries with a message, changing nothing', async () => {
      const t = await deferredDeliveries([20]);
      const claimed = await serviceClient().rpc('claim_alert_deliveries', {
        tenant_ids: [t.tenantId],
      });
      const [d] = claimed.data ?? [];
      if (!d) throw new Error('nothing claimed');
      const before = await t.rows();
      for (const keys of [
        {},
        'text',
        [1],
        [{ alert_id: d.alert_id, channel_id: d.channel_id }],
        [{ alert_id: d.alert_id, lease_expires_at: d.lease_expires_at }],
      ]) {
        const { error, status } = await serviceClient().rpc('return_alert_deliveries', { keys });
        expect(status, JSON.stringify(keys)).toBe(400);
        expect(error?.message).toBe(
          'keys must be a JSON array of the claimed deliveries, each its alert_id, channel_id and lease_expires_at',
        );
      }
      const wrongType = await serviceClient().rpc('return_alert_deliveries', {
        keys: [{ alert_id: 'one', channel_id: d.channel_id, lease_expires_at: d.lease_expires_at }],
      });
      expect(wrongType.status).toBe(400);
      // An earlier lease is not this claim's: nothing is handed back.
      const stale = await serviceClient().rpc('return_alert_deliveries', {
        keys: [
          {
            alert_id: d.alert_id,
            channel_id: d.channel_id,
            lease_expires_at: new Date(Date.parse(d.lease_expires_at) - 1).toISOString(),
          },
        ],
      });
      expect(stale).toMatchObject({ data: 0, error: null });
      expect(await t.rows()).toEqual(before);
      const own = await serviceClient().rpc('return_alert_deliveries', {
        keys: [
          { alert_id: d.alert_id, channel_id: d.channel_id, lease_expires_at: d.lease_expires_at },
        ],
      });
      expect(own).toMatchObject({ data: 1, error: null });
      expect(await t.rows()).toEqual([{ attempts: 0, status: 'pending', lease_expires_at: null }]);
    });
  });

  it('deliveries nobody attempts for over two of the sender’s intervals are named in status, not those to a disabled channel', async () => {
    const { source, tenantId } = await meteredTenant({ quota: 10 });
    const slack = fakeSlack();
    const channel = await addChannel('slack', slack.url, tenantId);
    await ingest(source, 8);
    const attentionNow = async () => {
      const status = await operatorStatusOf([tenantId]);
      return { status, attention: needsAttention({ ...status, scheduled_functions: [] }) };
    };
    expect((await attentionNow()).status.alert_deliveries).toMatchObject({ unattempted: 1 });
    expect((await attentionNow()).attention).toEqual([]);

    // As if every deliver-alerts run since had deferred it.
    await superuser().query(
      `update public.alert_deliveries set created_at = now() - interval '1 hour'
       where alert_id in (select id from public.usage_alerts where tenant_id = $1)`,
      [tenantId],
    );
    expect((await attentionNow()).attention).toEqual([
      expect.stringMatching(
        /^1 alert delivery never attempted, the oldest waiting 1 hour: deliver-alerts is not sending them .*`flowmeter alerts deliver` sends them now$/,
      ),
    ]);
    await disableChannel(channel.id);
    expect(await attentionNow()).toMatchObject({
      status: { alert_deliveries: { unattempted: 0, oldest_unattempted_at: null } },
      attention: [],
    });
  });

  it('without a Resend key, e-mail deliveries fail with a clear error and nothing is sent', async () => {
    const { source, tenantId } = await meteredTenant({ quota: 10 });
    const address = `${uniqueId('ops')}@nokey.test`;
    const channel = await addChannel('email', address, tenantId);
    await ingest(source, 8);

    const withoutEmail = alertChannelFactories(loadAlertsConfig(baseEnv));
    expect(withoutEmail.email).toBeUndefined();
    await deliver(tenantId, withoutEmail);

    expect(await deliveriesOf(tenantId)).toEqual([
      expect.objectContaining({ status: 'failed', attempts: 1, last_error: NO_EMAIL_PROVIDER }),
    ]);
    expect(resend.to(address)).toEqual([]);
    await disableChannel(channel.id); // later tests' runs must not pick it up
  });
});

describe('channels and their configuration', () => {
  const message: AlertMessage = {
    tenantId: '7c9e6679-7425-40de-944b-e07fc1f90ae7',
    tenantName: 'Acme',
    planName: 'Pro',
    limitPolicy: 'hard_limit',
    threshold: 80,
    used: 8,
    quota: 10,
    periodStart: new Date('2026-11-01T00:00:00Z'),
    periodEnd: new Date('2026-12-01T00:00:00Z'),
  };

  it('a Slack webhook that does not answer fails after the timeout, without naming the URL', async () => {
    const url = `https://hooks.slack.com/services/T0TEST/B0TEST/${randomBytes(12).toString('hex')}`;
    server.use(
      http.post(url, async () => {
        await delay('infinite');
        return HttpResponse.text('ok');
      }),
    );
    expect(await createSlackChannel({ webhookUrl: url, timeoutMs: 50 }).send(message, 'k')).toEqual(
      fail('upstream_failed', 'Slack did not answer within 50 ms'),
    );
  });

  it('a Slack webhook that cannot be reached fails naming the cause, not the URL', async () => {
    const url = `https://hooks.slack.com/services/T0TEST/B0TEST/${randomBytes(12).toString('hex')}`;
    server.use(http.post(url, () => HttpResponse.error()));
    const sent = await createSlackChannel({ webhookUrl: url }).send(message, 'k');
    expect(sent).toMatchObject({
      ok: false,
      error: {
        code: 'upstream_failed',
        message: expect.stringMatching(/^Slack could not be reached: /),
      },
    });
    expect(JSON.stringify(sent)).not.toContain(url);
  });

  it("Resend's error body becomes a readable error", async () => {
    server.use(
      http.post('https://api.resend.com/emails', ({ request }) =>
        request.headers.get('idempotency-key') === 'bad-from'
          ? HttpResponse.json(
              { statusCode: 403, name: 'validation_error', message: 'The domain is not verified.' },
              { status: 403 },
            )
          : undefined,
      ),
    );
    const channel = createResendEmailChannel({ apiKey: RESEND_KEY, from: FROM, to: 'a@b.test' });
    expect(await channel.send(message, 'bad-from')).toEqual(
      fail('upstream_failed', 'Resend answered 403: validation_error: The domain is not verified.'),
    );
  });

  it('a Resend key needs a sender; a malformed key is refused by name', () => {
    const problems = (env: Record<string, string>) => {
      try {
        loadAlertsConfig({ ...baseEnv, ...env });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        return (error as ConfigError).problems;
      }
      return [];
    };
    expect(problems({ RESEND_API_KEY: RESEND_KEY })).toEqual([
      expect.stringMatching(/^ALERT_EMAIL_FROM is required when RESEND_API_KEY is set/),
    ]);
    expect(problems({ RESEND_API_KEY: 'sk_live_x', ALERT_EMAIL_FROM: FROM })).toEqual([
      expect.stringMatching(/^RESEND_API_KEY must be a Resend API key/),
    ]);
    expect(problems({ RESEND_API_KEY: RESEND_KEY, ALERT_EMAIL_FROM: 'not an address' })).toEqual([
      expect.stringMatching(/^ALERT_EMAIL_FROM must be a sender/),
    ]);
    expect(problems({ ALERT_EMAIL_FROM: 'alerts@example.com' })).toEqual([]);
  });
});

// In-app --------------------------------------------------------------------------------

describe('in-app alerts under row-level security', () => {
  let alertsA: AlertRow[];
  let alertsB: AlertRow[];
  let memberOfA: string;
  let memberOfB: string;

  beforeAll(async () => {
    const a = await meteredTenant({ quota: 10 });
    const b = await meteredTenant({ quota: 10 });
    await Promise.all([ingest(a.source, 10), ingest(b.source, 8)]);
    [memberOfA, memberOfB] = await Promise.all([createUser(), createUser()]);
    await addMember(a.tenantId, memberOfA);
    await addMember(b.tenantId, memberOfB);
    [alertsA, alertsB] = await Promise.all([alertsOf(a.tenantId), alertsOf(b.tenantId)]);
    expect(alertsA).toHaveLength(2);
    expect(alertsB).toHaveLength(1);
  });

  const asUser = <T>(userId: string, fn: (db: pg.PoolClient) => Promise<T>) =>
    asRole('authenticated', { sub: userId }, fn);
  const ids = (rows: Array<{ id: number }>) => rows.map((r) => Number(r.id)).sort();

  it("a member sees their tenant's alerts and no other tenant's", async () => {
    await asUser(memberOfA, async (db) => {
      expect(ids((await db.query('select id from public.usage_alerts')).rows)).toEqual(
        ids(alertsA),
      );
    });
    await asUser(memberOfB, async (db) => {
      expect(ids((await db.query('select id from public.usage_alerts')).rows)).toEqual(
        ids(alertsB),
      );
    });
  });

  it('anon reads nothing, and no tenant user reads channels (webhook URLs) or deliveries', async () => {
    await asRole('anon', {}, async (db) => {
      await expect(db.query('select 1 from public.usage_alerts')).rejects.toMatchObject({
        code: '42501',
      });
    });
    for (const table of ['alert_channels', 'alert_deliveries']) {
      await asUser(memberOfA, async (db) => {
        await expect(db.query(`select 1 from public.${table}`), table).rejects.toMatchObject({
          code: '42501',
        });
      });
    }
  });

  it('a member marks their alert read, once; the timestamp stays on a second call', async () => {
    const [alert] = alertsA as [AlertRow];
    const client = await userClient(memberOfA);
    const first = await client.rpc('mark_alert_read', { alert_id: alert.id });
    expect(first.error).toBeNull();
    expect(first.data).toMatchObject({ id: alert.id, threshold: alert.threshold });
    expect(first.data?.read_at).toEqual(expect.any(String));
    const second = await client.rpc('mark_alert_read', { alert_id: alert.id });
    expect(second.data?.read_at).toBe(first.data?.read_at);
    const other = (await alertsOf((await tenantOfAlert(alert.id)) as string)).find(
      (a) => a.id !== alert.id,
    );
    expect(other?.read_at).toBeNull();
  });

  it("a member cannot mark another tenant's alert: not found, and it stays unread", async () => {
    const [alertOfB] = alertsB as [AlertRow];
    const { data, error, status } = await (await userClient(memberOfA)).rpc('mark_alert_read', {
      alert_id: alertOfB.id,
    });
    expect(status).toBe(404);
    expect(data).toBeNull();
    expect(error?.code).toBe('PT404');
    await asUser(memberOfA, async (db) => {
      const result = await db.query(
        'update public.usage_alerts set read_at = now() where id = $1',
        [alertOfB.id],
      );
      expect(result.rowCount).toBe(0);
    });
    const { rows } = await superuser().query(
      'select read_at from public.usage_alerts where id = $1',
      [alertOfB.id],
    );
    expect(rows[0].read_at).toBeNull();
  });

  it('a member can change read_at only: never the threshold, the usage, the tenant, nor delete or insert', async () => {
    const [, alert] = alertsA as [AlertRow, AlertRow];
    const tenantB = await tenantOfAlert((alertsB[0] as AlertRow).id);
    const statements = [
      `update public.usage_alerts set threshold = 1 where id = ${alert.id}`,
      `update public.usage_alerts set used = 0, quota = 1000000 where id = ${alert.id}`,
      `update public.usage_alerts set read_at = now(), tenant_id = '${tenantB}' where id = ${alert.id}`,
      `delete from public.usage_alerts where id = ${alert.id}`,
      `insert into public.usage_alerts (tenant_id, period_start, period_end, threshold, used, quota)
       select tenant_id, period_start + interval '1 day', period_end, 50, 0, 1 from public.usage_alerts where id = ${alert.id}`,
    ];
    for (const statement of statements) {
      await asUser(memberOfA, async (db) => {
        await expect(db.query(statement), statement).rejects.toMatchObject({ code: '42501' });
      });
    }
    await asUser(memberOfA, async (db) => {
      const result = await db.query(
        'update public.usage_alerts set read_at = now() where id = $1',
        [alert.id],
      );
      expect(result.rowCount).toBe(1);
    });
    const [after] = (
      await superuser().query('select * from public.usage_alerts where id = $1', [alert.id])
    ).rows;
    expect(after).toMatchObject({ threshold: alert.threshold, read_at: null });
  });

  it('the sender functions are service-only; anon cannot mark alerts read', async () => {
    const member = await userClient(memberOfA);
    const claim = await member.rpc('claim_alert_deliveries', {});
    expect(claim.status).toBe(403);
    expect(claim.error?.code).toBe('42501');
    const add = await member.rpc('add_alert_channel', {
      kind: 'slack',
      target: 'https://hooks.slack.com/services/T/B/steal',
    });
    expect(add.error?.code).toBe('42501');
    const anon = await anonClient().rpc('mark_alert_read', {
      alert_id: (alertsA[0] as AlertRow).id,
    });
    expect(anon.status).toBe(401);
    expect(anon.error?.code).toBe('42501');
  });
});

async function tenantOfAlert(alertId: number): Promise<string | undefined> {
  const { rows } = await superuser().query(
    'select tenant_id from public.usage_alerts where id = $1',
    [alertId],
  );
  return rows[0]?.tenant_id;
}
