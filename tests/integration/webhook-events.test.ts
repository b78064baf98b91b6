import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { meteredTenant, recordedCorrection } from '../support/billing.ts';
import {
  addMember,
  addSource,
  createPlan,
  createTenant,
  createUser,
  ingestExecutions,
  memberOf,
  recentRuns,
} from '../support/fixtures.ts';
import { claimSource } from '../support/leases.ts';
import { anonClient, asRole, inTransaction, serviceClient, superuser } from '../support/stack.ts';
import {
  deliver,
  linkedTenant,
  monthFrom,
  nowSeconds,
  subscriptionEvent,
} from '../support/stripe-events.ts';

/**
 * Each webhook event raised by its real cause, on the real database: the function or
 * trigger that changes the state records the event in the same transaction, once per
 * cause however often the cause is repeated.
 */

async function eventsOf(tenantId: string) {
  const { rows } = await superuser().query(
    `select type, idempotency_key, payload, body from public.webhook_events
     where tenant_id = $1 order by created_at, id`,
    [tenantId],
  );
  return rows as {
    type: string;
    idempotency_key: string;
    payload: Record<string, unknown>;
    body: string;
  }[];
}

const typesOf = async (tenantId: string) => (await eventsOf(tenantId)).map((e) => e.type);

async function finishTurn(sourceId: string, failure: string | null, deferral?: 'cut' | 'unworked') {
  const db = serviceClient();
  const { lease_token: lease } = await claimSource(sourceId, {}, db);
  const { error } = await db.rpc('release_collector_sources', {
    source_ids: [sourceId],
    lease_tokens: [lease],
    ...(failure ? { errors: [failure] } : {}),
    ...(deferral ? { deferrals: [deferral] } : {}),
  });
  if (error) throw new Error(error.message);
}

async function pendingReport(billable: number) {
  const { tenantId } = await meteredTenant(billable);
  const { data, error } = await serviceClient().rpc('claim_meter_deltas', {
    tenant_ids: [tenantId],
  });
  if (error || !data?.[0]) throw new Error(`claim_meter_deltas: ${error?.message}`);
  return { tenantId, reportId: data[0].id };
}

/** One outcome of sending the report to Stripe, recorded as the reporter records it. */
const recordOutcome = (
  reportId: number,
  outcome: { outcome: string; error: string; error_kind?: string },
) => serviceClient().rpc('record_meter_report', { id: reportId, ...outcome });

