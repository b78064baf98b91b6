import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { needsAttention } from '../../src/ops/attention.ts';
import { ledger, manualClock, meteredTenant, stripeClient } from '../support/billing.ts';
import { runCliWith } from '../support/cli.ts';
import { useN8nServer } from '../support/collector.ts';
import { FakeStripe } from '../support/fake-stripe.ts';
import { reporterRun } from '../support/reporter-runs.ts';
import { serviceClient, superuser } from '../support/stack.ts';
import { operatorStatusOf } from '../support/status.ts';

const server = useN8nServer();
const DAY_MS = 24 * 3600_000;

const report = reporterRun({});
/** A reporter run over this tenant, with this Stripe key. */
const run = (tenantId: string, key: string) => report([tenantId], {}, stripeClient(400, key));

/**
 * A report sent once without an answer (`fault`), then held back by a rolled key until a
 * day and more has passed, as far as flowmeter's ledger and Stripe's memory go: Stripe
 * de-duplicates identifiers (and keeps idempotency keys) for at least 24 hours, not for ever
 * (stripe-node's MeterEventCreateParams.identifier).
 */
async function unansweredADayAgo(fault: 'drop_after' | 'drop_before') {
  const clock = manualClock(Date.now());
  const stripe = new FakeStripe({ now: clock.now, identifierWindowMs: DAY_MS });
  server.use(...stripe.handlers());
  const { tenantId, customer } = await meteredTenant(4);
  stripe.failNext(fault);
  expect(await run(tenantId, 'sk_test_oldkey')).toMatchObject({ failed: 1 });
  // Then the key is rolled: every hourly run stops at Stripe's 401.
  stripe.revokeKey('sk_test_oldkey');
  expect(await run(tenantId, 'sk_test_oldkey')).toMatchObject({ stoppedBy: 'auth' });
  // A day and more later the operator sets the new key.
  await superuser().query(
    `update public.meter_reports set created_at = created_at - interval '26 hours',
       last_attempt_at = last_attempt_at - interval '25 hours',
       unanswered_since = unanswered_since - interval '25 hours' where tenant_id = $1`,
    [tenantId],
  );
  clock.at += 25 * 3600_000;
  stripe.forgetIdempotencyKeys();
  return { stripe, tenantId, customer };
}

const reports = (tenantId: string) => ledger(tenantId, 'id, status, last_error');

describe('reporter: a send whose answer was lost, retried after Stripe may have forgotten it', () => {
  it('does not bill the same report twice once Stripe no longer de-duplicates its identifier', async () => {
    const { stripe, tenantId, customer } = await unansweredADayAgo('drop_after');
    expect(stripe.totalFor(customer)).toBe(4);

    expect(await run(tenantId, 'sk_test_newkey')).toMatchObject({ review: 1, sent: 0 });
    // 4 executions, billed once.
    expect(stripe.totalFor(customer)).toBe(4);
    const [row] = await reports(tenantId);
    expect(row).toMatchObject({
      status: 'review',
      last_error: expect.stringMatching(
        /Stripe may no longer recognise identifier .* --stripe-has yes\|no`$/,
      ),
    });
    // Status says what to do; the next runs send nothing for it meanwhile.
    const before = await operatorStatusOf([tenantId]);
    expect(before.meter_reports).toMatchObject({ review: 1 });
    expect(needsAttention({ ...before, scheduled_functions: [] })).toContainEqual(
      expect.stringMatching(
        /^1 meter report to check by hand: .*`flowmeter reports list --status review` lists them with their identifiers.*flowmeter reports resolve <id> --stripe-has yes\|no/,
      ),
    );
    // The CLI lists it with the identifier to look up in Stripe, and only it.
    const inReview = (...more: string[]) =>
      runCliWith(['reports', 'list', '--tenant', tenantId, '--status', 'review', ...more]);
    const listed = await inReview();
    expect(listed.code).toBe(EXIT.ok);
    const [identifier] = (await ledger(tenantId, 'identifier')).map((r) => r.identifier);
    expect(listed.out).toMatch(
      new RegExp(
        `│ ${row.id}\\s+│ ${tenantId} │.*│ review \\(outcome unknown\\)\\s+│ \\d+\\s+│ ${identifier} │`,
      ),
    );
    expect(listed.err).toContain('flowmeter reports resolve <id> --stripe-has yes|no');
    const json = await inReview('--json');
    expect(JSON.parse(json.out)).toEqual([
      expect.objectContaining({ id: Number(row.id), identifier, status: 'review' }),
    ]);
    const sent = await runCliWith(['reports', 'list', '--tenant', tenantId, '--status', 'sent']);
    expect(sent.out).toBe('No meter reports sent.');
    const bad = await runCliWith(['reports', 'list', '--status', 'lost']);
    expect(bad.code).toBe(EXIT.usage);
    expect(bad.err).toMatch(/--status.*must be pending, sent, late or review/);
    expect(await run(tenantId, 'sk_test_newkey')).toMatchObject({ claimed: 0 });

    // The operator finds the event among the meter's events: it was billed.
    const { error } = await serviceClient().rpc('resolve_meter_report', {
      id: row.id,
      stripe_holds: true,
    });
    expect(error).toBeNull();
    expect((await reports(tenantId))[0]).toMatchObject({ status: 'sent', last_error: null });
    expect(await run(tenantId, 'sk_test_newkey')).toMatchObject({ claimed: 0 });
    expect(stripe.totalFor(customer)).toBe(4);
    expect((await operatorStatusOf([tenantId])).meter_reports).toMatchObject({
      review: 0,
      pending: 0,
    });
  });

  it('one Stripe never took is sent once the operator says so', async () => {
    const { stripe, tenantId, customer } = await unansweredADayAgo('drop_before');
    expect(await run(tenantId, 'sk_test_newkey')).toMatchObject({ review: 1 });
    expect(stripe.totalFor(customer)).toBe(0);
    const [row] = await reports(tenantId);
    const { error } = await serviceClient().rpc('resolve_meter_report', {
      id: row.id,
      stripe_holds: false,
    });
    expect(error).toBeNull();
    expect(await run(tenantId, 'sk_test_newkey')).toMatchObject({ sent: 1 });
    expect(stripe.totalFor(customer)).toBe(4);
    // Only a report in review can be resolved.
    const again = await serviceClient().rpc('resolve_meter_report', {
      id: row.id,
      stripe_holds: false,
    });
    expect(again.error?.message).toMatch(/is not waiting for a check in Stripe/);
  });
});
