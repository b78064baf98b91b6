import { describe, expect, it } from 'vitest';
import { ledger, meteredTenant, reporterTestSettings } from '../support/billing.ts';
import { useN8nServer } from '../support/collector.ts';
import { mulberry32 } from '../support/faults.ts';
import { reporterOnManualClock } from '../support/reporter-runs.ts';
import { serviceClient } from '../support/stack.ts';

/**
 * Class: usage whose invoice finalizes while its report waits. A report claimed on time
 * (pending) can wait through a Stripe outage, a revoked key or a backlog across month end;
 * by the time it is sent its invoice may be final. Such usage is recorded late with the
 * reason, never sent into a closed invoice and recorded as on time, never dropped.
 */
const server = useN8nServer();
const GRACE_MINUTES = reporterTestSettings.finalizationGraceMinutes;

async function claimedOnTime(tenantIds: string[]) {
  const { error } = await serviceClient().rpc('claim_meter_deltas', {
    max_rows: 1000,
    tenant_ids: tenantIds,
  });
  if (error) throw new Error(error.message);
  const [first] = await ledger(tenantIds[0] as string);
  expect(first.status).toBe('pending');
  return (first.period_end as Date).getTime() + GRACE_MINUTES * 60_000;
}

/** A fake Stripe and reporter runs on a manual clock starting at `start`. */
const reporterAt = (start: number) => reporterOnManualClock(server, start, { concurrency: 2 });

describe('late usage decided at send time', () => {
  it('a report claimed on time whose invoice finalized before the send is recorded late, not sent', async () => {
    const { tenantId, customer } = await meteredTenant(9);
    const finalizes = await claimedOnTime([tenantId]);
    // Stripe was unreachable until after month end's invoice finalized.
    const { stripe, run } = reporterAt(finalizes + 60_000);
    const summary = await run([tenantId]);
    expect(summary).toMatchObject({ sent: 0, late: 1, failed: 0 });
    expect(stripe.requests).toBe(0);
    expect(stripe.totalFor(customer)).toBe(0);
    const [row] = await ledger(tenantId);
    expect(row).toMatchObject({ value: 9, status: 'late' });
    expect(row.last_error).toMatch(/invoice for the period ending .* is final/);
  });

  it('a report sent while its invoice is open is sent as before', async () => {
    const { tenantId, customer } = await meteredTenant(4);
    const finalizes = await claimedOnTime([tenantId]);
    const { stripe, run } = reporterAt(finalizes - 10 * 60_000);
    expect(await run([tenantId])).toMatchObject({ sent: 1, late: 0 });
    expect(stripe.totalFor(customer)).toBe(4);
  });

  it.each(Array.from({ length: 20 }, (_, i) => i + 1))(
    'seed %i: a backlog across the finalization boundary — each report is sent before its invoice is final or recorded late; none is lost',
    async (seed) => {
      const random = mulberry32(seed);
      const tenants = await Promise.all(
        Array.from({ length: 3 + Math.floor(random() * 4) }, () =>
          meteredTenant(1 + Math.floor(random() * 50)),
        ),
      );
      const ids = tenants.map((t) => t.tenantId);
      const finalizes = await claimedOnTime(ids);
      // The backlog starts draining shortly before the invoice finalizes; Stripe's rate
      // limiter makes the run wait across the boundary (its first answer asks for one to
      // three minutes), and runs are an uneven few minutes apart.
      const { clock, stripe, run } = reporterAt(finalizes - 30_000 - Math.floor(random() * 60_000));
      stripe.rateLimitNext(1, String(60 + Math.floor(random() * 120)));
      stripe.faultEach(() => (random() < 0.4 ? 'rate_limited' : 'ok'));
      stripe.retryAfter = () => String(1 + Math.floor(random() * 20));
      for (let pass = 0; pass < 3; pass++) {
        await run(ids);
        clock.at += Math.floor(random() * 5 * 60_000);
      }
      // Long after: whatever is still pending is now certainly late.
      clock.at = finalizes + 3600_000;
      stripe.faultEach(undefined);
      await run(ids);

      for (const t of tenants) {
        const rows = await ledger(t.tenantId);
        const billable = rows.reduce((sum, r) => sum + r.value, 0);
        const sent = rows.filter((r) => r.status === 'sent');
        const late = rows.filter((r) => r.status === 'late');
        expect(sent.length + late.length).toBe(rows.length);
        expect(billable).toBe(rows.at(-1)?.reported_through);
        // What Stripe holds is exactly what is recorded as sent; the rest is late, with why.
        expect(stripe.totalFor(t.customer)).toBe(sent.reduce((sum, r) => sum + r.value, 0));
        for (const r of late) expect(r.last_error).toMatch(/not sent/);
      }
      for (const event of stripe.accepted.values()) {
        if (ids.some((id) => event.identifier.startsWith(`flowmeter:${id}:`))) {
          expect(event.acceptedAt).toBeLessThan(finalizes);
        }
      }
      expect(stripe.conflicts).toEqual([]);
    },
  );
});