describe('webhook events, each from its cause', () => {
  it('usage.threshold_crossed: one event per alert the collector raises', async () => {
    const tenant = await createTenant((await createPlan({ included_executions: 10 })).id);
    await ingestExecutions(tenant.id, recentRuns(8, 60_000));
    await ingestExecutions(tenant.id, recentRuns(3, 30_000));
    const events = await eventsOf(tenant.id);
    expect(events.map((e) => [e.type, e.payload.threshold])).toEqual([
      ['usage.threshold_crossed', 80],
      ['usage.threshold_crossed', 100],
    ]);
    expect(events[0]?.payload).toMatchObject({
      tenant: { id: tenant.id, external_ref: tenant.external_ref, name: tenant.name },
      used: 8,
      quota: 10,
    });
    expect(events[0]?.payload).not.toHaveProperty('tenant_id');
    expect(JSON.parse(events[0]?.body as string)).toMatchObject({
      type: 'usage.threshold_crossed',
      data: events[0]?.payload,
    });
  });

  it('tenant.blocked: the first block of the period only; dry checks and allowed runs raise nothing', async () => {
    const plan = await createPlan({ included_executions: 2, limit_policy: 'hard_limit' });
    const tenant = await createTenant(plan.id);
    const enforce = (reserve = true) =>
      serviceClient().rpc('enforce_usage', { tenant: tenant.id, reserve });
    expect((await enforce()).data).toMatchObject({ allowed: true });
    expect((await enforce()).data).toMatchObject({ allowed: true });
    expect((await enforce(false)).data).toMatchObject({ allowed: false });
    expect(await typesOf(tenant.id)).toEqual([]);
    for (let i = 0; i < 3; i++) {
      expect((await enforce()).data).toMatchObject({ allowed: false, reason: 'limit_reached' });
    }
    const events = await eventsOf(tenant.id);
    expect(events.map((e) => e.type)).toEqual(['tenant.blocked']);
    expect(events[0]?.payload).toMatchObject({ reason: 'limit_reached', committed: 2, limit: 2 });
  });

  it('source.failing at the first failed turn after a success, source.recovered at the next success', async () => {
    const tenant = await createTenant();
    const sourceId = await addSource(tenant.id, 'https://events.n8n.example.test');
    await finishTurn(sourceId, null);
    await finishTurn(sourceId, 'n8n at https://events.n8n.example.test answered 502');
    await finishTurn(sourceId, 'n8n at https://events.n8n.example.test answered 502');
    await finishTurn(sourceId, null);
    await finishTurn(sourceId, null);
    const events = await eventsOf(tenant.id);
    expect(events.map((e) => e.type)).toEqual(['source.failing', 'source.recovered']);
    expect(events[0]?.payload).toMatchObject({
      source: { id: sourceId, base_url: 'https://events.n8n.example.test' },
      consecutive_failures: 1,
      error: expect.stringMatching(/answered 502/),
    });
    expect(events[1]?.payload).toMatchObject({ consecutive_failures: 0, error: null });
  });

  it('neither at a deferred turn: a failing source whose walk was cut or never started is not recovered', async () => {
    const tenant = await createTenant();
    const sourceId = await addSource(tenant.id, 'https://events.n8n.example.test');
    await finishTurn(sourceId, null);
    await finishTurn(sourceId, 'n8n at https://events.n8n.example.test answered 502');
    await finishTurn(sourceId, null, 'cut');
    await finishTurn(sourceId, null, 'unworked');
    expect(await typesOf(tenant.id)).toEqual(['source.failing']);
    const { rows } = await superuser().query(
      'select consecutive_failures, last_error from public.collector_source_state where source_id = $1',
      [sourceId],
    );
    expect(rows[0]).toMatchObject({
      consecutive_failures: 1,
      last_error: expect.stringMatching(/502/),
    });
  });

  it('collection.gap_recorded: once per gap, however often a walk meets it', async () => {
    const tenant = await createTenant();
    const sourceId = await addSource(tenant.id, 'https://events.n8n.example.test');
    for (let i = 0; i < 2; i++) {
      await superuser().query(
        "select private.record_collection_gaps($1, $2, 'pruned', '{[100,151)}'::int8multirange, 'list ended above the watermark')",
        [sourceId, tenant.id],
      );
    }
    const events = await eventsOf(tenant.id);
    expect(events.map((e) => e.type)).toEqual(['collection.gap_recorded']);
    expect(events[0]?.payload).toMatchObject({
      source_id: sourceId,
      kind: 'pruned',
      from_id: 100,
      to_id: 150,
      detail: 'list ended above the watermark',
    });
  });

  it('meter_report.failed when a report becomes failing (3rd failure), once', async () => {
    const { tenantId, reportId } = await pendingReport(5);
    for (let i = 0; i < 5; i++) {
      await recordOutcome(reportId, {
        outcome: 'failed',
        error: 'Stripe answered 500',
        error_kind: 'unavailable',
      });
      expect((await typesOf(tenantId)).length).toBe(i < 2 ? 0 : 1);
    }
    const [event] = await eventsOf(tenantId);
    expect(event).toMatchObject({ type: 'meter_report.failed' });
    expect(event?.payload).toMatchObject({
      id: reportId,
      attempts: 3,
      value: 5,
      status: 'pending',
    });
  });

  it('meter_report.failed at once when Stripe refuses the key', async () => {
    const { tenantId, reportId } = await pendingReport(2);
    await recordOutcome(reportId, {
      outcome: 'failed',
      error: 'Invalid API Key provided',
      error_kind: 'auth',
    });
    expect(await typesOf(tenantId)).toEqual(['meter_report.failed']);
  });

  it('meter_report.late when a report is found late', async () => {
    const { tenantId, reportId } = await pendingReport(3);
    await recordOutcome(reportId, {
      outcome: 'late',
      error: "the period's invoice is final",
    });
    const [event] = await eventsOf(tenantId);
    expect(event).toMatchObject({ type: 'meter_report.late' });
    expect(event?.payload).toMatchObject({
      id: reportId,
      status: 'late',
      last_error: expect.stringMatching(/final/),
    });
  });

  it('meter_report.review each time a report stops for a check in Stripe, once each time', async () => {
    const { tenantId, reportId } = await pendingReport(4);
    const lost = { outcome: 'failed', error: 'no answer', error_kind: 'unavailable' };
    const held = { outcome: 'review', error: 'an attempt over 23 hours ago had no answer' };
    await recordOutcome(reportId, lost);
    await recordOutcome(reportId, held);
    // Recorded again (a retried run): the report is in review already, nothing new.
    await recordOutcome(reportId, held);
    expect(await typesOf(tenantId)).toEqual(['meter_report.review']);
    const [event] = await eventsOf(tenantId);
    expect(event?.payload).toMatchObject({
      id: reportId,
      status: 'review',
      attempts: 1,
      unknown_outcome: true,
      identifier: expect.stringMatching(/^flowmeter:/),
    });

    // Checked in Stripe: not there. Sent again, lost again, held again: a second event.
    await serviceClient().rpc('resolve_meter_report', { id: reportId, stripe_holds: false });
    await recordOutcome(reportId, lost);
    await recordOutcome(reportId, held);
    const events = await eventsOf(tenantId);
    expect(events.map((e) => [e.type, e.payload.attempts])).toEqual([
      ['meter_report.review', 1],
      ['meter_report.review', 2],
    ]);
    expect(events.map((e) => e.idempotency_key)).toEqual([
      `meter_report.review:${reportId}:1`,
      `meter_report.review:${reportId}:2`,
    ]);
  });

  it('meter_correction.review when a correction stops for a check in Stripe', async () => {
    const { tenantId, reportId } = await pendingReport(6);
    await recordOutcome(reportId, { outcome: 'sent', error: '' });
    const { id } = await recordedCorrection(tenantId, 3, 'webhook event test');
    const outcome = (o: { outcome: string; error?: string; error_kind?: string }) =>
      serviceClient().rpc('record_meter_correction_outcome', { id, ...o });
    await outcome({ outcome: 'failed', error: 'no answer', error_kind: 'unavailable' });
    expect(await typesOf(tenantId)).toEqual([]);
    await outcome({ outcome: 'review', error: "Stripe's answer was lost over a day ago" });
    const [event] = await eventsOf(tenantId);
    expect(event).toMatchObject({
      type: 'meter_correction.review',
      idempotency_key: `meter_correction.review:${id}:1`,
    });
    expect(event?.payload).toMatchObject({
      id,
      status: 'review',
      delta: 3,
      method: 'meter_event',
      reason: 'webhook event test',
      last_error: expect.stringMatching(/lost over a day ago/),
    });
  });

  it('reconciliation.drift_found for every finding recorded', async () => {
    const tenant = await createTenant();
    const { error } = await serviceClient().rpc('record_reconciliation_finding', {
      kind: 'stripe_drift',
      tenant_id: tenant.id,
      period_start: '2026-11-01T00:00:00Z',
      expected: 120,
      actual: 100,
      detail: 'Stripe holds 100, flowmeter reported 120',
    });
    expect(error).toBeNull();
    const [event] = await eventsOf(tenant.id);
    expect(event).toMatchObject({ type: 'reconciliation.drift_found' });
    expect(event?.payload).toMatchObject({ kind: 'stripe_drift', expected: 120, actual: 100 });
  });

  it('subscription.changed from a Stripe event, not again when Stripe re-sends it', async () => {
    const { tenant, customer, pro, proPrice, subscription } = await linkedTenant();
    const event = subscriptionEvent('customer.subscription.created', {
      id: subscription,
      customer,
      items: [{ price: proPrice, ...monthFrom(nowSeconds()) }],
    });
    expect((await deliver(event)).status).toBe(200);
    expect((await deliver(event)).status).toBe(200);
    const events = await eventsOf(tenant.id);
    expect(events.map((e) => e.type)).toEqual(['subscription.changed']);
    expect(events[0]?.payload).toMatchObject({
      stripe_subscription_id: subscription,
      plan_id: pro.id,
      status: 'active',
      previous: { status: 'none', plan_id: tenant.plan_id },
    });
  });

  it('an event is undone with its cause: a rolled-back change leaves no event', async () => {
    const tenant = await createTenant();
    // Rolled back when done.
    await inTransaction((client) =>
      client.query(
        `insert into public.reconciliation_findings (kind, tenant_id, period_start, expected, actual)
         values ('counter_drift', $1, now(), 1, 2)`,
        [tenant.id],
      ),
    );
    expect(await typesOf(tenant.id)).toEqual([]);
  });

  it('an event is written once: not even the service role may change its body', async () => {
    const tenant = await createTenant();
    await serviceClient().rpc('record_reconciliation_finding', {
      kind: 'stripe_drift',
      tenant_id: tenant.id,
      period_start: '2026-11-01T00:00:00Z',
      expected: 1,
      actual: 0,
      detail: 'x',
    });
    const refused = await asRole('service_role', {}, (c) =>
      c
        .query("update public.webhook_events set body = '{}' where tenant_id = $1", [tenant.id])
        .catch((e: Error) => e),
    );
    expect(refused).toBeInstanceOf(Error);
    expect((refused as Error).message).toMatch(/permission denied/);
  });
});

