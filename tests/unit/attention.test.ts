import { readdir, readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { type AttentionInputs, needsAttention } from '../../src/ops/attention.ts';
import { SCHEDULED_FUNCTIONS } from '../../src/ops/scheduled-functions.ts';

const reportsHealthy = {
  late: 0,
  failing: 0,
  failing_threshold: 3,
  auth_failing: false,
  auth_error: null,
  corrections: { failing: 0, review: 0, late: 0, last_error: null },
};
const eventsHealthy = { rejected: 0, last_rejected_id: null, last_reason: null };
const reconciledHealthy = { unrepaired: 0, last_kind: null, last_detail: null };

const healthy: AttentionInputs = {
  sources: { failing: 0, stalled: 0 },
  meter_reports: reportsHealthy,
  stripe_events: eventsHealthy,
  reconciliation: reconciledHealthy,
  alert_deliveries: { given_up: 0 },
  webhook_deliveries: { failing_endpoints: [] },
  scheduled_functions: [
    { function_name: 'report-usage', failures_since_success: 0, last_error: null },
  ],
};

describe('needsAttention', () => {
  it('is empty when all is well', () => {
    expect(needsAttention(healthy)).toEqual([]);
  });

  it('names each kind of problem', () => {
    expect(
      needsAttention({
        sources: { failing: 2, stalled: 1 },
        meter_reports: { ...reportsHealthy, late: 1 },
        stripe_events: eventsHealthy,
        reconciliation: reconciledHealthy,
        alert_deliveries: { given_up: 3 },
        webhook_deliveries: {
          failing_endpoints: [
            {
              id: 'e1',
              url: 'https://hooks.example.com/in',
              retrying: 2,
              given_up: 1,
              last_error: 'HTTP 500',
            },
          ],
        },
        scheduled_functions: [],
      }),
    ).toEqual([
      '2 sources failing',
      '1 enabled source not collected for 30 minutes or more, without an error: check that collect-usage runs (its latest run above) and that the sources are due (`flowmeter sources list`); `flowmeter collect` collects them now',
      '1 late meter report (invoice already final): not billed; bill the usage by hand (invoice item or next invoice), see docs/billing.md "Late usage"',
      '3 alert deliveries given up',
      'webhook endpoint e1 (https://hooks.example.com/in) is failing: 2 deliveries retrying, 1 given up (last error: HTTP 500): fix the receiver; `flowmeter webhooks deliveries --failed --endpoint e1` lists them, `flowmeter webhooks retry e1` resends the given-up ones',
    ]);
  });

  it('names what reconciliation found and did not repair, with the latest finding', () => {
    expect(
      needsAttention({
        ...healthy,
        reconciliation: {
          unrepaired: 2,
          last_kind: 'invoice_preview_drift',
          last_detail: "Stripe's upcoming invoice for sub_1 bills 120 executions for 500 eur",
        },
      }),
    ).toEqual([
      `2 reconciliation findings in the last 30 days not repaired (latest invoice_preview_drift: Stripe's upcoming invoice for sub_1 bills 120 executions for 500 eur): see reconciliation_findings and docs/billing.md "Reconciliation"`,
    ]);
  });

  it('names corrections that cannot reach Stripe by themselves, with what to do', () => {
    const findings = needsAttention({
      ...healthy,
      meter_reports: {
        ...reportsHealthy,
        corrections: { failing: 2, review: 1, late: 1, last_error: 'No such customer' },
      },
    });
    expect(findings).toHaveLength(3);
    expect(findings[0]).toMatch(
      /^2 corrections failed 3 or more times \(latest: No such customer\): fix/,
    );
    expect(findings[1]).toMatch(/^1 correction to check by hand: .*look in Stripe/);
    expect(findings[2]).toMatch(
      /^1 correction not metered \(invoice already final\): bill or credit it by hand/,
    );
  });

  it('flags a scheduled function from its first failure since a success, with the error', () => {
    expect(
      needsAttention({
        ...healthy,
        scheduled_functions: [
          {
            function_name: 'report-usage',
            failures_since_success: 1,
            last_error: 'Stripe is down',
          },
          { function_name: 'deliver-alerts', failures_since_success: 0, last_error: null },
          {
            function_name: 'collect-usage',
            failures_since_success: 3,
            last_error: 'did not finish: killed or timed out',
          },
        ],
      }),
    ).toEqual([
      'report-usage failed 1 time since its last success (Stripe is down)',
      'collect-usage failed 3 times since its last success (did not finish: killed or timed out)',
    ]);
  });

  it("ignores runs recorded under names that are not this project's scheduled functions", () => {
    expect(
      needsAttention({
        ...healthy,
        scheduled_functions: [
          { function_name: 'one-off-script', failures_since_success: 5, last_error: 'x' },
        ],
      }),
    ).toEqual([]);
  });
});

describe('SCHEDULED_FUNCTIONS', () => {
  it('lists exactly the names the Netlify functions record their runs under', async () => {
    const dir = new URL('../../netlify/functions/', import.meta.url);
    const recorded: string[] = [];
    for (const file of await readdir(dir)) {
      const source = await readFile(new URL(file, dir), 'utf8');
      for (const match of source.matchAll(/functionName: '([a-z0-9-]+)'/g)) {
        recorded.push(match[1] as string);
      }
    }
    expect(recorded.sort()).toEqual([...SCHEDULED_FUNCTIONS].sort());
  });
});
