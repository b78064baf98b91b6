import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { needsAttention } from '../../src/ops/attention.ts';
import {
  addUsage,
  ledger,
  meteredTenant,
  stripeClient,
  TEST_STRIPE_KEY,
} from '../support/billing.ts';
import { runCliWith } from '../support/cli.ts';
import { reporterRun, useStripeServer } from '../support/reporter-runs.ts';
import { serviceClient, superuser } from '../support/stack.ts';
import { operatorStatusOf, statusEndpoint } from '../support/status.ts';

/**
 * Class: health that tells the truth about billing. Status flags Stripe refusing the key
 * from its first refusal, other failures once a report has failed 3 times (a send cut
 * unanswered at the run's end among them), reports nobody sent for two hourly runs, late
 * usage and rejected webhook events — each with what to do — and a healthy billing is not
 * flagged.
 */
const { fakeStripe } = useStripeServer();
const status = statusEndpoint();

const run = reporterRun({ concurrency: 1 });

/**
 * The status of these tenants' billing, and what it asks a person to do about it. Scheduled
 * runs are not per tenant (other test files add to them), so they are left out.
 */
async function statusOf(tenantIds: string[]) {
  const status = await operatorStatusOf(tenantIds);
  expect(status.stripe_events.rejected).toBe(0);
  const attention = needsAttention({ ...status, scheduled_functions: [] });
  return { reports: status.meter_reports, attention };
}

