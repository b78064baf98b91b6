import { describe, expect, it } from 'vitest';
import { needsAttention } from '../../src/ops/attention.ts';
import { meteredTenant, recordedCorrection } from '../support/billing.ts';
import { reporterOnManualClock, reporterRun, useStripeServer } from '../support/reporter-runs.ts';
import { superuser } from '../support/stack.ts';
import { operatorStatusOf } from '../support/status.ts';

const { server, fakeStripe } = useStripeServer();
const run = reporterRun({ concurrency: 1 });

describe('billing health: corrections', () => {
  it('a correction recorded two days ago and never sent to Stripe is flagged', async () => {
    const stripe = fakeStripe();
    const { tenantId, customer } = await meteredTenant(6);
    expect(await run([tenantId])).toMatchObject({ sent: 1 });
    // Recorded (e.g. a reconcile --repair whose run had no time left to send it, or an
    // adjust that died before sending); every report-usage run since ran out of budget
    // before its corrections step, so it was never attempted.
    await recordedCorrection(tenantId);
    await superuser().query(
      "update public.meter_corrections set created_at = now() - interval '2 days' where tenant_id = $1",
      [tenantId],
    );
    expect(stripe.totalFor(customer)).toBe(6);

    const status = await operatorStatusOf([tenantId]);
    expect(status.meter_reports.corrections).toMatchObject({ pending: 1, unattempted: 1 });
    const attention = needsAttention({ ...status, scheduled_functions: [] });
    // Stripe still bills 6 of 11 executions two days on; status should say so.
    expect(attention).toContainEqual(
      expect.stringMatching(
        /^1 correction never sent, the oldest waiting 2 days: .*flowmeter report/,
      ),
    );
  });

  it('a report backlog that takes the whole budget does not keep corrections from Stripe', async () => {
    const {
      clock,
      stripe,
      run: runOnClock,
    } = reporterOnManualClock(server, Date.now(), {
      concurrency: 1,
      budgetMs: 4000,
    });
    const { tenantId, customer } = await meteredTenant(6);
    expect(await runOnClock([tenantId])).toMatchObject({ sent: 1 });
    const correction = await recordedCorrection(tenantId);
    // Eight tenants' usage waiting to be reported, each send taking a second of the budget.
    const backlog = await Promise.all(Array.from({ length: 8 }, () => meteredTenant(3)));
    const tick = ({ request }: { request: Request }) => {
      if (new URL(request.url).pathname === '/v1/billing/meter_events') clock.at += 1000;
    };
    server.events.on('request:start', tick);
    try {
      const summary = await runOnClock([tenantId, ...backlog.map((t) => t.tenantId)]);
      expect(summary.deferred).toBeGreaterThan(0);
      expect(summary.corrections).toMatchObject({ claimed: 1, sent: 1 });
    } finally {
      server.events.removeListener('request:start', tick);
    }
    expect(stripe.accepted.has(correction.identifier)).toBe(true);
    expect(stripe.totalFor(customer)).toBe(11);
  });
});
