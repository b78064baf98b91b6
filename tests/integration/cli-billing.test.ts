import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { ledger } from '../support/billing.ts';
import { FakeTerminal, linkedTenantArgs, meteredPlanArgs, runCliWith } from '../support/cli.ts';
import { collect, createSource } from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { useFakeStripe } from '../support/reporter-runs.ts';
import { superuser, uniqueId } from '../support/stack.ts';

const { server, stripe } = useFakeStripe();

const cli = (args: string[], options: Parameters<typeof runCliWith>[1] = {}) =>
  runCliWith(args, {
    ...options,
    env: { STRIPE_SECRET_KEY: 'sk_test_flowmeterCli', ...options?.env },
  });

const hex = () => randomBytes(6).toString('hex');

/** Set up as an operator would, with the CLI; usage collected from a fake n8n. */
async function meteredTenant(executions: number) {
  const planId = uniqueId('plan');
  const customer = `cus_${hex()}`;
  const plan = await cli(meteredPlanArgs(planId, `mtr_${hex()}`));
  expect(plan.code).toBe(EXIT.ok);
  const added = await cli(linkedTenantArgs(uniqueId('Metered'), planId, customer));
  const tenantId = (JSON.parse(added.out) as { id: string }).id;
  const source = await createSource(server, { tenantId, planId });
  source.fake.addMany(executions, (i) => ({ startedAt: recent(100 - i) }));
  await collect([source]);
  return { tenantId, customer, source };
}

/** What `flowmeter report` changes of each of the tenant's meter reports. */
const reportStates = (tenantId: string) => ledger(tenantId, 'value::int, status, attempts');

describe('flowmeter report', () => {
  it('--dry-run shows what would be sent and sends nothing; then a real run sends it once', async () => {
    const { tenantId, customer } = await meteredTenant(7);
    const requests = stripe.requests;
    const dry = await cli(['report', '--tenant', tenantId, '--dry-run']);
    expect(dry.code).toBe(EXIT.ok);
    expect(dry.out).toMatch(
      new RegExp(`│ flowmeter:${tenantId}:\\d+:7 │ ${customer} │ n8n_executions │ 7`),
    );
    expect(dry.out).toMatch(/1 meter event would be sent/);
    expect(stripe.requests).toBe(requests);
    expect(await reportStates(tenantId)).toEqual([{ value: 7, status: 'pending', attempts: 0 }]);

    const real = await cli(['report', '--tenant', tenantId]);
    expect(real.code).toBe(EXIT.ok);
    expect(real.out).toBe('1 pending: 1 sent, 0 failed, 0 late, 0 deferred');
    expect(real.err).toMatch(/reporting: 1 meter event$/m);
    expect(stripe.totalFor(customer)).toBe(7);
    expect(await reportStates(tenantId)).toEqual([{ value: 7, status: 'sent', attempts: 1 }]);

    const again = await cli(['report', '--tenant', tenantId, '--json']);
    expect(JSON.parse(again.out)).toMatchObject({ dryRun: false, claimed: 0, sent: 0 });
    expect(stripe.totalFor(customer)).toBe(7);
  });

  it('reports resolve records what the operator found in Stripe for a report in review', async () => {
    const { tenantId } = await meteredTenant(3);
    // No answer to the send, nor to stripe-node's two retries of it.
    stripe.failNext('drop_before', 'drop_before', 'drop_before');
    expect((await cli(['report', '--tenant', tenantId])).code).toBe(EXIT.failed);
    // Its answer lost over a day ago (unanswered_since): the next run holds it for review.
    await superuser().query(
      "update public.meter_reports set unanswered_since = unanswered_since - interval '25 hours' where tenant_id = $1",
      [tenantId],
    );
    const held = await cli(['report', '--tenant', tenantId]);
    expect(held.code).toBe(EXIT.failed);
    expect(held.out).toBe('1 pending: 0 sent, 0 failed, 0 late, 1 to check by hand, 0 deferred');
    expect(held.err).toMatch(/flowmeter reports resolve <id> --stripe-has yes\|no/);
    const { rows } = await superuser().query(
      'select id from public.meter_reports where tenant_id = $1',
      [tenantId],
    );
    const id = String(rows[0].id);
    expect((await cli(['reports', 'resolve', id, '--stripe-has', 'maybe'])).code).toBe(EXIT.usage);
    const resolved = await cli(['reports', 'resolve', id, '--stripe-has', 'no']);
    expect(resolved.code).toBe(EXIT.ok);
    expect(resolved.out).toMatch(/pending again; the next report-usage run/);
    expect((await cli(['reports', 'resolve', id, '--stripe-has', 'no'])).code).toBe(EXIT.usage);
    expect((await cli(['report', '--tenant', tenantId])).out).toBe(
      '1 pending: 1 sent, 0 failed, 0 late, 0 deferred',
    );
    expect(await reportStates(tenantId)).toEqual([{ value: 3, status: 'sent', attempts: 2 }]);
  });

  it('exits 1 and says why when Stripe fails; the next run sends the same report', async () => {
    const { tenantId, customer } = await meteredTenant(3);
    stripe.failNext('server_error', 'server_error', 'server_error');
    const failed = await cli(['report', '--tenant', tenantId]);
    expect(failed.code).toBe(EXIT.failed);
    expect(failed.err).toMatch(/meter event not sent: .*Stripe had a problem/);
    expect(failed.err).toMatch(/stay pending and are re-sent, unchanged/);
    expect(await reportStates(tenantId)).toEqual([{ value: 3, status: 'pending', attempts: 1 }]);

    expect((await cli(['report', '--tenant', tenantId])).code).toBe(EXIT.ok);
    expect(stripe.totalFor(customer)).toBe(3);
  });

  it('says the run stopped because Stripe kept failing when its circuit breaker opened, not that time ran out', async () => {
    const tenants = await Promise.all(Array.from({ length: 6 }, () => meteredTenant(1)));
    const ids = tenants.flatMap((t) => ['--tenant', t.tenantId]);
    stripe.faultEach(() => 'server_error');
    try {
      const down = await cli(['report', ...ids], { env: { REPORTER_CONCURRENCY: '1' } });
      expect(down.code).toBe(EXIT.failed);
      expect(down.out).toBe('6 pending: 0 sent, 5 failed, 0 late, 1 deferred');
      expect(down.err).toMatch(
        /Stripe kept failing \(no answer, timeouts or 5xx errors\), so the run stopped sending/,
      );
      expect(down.err).not.toMatch(/REPORTER_BUDGET_SECONDS/);
    } finally {
      stripe.faultEach(undefined);
    }
    const up = await cli(['report', ...ids]);
    expect(up.out).toBe('6 pending: 6 sent, 0 failed, 0 late, 0 deferred');
    for (const t of tenants) expect(stripe.totalFor(t.customer)).toBe(1);
  });

  it('draws a progress bar when stderr is a terminal', async () => {
    const { tenantId } = await meteredTenant(2);
    const terminal = new FakeTerminal();
    const result = await cli(['report', '--tenant', tenantId], { stderr: terminal });
    expect(result.code).toBe(EXIT.ok);
    expect(terminal.text).toMatch(/reporting \[█+\] 1\/1 meter event /);
    expect(result.err).toBe('');
  });

  it('exits 2 without STRIPE_SECRET_KEY unless --dry-run, recording nothing', async () => {
    const { tenantId } = await meteredTenant(2);
    const result = await cli(['report', '--tenant', tenantId], {
      env: { STRIPE_SECRET_KEY: undefined },
    });
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/STRIPE_SECRET_KEY is not set.*--dry-run/);
    expect(await reportStates(tenantId)).toEqual([]);
  });

  it('exits 2 for an unknown tenant, and 3 when the database cannot be reached', async () => {
    const unknown = await cli(['report', '--tenant', 'no-such-tenant']);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toMatch(/`flowmeter tenants list` shows them/);
    const down = await cli(['report', '--tenant', 'x'], {
      env: { SUPABASE_URL: 'http://127.0.0.1:9' },
    });
    expect(down.code).toBe(EXIT.unavailable);
  });
});