describe('billing health', () => {
  it('a refused key is flagged from its first refusal, with what to do, and clears once a send succeeds', async () => {
    const stripe = fakeStripe();
    const a = await meteredTenant(3);
    const b = await meteredTenant(4);
    const ids = [a.tenantId, b.tenantId];
    stripe.revokeKey(TEST_STRIPE_KEY);
    const refused = await run(ids);
    // The first refusal stops the run: the other report would fail the same way.
    expect(refused).toMatchObject({ stoppedBy: 'auth', failed: 1, deferred: 1, sent: 0 });

    const flagged = await statusOf(ids);
    expect(flagged.reports).toMatchObject({ auth_failing: true, failing: 0 });
    expect(flagged.reports.auth_error).toMatch(/Invalid API Key/);
    expect(flagged.attention).toContainEqual(
      expect.stringMatching(/^Stripe refuses the API key .*set STRIPE_SECRET_KEY/),
    );

    const response = await status.forTenants(ids);
    expect(response.status).toBe(503);
    const body = (await response.json()) as { needs_attention: string[] };
    expect(body.needs_attention).toContainEqual(
      expect.stringMatching(/Stripe refuses the API key/),
    );

    const cli = await runCliWith(['status', '--tenant', a.tenantId, '--tenant', b.tenantId]);
    expect(cli.code).toBe(EXIT.failed);
    expect(cli.out).toMatch(/Stripe refuses the API key: nothing can be sent/);

    // The operator sets a working key: the next run sends everything and the flag clears.
    fakeStripe();
    expect(await run(ids)).toMatchObject({ sent: 2, failed: 0 });
    const cleared = await statusOf(ids);
    expect(cleared.reports).toMatchObject({ auth_failing: false, pending: 0 });
    expect(cleared.attention).toEqual([]);
  });

  it('flowmeter report stops at a refused key, says what to do and exits 1', async () => {
    const stripe = fakeStripe();
    const { tenantId } = await meteredTenant(2);
    stripe.revokeKey(TEST_STRIPE_KEY);
    const result = await runCliWith(['report', '--tenant', tenantId], {
      env: { STRIPE_SECRET_KEY: TEST_STRIPE_KEY },
    });
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(
      /Stripe refused the API key, so the run stopped: set STRIPE_SECRET_KEY/,
    );
    expect(await ledger(tenantId)).toMatchObject([{ status: 'pending', last_error_kind: 'auth' }]);
  });

  it('other failures are flagged once a report has failed 3 times, not before', async () => {
    const stripe = fakeStripe();
    const { tenantId } = await meteredTenant(5);
    stripe.faultEach(() => 'server_error');
    for (const expected of [0, 0, 1]) {
      expect(await run([tenantId])).toMatchObject({ failed: 1 });
      const { reports, attention } = await statusOf([tenantId]);
      expect(reports).toMatchObject({
        failing: expected,
        auth_failing: false,
        failing_threshold: 3,
      });
      const line = attention.find((a) => a.includes('failed 3 or more times'));
      expect(Boolean(line)).toBe(expected === 1);
    }
    expect(await ledger(tenantId)).toMatchObject([
      { status: 'pending', attempts: 3, last_error_kind: 'unavailable' },
    ]);
    stripe.faultEach(undefined);
    await run([tenantId]);
    expect((await statusOf([tenantId])).attention).toEqual([]);
  });

  it('a report Stripe never answers before the run must end is flagged once cut 3 times', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(5);
    for (const expected of [0, 0, 1]) {
      stripe.failNext('hold_after');
      // The run's cut, not the client's minute-long timeout, ends each wait.
      const cut = await run([tenantId], { cutAfterMs: 200 }, stripeClient(60_000));
      expect(cut).toMatchObject({ failed: 1, sent: 0 });
      stripe.releaseHeld();
      const { reports, attention } = await statusOf([tenantId]);
      expect(reports.failing).toBe(expected);
      const line = attention.find((a) => a.includes('failed 3 or more times'));
      expect(Boolean(line)).toBe(expected === 1);
    }
    await run([tenantId]);
    expect((await statusOf([tenantId])).attention).toEqual([]);
    expect(stripe.totalFor(customer)).toBe(5);
  });

  it('reports nobody sent for over two hourly runs are flagged, and clear once sent', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(6);
    // Claimed into the ledger by a run that sent nothing (its budget ran out first).
    const claimed = await serviceClient().rpc('claim_meter_deltas', {
      max_rows: 100,
      tenant_ids: [tenantId],
    });
    expect(claimed.error).toBeNull();
    const fresh = await statusOf([tenantId]);
    expect(fresh.reports).toMatchObject({ unattempted: 1, pending: 1 });
    expect(fresh.attention).toEqual([]);

    await superuser().query(
      "update public.meter_reports set created_at = now() - interval '3 hours' where tenant_id = $1",
      [tenantId],
    );
    const waiting = await statusOf([tenantId]);
    expect(waiting.attention).toEqual([
      expect.stringMatching(
        /^1 meter report never sent, the oldest waiting 3 hours: report-usage defers them run after run/,
      ),
    ]);

    expect(await run([tenantId])).toMatchObject({ sent: 1 });
    expect(stripe.totalFor(customer)).toBe(6);
    const sent = await statusOf([tenantId]);
    expect(sent.reports).toMatchObject({ unattempted: 0, oldest_unattempted_at: null });
    expect(sent.attention).toEqual([]);
  });

  it('late usage is flagged with what to do', async () => {
    fakeStripe();
    const { tenantId } = await meteredTenant();
    const now = new Date();
    await addUsage(
      tenantId,
      6,
      new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1) - 86400_000),
    );
    await run([tenantId]);
    const { reports, attention } = await statusOf([tenantId]);
    expect(reports).toMatchObject({ late: 1, late_value: 6 });
    expect(attention).toContainEqual(
      expect.stringMatching(/^1 late meter report .*bill the usage by hand/),
    );
  });

  it('a tenant on a metered plan without a Stripe customer is flagged until it is linked, and its usage is reported then', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(7);
    await superuser().query('update public.tenants set stripe_customer_id = null where id = $1', [
      tenantId,
    ]);
    // Nothing fails: the reporter has no customer to report the usage for.
    expect(await run([tenantId])).toMatchObject({ claimed: 0, failed: 0 });
    const unlinked = await statusOf([tenantId]);
    expect(unlinked.reports.unlinked).toMatchObject({
      tenants: 1,
      executions: 7,
      example_tenant_id: tenantId,
    });
    expect(unlinked.attention).toEqual([
      expect.stringMatching(
        /^1 tenant on a plan metered in Stripe has no Stripe customer \(e\.g\. .+\): 7 billable executions not reported to Stripe; link each/,
      ),
    ]);

    await superuser().query('update public.tenants set stripe_customer_id = $2 where id = $1', [
      tenantId,
      customer,
    ]);
    expect(await run([tenantId])).toMatchObject({ sent: 1 });
    expect(stripe.totalFor(customer)).toBe(7);
    expect((await statusOf([tenantId])).attention).toEqual([]);
  });

  it('a healthy billing is not flagged', async () => {
    fakeStripe();
    const { tenantId } = await meteredTenant(2);
    await run([tenantId]);
    const { reports, attention } = await statusOf([tenantId]);
    expect(reports).toMatchObject({ pending: 0, late: 0, failing: 0, auth_failing: false });
    expect(attention).toEqual([]);
  });
});
