import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import {
  SCHEDULED_FUNCTIONS,
  type ScheduledFunctionName,
  scheduleInWords,
} from '../../src/ops/scheduled-functions.ts';
import { cli } from '../support/cli.ts';
import { createSource, useN8nServer } from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { serviceClient, uniqueId } from '../support/stack.ts';

const server = useN8nServer();

/** A tenant on a metered 5-execution plan with a Slack channel, one source, 5 executions collected. */
async function busyTenant() {
  const planId = uniqueId('plan');
  await cli([
    'plans',
    'set',
    planId,
    '--name',
    'Small',
    '--included',
    '5',
    '--meter-event-name',
    'n8n_executions',
  ]);
  const added = await cli([
    'tenants',
    'add',
    uniqueId('Busy'),
    '--plan',
    planId,
    '--stripe-customer',
    `cus_${randomBytes(6).toString('hex')}`,
    '--json',
  ]);
  const tenantId = (JSON.parse(added.out) as { id: string }).id;
  const { error } = await serviceClient().rpc('add_alert_channel', {
    kind: 'slack',
    target: `https://hooks.slack.com/services/T0/B0/${randomBytes(6).toString('hex')}`,
    tenant_id: tenantId,
  });
  expect(error).toBeNull();
  const source = await createSource(server, { tenantId, planId });
  source.fake.addMany(5, (i) => ({ startedAt: recent(50 - i) }));
  expect((await cli(['collect', '--source', source.sourceId])).code).toBe(EXIT.ok);
  return { tenantId, source };
}

describe('flowmeter status', () => {
  it('shows failing sources, unsent Stripe reports and undelivered alerts, and exits 1', async () => {
    const { tenantId, source } = await busyTenant();
    // The delta is recorded in the ledger and left pending.
    expect((await cli(['report', '--tenant', tenantId, '--dry-run'])).code).toBe(EXIT.ok);
    source.fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } }, 5);
    expect((await cli(['collect', '--source', source.sourceId])).code).toBe(EXIT.failed);

    const json = await cli(['status', '--tenant', tenantId, '--json']);
    expect(json.code).toBe(EXIT.failed);
    const status = JSON.parse(json.out);
    expect(status).toMatchObject({
      sources: {
        total: 1,
        enabled: 1,
        failing: 1,
        worst: [{ id: source.sourceId, consecutive_failures: 1 }],
      },
      meter_reports: { pending: 1, pending_value: 5, late: 0 },
      needs_attention: ['1 source failing'],
    });
    expect(status.sources.worst[0].last_error).toMatch(/401/);
    // 80 % and 100 % of 5, one delivery each to the tenant's channel (and any global ones).
    expect(status.alert_deliveries.pending).toBeGreaterThanOrEqual(2);
    expect(status.collector_runs[0]).toMatchObject({ trigger: expect.any(String) });

    const screen = await cli(['status', '--tenant', tenantId]);
    expect(screen.code).toBe(EXIT.failed);
    expect(screen.out).toMatch(/^Sources: 1 enabled of 1, 1 failing, 0 never collected/);
    expect(screen.out).toMatch(
      new RegExp(
        `│ ${source.sourceId.slice(0, 8)} │ .* │ 1\\s+│ n8n rejected the API key \\(401\\)`,
      ),
    );
    expect(screen.out).toMatch(
      /Stripe meter reports: 1 pending \(5 executions, oldest .*Z\), 0 retrying, 0 late/,
    );
    expect(screen.out).toMatch(/Alert deliveries not delivered: \d+ pending/);
    // Every shipped function has its row with its schedule, whether it has run here or not.
    expect(screen.out).toMatch(/Scheduled functions:\n┌/);
    for (const name of Object.keys(SCHEDULED_FUNCTIONS) as ScheduledFunctionName[]) {
      expect(screen.out).toMatch(new RegExp(`│ ${name} +│ ${scheduleInWords(name)} +│ `));
    }
    expect(screen.out).toMatch(/Latest collector runs:\n┌/);
    expect(screen.out).toMatch(/Needs attention: 1 source failing$/);
  });

  it('exits 0 when all is well', async () => {
    const source = await createSource(server);
    source.fake.addMany(2, (i) => ({ startedAt: recent(20 - i) }));
    expect((await cli(['collect', '--source', source.sourceId])).code).toBe(EXIT.ok);
    const result = await cli(['status', '--tenant', source.tenantId]);
    expect(result.code).toBe(EXIT.ok);
    expect(result.out).toMatch(
      /^Sources: 1 enabled of 1, 0 failing, 0 never collected, longest lag \d+s/,
    );
    expect(result.out).toMatch(/All healthy\.$/);
  });

  it('exits 2 for an unknown tenant and 3 when the database cannot be reached', async () => {
    const unknown = await cli(['status', '--tenant', 'no-such-tenant']);
    expect(unknown.code).toBe(EXIT.usage);
    expect(unknown.err).toMatch(/`flowmeter tenants list` shows them/);
    const down = await cli(['status'], { SUPABASE_URL: 'http://127.0.0.1:9' });
    expect(down.code).toBe(EXIT.unavailable);
    expect(down.err).toMatch(/could not reach the database/);
  });
});
