import { describe, expect, it } from 'vitest';
import { recordCorrection } from '../../src/billing/record-correction.ts';
import { addUsage, endCorrectionClaims, meteredTenant } from '../support/billing.ts';
import { reporterRun, useStripeServer } from '../support/reporter-runs.ts';
import { succeeded } from '../support/result.ts';
import { serviceClient, superuser } from '../support/stack.ts';
import { attentionAfterRun } from '../support/status.ts';

/**
 * Corrections in a Stripe outage stop as the reports do: at the run's circuit breaker, the
 * rest left unattempted (no failed attempt against them), the step in flight replayed by
 * its idempotency key, and each sent once when Stripe answers again.
 */
const { fakeStripe } = useStripeServer();
const run = reporterRun({ concurrency: 1 });

/** The breaker opens at its fifth failure in a row (volumeThreshold, src/stripe/circuit-breaker.ts). */
const FAILURES_TO_OPEN = 5;

const correct = (tenantId: string, delta: number) =>
  succeeded(
    recordCorrection({
      db: serviceClient(),
      tenantId,
      delta,
      reason: `outage test ${delta}`,
      requestedBy: 'test',
      period: { month: new Date().toISOString().slice(0, 7) },
      finalizationGraceMinutes: 60,
    }),
  ).then((recorded) => recorded.correction);

async function corrections(tenantId: string) {
  const { rows } = await superuser().query(
    `select id::int, identifier, status, attempts, last_error, last_error_kind, unknown_outcome
     from public.meter_corrections where tenant_id = $1 order by id`,
    [tenantId],
  );
  return rows;
}

/**
 * A tenant with 120 executions reported and eight corrections pending: seven of more usage
 * (+1 … +7), then a reduction of 30 that cancels the reported event and re-sends 90. One
 * report-usage run meets Stripe failing every request (500s, and for the fifth correction
 * the answer lost after Stripe took the event), with 4 more executions to report.
 */
async function outage() {
  const stripe = fakeStripe();
  const { tenantId, customer } = await meteredTenant(120);
  expect(await run([tenantId])).toMatchObject({ sent: 1 });
  const more = [];
  for (let delta = 1; delta <= 7; delta += 1) more.push(await correct(tenantId, delta));
  const reduction = await correct(tenantId, -30);
  expect(reduction).toMatchObject({ method: 'cancel', event_value: 90 });
  await addUsage(tenantId, 4);

  const receivedBefore = stripe.received.length;
  stripe.failNext(
    ...Array.from({ length: FAILURES_TO_OPEN - 1 }, () => 'server_error' as const),
    'drop_after',
  );
  stripe.faultEach(() => 'server_error');
  const down = await run([tenantId]);
  stripe.faultEach(undefined);
  return {
    stripe,
    tenantId,
    customer,
    more,
    reduction,
    down,
    sentDuringOutage: stripe.received.slice(receivedBefore),
  };
}

describe('corrections in a Stripe outage', () => {
  it('stop at the breaker: the rest, and the reports, are left unattempted, then each is sent once', async () => {
    const { stripe, tenantId, customer, more, reduction, down, sentDuringOutage } = await outage();

    expect(down.corrections).toMatchObject({
      claimed: 8,
      sent: 0,
      failed: FAILURES_TO_OPEN,
      deferred: 8 - FAILURES_TO_OPEN,
      stoppedBy: 'unavailable',
    });
    // The run's one breaker: the report after them was not sent either.
    expect(down).toMatchObject({ claimed: 1, sent: 0, failed: 0, deferred: 1 });
    const attempted = more.slice(0, FAILURES_TO_OPEN);
    expect(sentDuringOutage.map((r) => r.identifier)).toEqual(attempted.map((c) => c.identifier));
    expect(stripe.adjustmentRequests).toEqual([]);

    const rows = await corrections(tenantId);
    expect(rows.slice(0, FAILURES_TO_OPEN)).toEqual(
      attempted.map((c) =>
        expect.objectContaining({
          id: c.id,
          status: 'pending',
          attempts: 1,
          last_error_kind: 'unavailable',
          unknown_outcome: true,
        }),
      ),
    );
    // Left for the next run: no attempt, no error counted against them.
    expect(rows.slice(FAILURES_TO_OPEN)).toEqual(
      [...more.slice(FAILURES_TO_OPEN), reduction].map((c) =>
        expect.objectContaining({
          id: c.id,
          status: 'pending',
          attempts: 0,
          last_error: null,
          last_error_kind: null,
          unknown_outcome: false,
        }),
      ),
    );
    // The fifth was in flight when the breaker opened: Stripe took it, its answer was lost.
    expect(stripe.accepted.has(attempted[FAILURES_TO_OPEN - 1]?.identifier ?? '')).toBe(true);

    // The next hourly run starts after the stopped run's 5-minute lease on what it left.
    await endCorrectionClaims(tenantId);
    const receivedBefore = stripe.received.length;
    const recovered = await run([tenantId]);
    expect(recovered.corrections).toMatchObject({
      claimed: 8,
      sent: 8,
      failed: 0,
      deferred: 0,
      stoppedBy: null,
    });
    expect(recovered).toMatchObject({ claimed: 1, sent: 1, deferred: 0 });
    expect((await corrections(tenantId)).map((c) => c.status)).toEqual(Array(8).fill('sent'));

    // Each correction's event reached Stripe once; what it received again carried the
    // identifier as its idempotency key.
    const received = stripe.received.slice(receivedBefore);
    for (const c of [...more, reduction]) {
      expect(received.filter((r) => r.identifier === c.identifier)).toEqual([
        { identifier: c.identifier, value: String(c.event_value), idempotencyKey: c.identifier },
      ]);
      expect(stripe.accepted.get(c.identifier)?.value).toBe(c.event_value);
    }
    expect(stripe.adjustmentRequests).toEqual([reduction.cancels_identifier]);
    expect(stripe.conflicts).toEqual([]);
    // 120 reported and cancelled, 90 re-sent, 1 + … + 7 more, and the 4 reported after.
    expect(stripe.totalFor(customer)).toBe(90 + 28 + 4);
  });

  it('status says the corrections wait for Stripe, not for budget, until a run gets through', async () => {
    const { tenantId, down } = await outage();
    // Waiting longer than the never-sent rule allows.
    await superuser().query(
      "update public.meter_corrections set created_at = created_at - interval '3 hours' where tenant_id = $1",
      [tenantId],
    );
    const findings = await attentionAfterRun([tenantId], 'report-usage', down);
    expect(findings).toContainEqual(
      expect.stringMatching(
        /^8 corrections waiting: report-usage's latest run stopped sending corrections because Stripe kept failing .*status\.stripe\.com.*`flowmeter report`/,
      ),
    );
    expect(findings).not.toContainEqual(expect.stringMatching(/REPORTER_BUDGET_SECONDS/));

    // The next hourly run, after the stopped run's lease.
    await endCorrectionClaims(tenantId);
    const recovered = await run([tenantId]);
    expect(await attentionAfterRun([tenantId], 'report-usage', recovered)).toEqual([]);
  });
});
