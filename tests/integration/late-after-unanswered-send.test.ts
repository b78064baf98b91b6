import { describe, expect, it } from 'vitest';
import { needsAttention } from '../../src/ops/attention.ts';
import { ledger, meteredTenant, reporterTestSettings } from '../support/billing.ts';
import { useN8nServer } from '../support/collector.ts';
import { reporterOnManualClock } from '../support/reporter-runs.ts';
import { serviceClient, superuser } from '../support/stack.ts';
import { operatorStatusOf } from '../support/status.ts';

const server = useN8nServer();
const GRACE_MINUTES = reporterTestSettings.finalizationGraceMinutes;

/**
 * A tenant's `billable` executions claimed into one report, and reporter runs on a clock ten
 * minutes before that report's invoice finalizes.
 */
async function claimedBeforeFinalization(billable: number) {
  const { tenantId, customer } = await meteredTenant(billable);
  await serviceClient().rpc('claim_meter_deltas', { max_rows: 1000, tenant_ids: [tenantId] });
  const [claimed] = await ledger(tenantId);
  const finalizes = (claimed.period_end as Date).getTime() + GRACE_MINUTES * 60_000;
  const reporter = reporterOnManualClock(server, finalizes - 10 * 60_000, {});
  return { tenantId, customer, identifier: claimed.identifier as string, finalizes, ...reporter };
}

describe('late usage decided at send time, after a send whose answer was lost', () => {
  it('a report Stripe may have taken before the invoice finalized is not recorded as plainly late (not billed)', async () => {
    // The last run before the invoice finalizes: Stripe takes the event, its answer is lost.
    const { tenantId, customer, identifier, finalizes, clock, stripe, run } =
      await claimedBeforeFinalization(9);
    stripe.failNext('drop_after');
    expect(await run([tenantId])).toMatchObject({ failed: 1 });
    expect(stripe.totalFor(customer)).toBe(9);

    // The next run comes after the finalization: nothing is sent into the closed invoice,
    // and the ledger cannot tell whether Stripe billed the report.
    clock.at = finalizes + 60_000;
    expect(await run([tenantId])).toMatchObject({ late: 1, sent: 0 });
    expect(stripe.totalFor(customer)).toBe(9);
    const { rows } = await superuser().query(
      'select status, unknown_outcome, last_error from public.meter_reports where tenant_id = $1',
      [tenantId],
    );
    expect(rows).toEqual([
      {
        status: 'late',
        unknown_outcome: true,
        last_error: expect.stringMatching(
          new RegExp(
            `outcome unknown: .*check the meter's events in Stripe for identifier ${identifier} before billing it by hand$`,
          ),
        ),
      },
    ]);

    // docs/billing.md: a plain late report is "not billed; bill the usage by hand" — this one
    // Stripe billed, so status says to check Stripe first instead.
    const status = await operatorStatusOf([tenantId]);
    expect(status.meter_reports).toMatchObject({ late: 1, late_unknown: 1, late_unknown_value: 9 });
    const attention = needsAttention({ ...status, scheduled_functions: [] });
    expect(attention).toContainEqual(
      expect.stringMatching(
        /^1 late meter report with outcome unknown .*check Stripe before billing by hand/,
      ),
    );
    expect(attention).not.toContainEqual(
      expect.stringMatching(/not billed; bill the usage by hand/),
    );
  });

  it('a report whose earlier attempt Stripe refused (an answer) is late and not billed, as before', async () => {
    const { tenantId, customer, finalizes, clock, stripe, run } =
      await claimedBeforeFinalization(4);
    stripe.rejectCustomer(customer);
    expect(await run([tenantId])).toMatchObject({ failed: 1 });
    clock.at = finalizes + 60_000;
    expect(await run([tenantId])).toMatchObject({ late: 1 });
    const { rows } = await superuser().query(
      'select status, unknown_outcome from public.meter_reports where tenant_id = $1',
      [tenantId],
    );
    expect(rows).toEqual([{ status: 'late', unknown_outcome: false }]);
  });
});
