import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { meteredTenant } from '../support/billing.ts';
import { runCliWith } from '../support/cli.ts';
import { useFakeStripe } from '../support/reporter-runs.ts';
import { superuser } from '../support/stack.ts';

const { stripe } = useFakeStripe();

const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
  runCliWith(args, { env: { STRIPE_SECRET_KEY: 'sk_test_flowmeterCli', USER: 'ada', ...env } });

const thisMonth = () => new Date().toISOString().slice(0, 7);

/** A metered tenant whose `billable` executions this month were reported with the CLI. */
async function reported(billable: number) {
  const tenant = await meteredTenant(billable);
  expect((await cli(['report', '--tenant', tenant.tenantId])).code).toBe(EXIT.ok);
  expect(stripe.totalFor(tenant.customer)).toBe(billable);
  return tenant;
}

const adjustArgs = (tenantId: string, by: string, reason: string, period = thisMonth()) => [
  'adjust',
  '--tenant',
  tenantId,
  '--period',
  period,
  '--by',
  by,
  '--reason',
  reason,
];

const adjust = (
  tenantId: string,
  by: string,
  reason: string,
  extra: string[] = [],
  env: Record<string, string | undefined> = {},
) => cli([...adjustArgs(tenantId, by, reason), ...extra], env);

/** `corrections resolve`: the answer a person gives after looking in Stripe. */
const resolve = (id: number, answer: string, extra: string[] = []) =>
  cli(['corrections', 'resolve', String(id), '--stripe-cancelled', answer, ...extra]);