describe('flowmeter reconcile', () => {
  it('reports counter drift (exit 1), repairs it with --repair, then finds nothing', async () => {
    const { tenantId } = await meteredTenant(10);
    await superuser().query(
      'update public.usage_counters set billable = billable + 2, billable_success = billable_success + 2, executions = executions + 2 where tenant_id = $1',
      [tenantId],
    );
    const found = await cli(['reconcile', '--tenant', tenantId]);
    expect(found.code).toBe(EXIT.failed);
    expect(found.out).toMatch(
      new RegExp(`│ counter_drift │ ${tenantId} │ .* │ 10\\s+│ 12\\s+│ no `),
    );
    expect(found.err).toMatch(/--repair/);

    const repaired = await cli(['reconcile', '--tenant', tenantId, '--repair', '--json']);
    expect(repaired.code).toBe(EXIT.ok);
    expect(JSON.parse(repaired.out).counterFindings).toMatchObject([
      { expected: 10, actual: 12, repaired: true },
    ]);

    const clean = await cli(['reconcile', '--tenant', tenantId]);
    expect(clean.code).toBe(EXIT.ok);
    expect(clean.out).toMatch(/counters match the raw executions/);
  });

  it("compares what was sent with Stripe's summaries, leaving the last hour's for later", async () => {
    const { tenantId } = await meteredTenant(4);
    expect((await cli(['report', '--tenant', tenantId])).code).toBe(EXIT.ok);
    const result = await cli([
      'reconcile',
      '--tenant',
      tenantId,
      '--since',
      '2026-01-01',
      '--json',
    ]);
    expect(result.code).toBe(EXIT.ok);
    expect(JSON.parse(result.out)).toMatchObject({
      since: '2026-01-01T00:00:00.000Z',
      counterFindings: [],
      stripeFindings: [],
      stripeSkipped: 1,
    });
  });

  it.each([
    [['--since', 'yesterday'], /a date like 2026-11-01/],
    [['--since', '2999-01-01'], /must not be in the future/],
    [['--tenant', 'no-such-tenant'], /no tenant has the id or external reference/],
  ])('exits 2 for %j', async (args, message) => {
    const result = await cli(['reconcile', ...args]);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(message);
  });
});