describe('webhook retention', () => {
  it('prune_history deletes old events whose deliveries are over, never one still to be sent', async () => {
    const receiver = await serviceClient().rpc('add_webhook_endpoint', {
      id: randomUUID(),
      url: 'https://retention.example.test/hook',
      event_types: ['webhook.test'],
      secret_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
    });
    const endpointId = receiver.data?.id as string;
    const record = async (label: string, endpointIds: string[]) => {
      const { data } = await serviceClient().rpc('record_webhook_event', {
        event_type: 'webhook.test',
        idempotency_key: `retention:${label}:${endpointId}`,
        payload: {},
        endpoint_ids: endpointIds,
      });
      return data?.id as string;
    };
    const done = await record('done', []);
    const waiting = await record('waiting', [endpointId]);
    const fresh = await record('fresh', []);
    await superuser().query(
      "update public.webhook_events set created_at = now() - interval '2 years' where id = any ($1)",
      [[done, waiting]],
    );
    const { data, error } = await serviceClient().rpc('prune_history', { retention_months: 3 });
    expect(error).toBeNull();
    expect((data as { webhook_events: number }).webhook_events).toBeGreaterThanOrEqual(1);
    const { rows } = await superuser().query(
      'select id from public.webhook_events where id = any ($1) order by id',
      [[done, waiting, fresh]],
    );
    expect(rows.map((r) => r.id).sort()).toEqual([waiting, fresh].sort());
  });
});

