import { describe, expect, it } from 'vitest';
import { ledger, meteredTenant } from '../support/billing.ts';
import { useN8nServer } from '../support/collector.ts';
import { reporterOnManualClock } from '../support/reporter-runs.ts';

/**
 * Class: Stripe's rate limit. stripe-node does not retry a 429, so the reporter waits as
 * long as Stripe's Retry-After asks, within the run's budget, and re-sends the same
 * identifier and value; a rate-limited run does not leave its backlog for the next hour.
 * The run's clock and sleep are injected: nothing here sleeps for real.
 */
const server = useN8nServer();

const setup = () => reporterOnManualClock(server, Date.now(), { concurrency: 3 });

describe('429 and Retry-After', () => {
  it('waits as long as Retry-After says and re-sends the same identifier, value and key', async () => {
    const { clock, stripe, run } = setup();
    const { tenantId, customer } = await meteredTenant(7);
    stripe.rateLimitNext(2, '3');
    const summary = await run([tenantId]);
    expect(summary).toMatchObject({ sent: 1, failed: 0, deferred: 0, rateLimited: 2 });
    expect(clock.waits).toEqual([3000, 3000]);
    expect(stripe.totalFor(customer)).toBe(7);
    const [row] = await ledger(tenantId);
    expect(row).toMatchObject({ status: 'sent', attempts: 1 });
    expect(stripe.received).toEqual(
      Array.from({ length: 3 }, () => ({
        identifier: row.identifier,
        value: '7',
        idempotencyKey: row.identifier,
      })),
    );
  });

  it('without Retry-After it waits a second and tries again', async () => {
    const { clock, stripe, run } = setup();
    const { tenantId, customer } = await meteredTenant(2);
    stripe.rateLimitNext(1);
    expect(await run([tenantId])).toMatchObject({ sent: 1, rateLimited: 1 });
    expect(clock.waits).toEqual([1000]);
    expect(stripe.totalFor(customer)).toBe(2);
  });

  it('one 429 pauses every send of the run, and the whole backlog still goes out in that run', async () => {
    const { clock, stripe, run } = setup();
    const tenants = await Promise.all(Array.from({ length: 10 }, (_, i) => meteredTenant(i + 1)));
    stripe.rateLimitNext(3, '2');
    const summary = await run(tenants.map((t) => t.tenantId));
    expect(summary).toMatchObject({ claimed: 10, sent: 10, failed: 0, deferred: 0 });
    // The concurrent sends that met the 429s share one pause instead of each adding its own.
    expect(clock.waits.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(3 * 2000);
    for (const [i, t] of tenants.entries()) expect(stripe.totalFor(t.customer)).toBe(i + 1);
  });

  it('a Retry-After beyond the run’s deadline is not waited for: the report stays pending for the next run', async () => {
    const { clock, stripe, run } = setup();
    const { tenantId, customer } = await meteredTenant(5);
    stripe.rateLimitNext(1, '120');
    const summary = await run([tenantId], { budgetMs: 20_000 });
    expect(summary).toMatchObject({ sent: 0, failed: 1 });
    expect(clock.waits).toEqual([]);
    expect(await ledger(tenantId)).toMatchObject([
      { status: 'pending', attempts: 1, last_error_kind: 'rate_limited' },
    ]);
    clock.at += 120_000;
    expect(await run([tenantId])).toMatchObject({ sent: 1 });
    expect(stripe.totalFor(customer)).toBe(5);
  });

  it('Stripe limiting every answer: a bounded number of tries, then pending, never a lost report', async () => {
    const { stripe, run } = setup();
    const { tenantId } = await meteredTenant(3);
    stripe.rateLimitNext(1000, '1');
    const summary = await run([tenantId]);
    expect(summary).toMatchObject({ sent: 0, failed: 1 });
    expect(stripe.requests).toBeLessThanOrEqual(5);
    expect(await ledger(tenantId)).toMatchObject([{ status: 'pending', value: 3 }]);
  });
});
