import { describe, expect, it } from 'vitest';
import {
  getHealth,
  listTenants,
  type OperatorDb,
  resendAlertDelivery,
  setSourceEnabled,
} from '../../src/operator-client/index.ts';
import { operatorStatusSchema } from '../../src/ops/operator-status.ts';
import { healthyCollector, healthyStatus } from '../support/healthy-status.ts';
import { stubRpcClient } from '../support/rpc-stub.ts';

const stubClient = (response: { data: unknown; error: unknown }) =>
  stubRpcClient<OperatorDb>(response, 403);

/** A status whose only finding is one failing source. */
const status = { ...healthyStatus, sources: { ...healthyStatus.sources, failing: 1 } };

/** Collector health whose only finding is one gap nobody has acknowledged. */
const collector = {
  ...healthyCollector,
  unacknowledged_gaps: {
    gaps: 1,
    executions: 4,
    by_kind: { pruned: 4 },
    sources: 1,
    oldest_detected_at: '2026-12-01T09:00:00+00:00',
  },
};

describe('operator client', () => {
  it('sends only the arguments given, so the SQL defaults apply, and the cursor back unchanged', async () => {
    const { client, calls } = stubClient({ data: { total: 0, rows: [], next: null }, error: null });
    const after = { num: 12, text: '', id: 'b2c1' };
    await listTenants(client, { sort: 'used', descending: true, after });
    expect(calls).toEqual([
      { fn: 'operator_tenants', args: { sort: 'used', descending: true, after } },
    ]);
  });

  it('passes the database’s refusal through as the error', async () => {
    const refusal = { code: '42501', message: 'only operators may do this', details: '', hint: '' };
    const { client } = stubClient({ data: null, error: refusal });
    expect(await listTenants(client)).toEqual({ data: null, error: refusal });
  });

  it('turns an answer of an unexpected shape into an error, never into data', async () => {
    const { client } = stubClient({ data: { id: 's1', enabled: 'yes' }, error: null });
    const result = await setSourceEnabled(client, { sourceId: 's1', enabled: true });
    expect(result.data).toBeNull();
    expect(result.error).toMatchObject({ code: 'unexpected_shape' });
  });

  it.each(['later', '2026-12-01', '2026-12-01 10:00:00'])(
    'refuses a console time of %j, as it refuses the status times',
    async (malformed) => {
      const answer = {
        alert_id: 1,
        channel_id: 2,
        tenant_id: 't1',
        status: 'pending',
        next_attempt_at: malformed,
      };
      const { client } = stubClient({ data: answer, error: null });
      const result = await resendAlertDelivery(client, { alertId: 1, channelId: 2 });
      expect(result).toEqual({
        data: null,
        error: {
          code: 'unexpected_shape',
          message: expect.stringContaining('(next_attempt_at)'),
        },
      });
      const { client: wellFormed } = stubClient({
        data: { ...answer, next_attempt_at: '2026-12-01T10:00:00.123456+00:00' },
        error: null,
      });
      expect(
        (await resendAlertDelivery(wellFormed, { alertId: 1, channelId: 2 })).error,
      ).toBeNull();
    },
  );

  it('health carries the findings `flowmeter status` raises, by the same rules', async () => {
    const { client } = stubClient({ data: { ...status, collector }, error: null });
    const { data } = await getHealth(client);
    expect(data?.needsAttention).toEqual([
      '1 source failing',
      expect.stringMatching(/^1 gap \(4 executions possibly uncounted: 4 pruned\)/),
    ]);
  });

  it('reads times as PostgreSQL writes a timestamptz in JSON, microseconds and offset', async () => {
    const { client } = stubClient({
      data: {
        ...status,
        generated_at: '2026-12-02T10:00:00.123456+00:00',
        scheduled_functions: [
          {
            function_name: 'report-usage',
            last_started_at: '2026-12-01T10:00:00.654321+00:00',
            last_finished_at: '2026-12-01T10:00:01.5+01:00',
            last_ok: true,
            last_error: null,
            last_summary: {},
            last_success_at: '2026-12-01T09:00:01Z',
            failures_since_success: 0,
          },
        ],
        collector,
      },
      error: null,
    });
    const { data, error } = await getHealth(client);
    expect(error).toBeNull();
    expect(data?.needsAttention).toContainEqual(
      expect.stringMatching(/^report-usage has not run for 24 hours /),
    );
  });

  it.each([
    'yesterday',
    '',
    '2026-12-01',
    '2026-12-01 10:00:00+00',
    '2026-12-01T10:00:00',
    '2026-02-30T10:00:00+00:00',
    '10:00:00+00:00',
  ])(
    'refuses a scheduled function started at %j instead of reading it as on time',
    async (malformed) => {
      const answer = {
        ...status,
        scheduled_functions: [
          {
            function_name: 'report-usage',
            last_started_at: malformed,
            last_finished_at: null,
            last_ok: null,
            last_error: null,
            last_summary: null,
            last_success_at: null,
            failures_since_success: 0,
          },
        ],
      };
      const refused = operatorStatusSchema.safeParse(answer);
      expect(refused.error?.issues).toEqual([
        expect.objectContaining({
          path: ['scheduled_functions', 0, 'last_started_at'],
          message: 'Invalid ISO datetime',
        }),
      ]);
      const { client } = stubClient({ data: { ...answer, collector }, error: null });
      expect(await getHealth(client)).toEqual({
        data: null,
        error: {
          code: 'unexpected_shape',
          message: expect.stringContaining('(scheduled_functions.0.last_started_at)'),
        },
      });
    },
  );

  it('keeps the tenant of each source in need of attention, so the page can link to it', async () => {
    const worst = {
      id: 's1',
      tenant_id: 't1',
      tenant_name: 'Acme',
      base_url: 'https://n8n.example.test',
      enabled: true,
      last_success_at: null,
      lag_seconds: null,
      consecutive_failures: 2,
      last_error: 'n8n answered 401',
    };
    const { client } = stubClient({
      data: { ...status, sources: { ...status.sources, worst: [worst] }, collector },
      error: null,
    });
    const { data } = await getHealth(client);
    expect(data?.status.sources.worst).toEqual([worst]);
  });
});