describe('webhook security', () => {
  const tables = [
    'webhook_endpoints',
    'webhook_endpoint_secrets',
    'webhook_events',
    'webhook_deliveries',
  ];

  it.each(['anon', 'authenticated'] as const)('%s reads no webhook table', async (role) => {
    const tenant = await createTenant();
    const user = await createUser();
    await addMember(tenant.id, user);
    for (const table of tables) {
      const outcome = await asRole(role, { sub: user }, (c) =>
        c.query(`select * from public.${table}`).catch((e: Error) => e),
      );
      expect(outcome).toBeInstanceOf(Error);
      expect((outcome as Error).message).toMatch(/permission denied/);
    }
  });

  it('tenant members and anonymous callers cannot call the webhook functions', async () => {
    const tenant = await createTenant();
    const { db: member } = await memberOf(tenant.id);
    for (const client of [member, anonClient()]) {
      const recorded = await client.rpc('record_webhook_event', {
        event_type: 'webhook.test',
        idempotency_key: `security:${tenant.id}`,
        payload: {},
      });
      expect(recorded.error?.code).toBe('42501');
      const listed = await client.rpc('list_webhook_endpoints', {});
      expect(listed.error?.code).toBe('42501');
      const claimed = await client.rpc('claim_webhook_deliveries', {});
      expect(claimed.error?.code).toBe('42501');
    }
  });
});