describe('flowmeter adjust', () => {
  it('records the correction, sends it, and prints what it did; the same command again records nothing', async () => {
    const { tenantId, customer } = await reported(40);
    const done = await adjust(tenantId, '-15', 'test workflow runs');
    expect(done.code).toBe(EXIT.ok);
    expect(done.out).toMatch(/│ executions +│ -15 +│/);
    expect(done.out).toMatch(/│ sent as +│ cancels flowmeter:.+ \(40\), 25 re-sent/);
    expect(done.out).toMatch(/│ status +│ sent +│/);
    expect(done.out).toMatch(/│ requested by +│ flowmeter adjust \(ada\) +│/);
    expect(stripe.totalFor(customer)).toBe(25);

    const again = await adjust(tenantId, '-15', 'test workflow runs', ['--json']);
    expect(again.code).toBe(EXIT.ok);
    expect(JSON.parse(again.out)).toMatchObject({ created: false, correction: { status: 'sent' } });
    expect(stripe.totalFor(customer)).toBe(25);

    const more = await adjust(tenantId, '+5', 'replayed runs', ['--json']);
    expect(JSON.parse(more.out)).toMatchObject({
      created: true,
      correction: { method: 'meter_event', delta: 5, status: 'sent' },
    });
    expect(stripe.totalFor(customer)).toBe(30);

    const listed = await cli(['corrections', 'list', '--tenant', tenantId]);
    expect(listed.code).toBe(EXIT.ok);
    expect(listed.out).toMatch(/│ adjustment │ \+5 +│ meter event of 5 +│ sent +│ replayed runs/);
    expect(listed.out).toMatch(/│ adjustment │ -15 +│ cancels .+│ sent +│ test workflow runs/);
  });

  it.each<[string, string[], RegExp]>([
    ['--by 0', ['--by', '0'], /must not be 0/],
    ['--by that is not a number', ['--by', 'ten'], /whole number of executions/],
    ['--by beyond a billion', ['--by', '-1000000001'], /at most 1,000,000,000/],
    ['an empty --reason', ['--reason', '  '], /must say why/],
    ['a --reason with control characters', ['--reason', 'a\u0007b'], /plain text/],
    ['--period that is not a month', ['--period', '2026-13'], /YYYY-MM/],
    ['--period in the future', ['--period', '2999-01'], /must not be after the current month/],
  ])('refuses %s (exit 2), records nothing', async (_, override, message) => {
    const { tenantId } = await reported(10);
    const args = new Map([
      ['--tenant', tenantId],
      ['--period', thisMonth()],
      ['--by', '-1'],
      ['--reason', 'why'],
    ]);
    args.set(override[0] as string, override[1] as string);
    const refused = await cli(['adjust', ...[...args].flat()]);
    expect(refused.code).toBe(EXIT.usage);
    expect(refused.err).toMatch(message);
    const { rows } = await superuser().query(
      'select count(*)::int as n from public.meter_corrections where tenant_id = $1',
      [tenantId],
    );
    expect(rows[0].n).toBe(0);
  });

  it('refuses an unknown tenant and a period not reported yet, saying what to do', async () => {
    const unknown = await adjust('no-such-tenant', '-1', 'why');
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toMatch(/flowmeter tenants list/);

    const { tenantId } = await meteredTenant(10);
    const notYet = await adjust(tenantId, '-1', 'why');
    expect(notYet.code).toBe(EXIT.usage);
    expect(notYet.err).toMatch(/has not been reported to Stripe yet.*next report-usage run/);

    const noPeriod = await cli(adjustArgs(tenantId, '-1', 'why', '2001-01'));
    expect(noPeriod.code).toBe(EXIT.usage);
    expect(noPeriod.err).toMatch(/0 billing periods of this tenant start in 2001-01/);
  });

  it('Stripe failing: exit 1, the correction stays pending, and `report` sends it later', async () => {
    const { tenantId, customer } = await reported(20);
    // stripe-node tries each request 3 times (2 retries): three runs' worth of 500s.
    stripe.failNext(...Array.from({ length: 9 }, () => 'server_error' as const));
    const failed = await adjust(tenantId, '+3', 'missed runs');
    expect(failed.code).toBe(EXIT.failed);
    expect(failed.out).toMatch(/│ status +│ pending +│/);
    expect(failed.err).toMatch(/stays pending .*flowmeter report/);
    expect(stripe.totalFor(customer)).toBe(20);

    // Two more hourly runs fail the same way: status flags it, with what to do.
    for (let run = 0; run < 2; run += 1) {
      expect((await cli(['report', '--tenant', tenantId])).code).toBe(EXIT.failed);
    }
    const status = await cli(['status', '--tenant', tenantId]);
    expect(status.code).toBe(EXIT.failed);
    expect(status.out + status.err).toMatch(
      /1 correction failed 3 or more times \(latest: Stripe had a problem\): fix what Stripe names/,
    );

    const sent = await cli(['report', '--tenant', tenantId]);
    expect(sent.code).toBe(EXIT.ok);
    expect(sent.out).toMatch(/1 pending correction: 1 sent/);
    expect(stripe.totalFor(customer)).toBe(23);
  });

  it('a correction in review is finished once a person says what Stripe shows', async () => {
    const { tenantId, customer } = await reported(30);
    // Recorded, its cancellation not sent (no key here).
    const first = JSON.parse(
      (await adjust(tenantId, '-30', 'not ours', ['--json'], { STRIPE_SECRET_KEY: undefined })).out,
    );
    const second = JSON.parse((await adjust(tenantId, '+10', 'ours after all', ['--json'])).out);
    const third = JSON.parse(
      (await adjust(tenantId, '-4', 'four more', ['--json'], { STRIPE_SECRET_KEY: undefined })).out,
    );
    expect(third.correction).toMatchObject({ method: 'cancel', event_value: 6 });
    // Stripe did take the third's cancellation; its answer was lost.
    const cancelledEvent = stripe.accepted.get(third.correction.cancels_identifier);
    if (cancelledEvent) cancelledEvent.cancelledAt = Date.now();
    expect(stripe.totalFor(customer)).toBe(30);
    // As a lost answer more than a day old leaves one: Stripe may or may not have cancelled.
    await superuser().query(
      "update public.meter_corrections set status = 'review' where id = any($1::bigint[])",
      [[first.correction.id, third.correction.id]],
    );
    expect(second.correction.status).toBe('sent');

    const notReview = await resolve(second.correction.id, 'no');
    expect(notReview.code).toBe(EXIT.usage);
    expect(notReview.err).toMatch(/is not waiting for a check in Stripe/);
    const bad = await resolve(first.correction.id, 'maybe');
    expect(bad.code).toBe(EXIT.usage);

    // The third was really cancelled: its remainder is re-sent, nothing else.
    const cancelled = await resolve(third.correction.id, 'yes', ['--json']);
    expect(cancelled.code).toBe(EXIT.ok);
    expect(JSON.parse(cancelled.out)).toMatchObject({
      status: 'sent',
      cancel_sent_at: expect.any(String),
    });
    expect(stripe.accepted.get(third.correction.identifier)?.value).toBe(6);
    // The first: Stripe shows its event not cancelled — on a plan without overage nothing was billed.
    const notCancelled = await resolve(first.correction.id, 'no', ['--json']);
    expect(notCancelled.code).toBe(EXIT.ok);
    expect(JSON.parse(notCancelled.out)).toMatchObject({ method: 'none', status: 'recorded' });
    expect(stripe.totalFor(customer)).toBe(36);
  });

  it('a meter event whose answer was lost a day ago is not sent again until a person says whether Stripe holds it', async () => {
    const { tenantId, customer } = await reported(20);
    // Stripe takes the +3 event and the answer is lost.
    stripe.failNext('drop_after', 'drop_after', 'drop_after');
    const lost = await adjust(tenantId, '+3', 'missed runs', ['--json']);
    expect(lost.code).toBe(EXIT.failed);
    const { id, identifier } = JSON.parse(lost.out).correction;
    expect(stripe.totalFor(customer)).toBe(23);
    // A day later (a key rolled, an outage): Stripe need not recognise the identifier now.
    await superuser().query(
      "update public.meter_corrections set first_attempt_at = first_attempt_at - interval '25 hours' where id = $1",
      [id],
    );
    const held = await cli(['report', '--tenant', tenantId, '--json']);
    expect(JSON.parse(held.out).corrections).toMatchObject({ review: 1, sent: 0 });
    expect(stripe.totalFor(customer)).toBe(23);
    const { rows } = await superuser().query(
      'select status, last_error from public.meter_corrections where id = $1',
      [id],
    );
    expect(rows[0]).toMatchObject({
      status: 'review',
      last_error: expect.stringContaining(
        `identifier ${identifier} and a resend could count it twice: check the meter's events in Stripe, then \`flowmeter corrections resolve ${id} --stripe-has yes|no\``,
      ),
    });

    const neither = await cli(['corrections', 'resolve', String(id)]);
    expect(neither.code).toBe(EXIT.usage);
    expect(neither.err).toMatch(
      /give one of --stripe-cancelled yes\|no .* or --stripe-has yes\|no/,
    );
    // Stripe's Dashboard shows the event: recorded sent, nothing sent again.
    const yes = await cli(['corrections', 'resolve', String(id), '--stripe-has', 'yes', '--json']);
    expect(yes.code).toBe(EXIT.ok);
    expect(JSON.parse(yes.out)).toMatchObject({ status: 'sent' });
    expect(stripe.totalFor(customer)).toBe(23);
  });

  it('a meter event Stripe does not hold, said so after its review, is sent once', async () => {
    const { tenantId, customer } = await reported(20);
    // The request never reached Stripe, but flowmeter cannot know that.
    stripe.failNext('drop_before', 'drop_before', 'drop_before');
    const lost = JSON.parse((await adjust(tenantId, '+3', 'missed runs', ['--json'])).out);
    const { id } = lost.correction;
    expect(stripe.totalFor(customer)).toBe(20);
    await superuser().query(
      "update public.meter_corrections set first_attempt_at = first_attempt_at - interval '25 hours' where id = $1",
      [id],
    );
    await cli(['report', '--tenant', tenantId]);
    const no = await cli(['corrections', 'resolve', String(id), '--stripe-has', 'no', '--json']);
    expect(no.code).toBe(EXIT.ok);
    expect(JSON.parse(no.out)).toMatchObject({ status: 'sent' });
    expect(stripe.totalFor(customer)).toBe(23);
  });

  it('without STRIPE_SECRET_KEY: recorded, pending, and said so', async () => {
    const { tenantId } = await reported(20);
    const recorded = await adjust(tenantId, '+2', 'missed runs', [], {
      STRIPE_SECRET_KEY: undefined,
    });
    expect(recorded.code).toBe(EXIT.failed);
    expect(recorded.err).toMatch(/STRIPE_SECRET_KEY is not set: recorded, pending/);
  });
});
