import { describe, expect, it } from 'vitest';
import { dbNumber } from '../../src/db/json-number.ts';
import {
  getDailyUsage,
  getUsageSummary,
  getWorkflowBreakdown,
  listAlerts,
  rpcArgs,
  toDay,
  toUsageAlert,
  toUsagePeriod,
  toUsageSummary,
  type UsageDb,
  type UsageSummaryRow,
} from '../../src/usage-client/index.ts';
import { stubRpcClient } from '../support/rpc-stub.ts';

const stubClient = (response: { data: unknown; error: unknown }) =>
  stubRpcClient<UsageDb>(response, 400);

const summaryRow: UsageSummaryRow = {
  tenant_id: 't1',
  tenant_name: 'Acme',
  plan_id: 'pro',
  plan_name: 'Pro',
  limit_policy: 'overage',
  subscription_status: 'active',
  period_start: '2026-11-01T00:00:00+00:00',
  period_end: '2026-12-01T00:00:00+00:00',
  used: 1200,
  quota: 1000,
  remaining: 0,
  percent: 120,
  level: 'overage',
  overage_units: 200,
  estimated_overage_amount: 50,
  currency: 'usd',
  reserved: 3,
  executions: 1300,
  failed: 12,
};

describe('usage client mapping', () => {
  it('renames every summary column to camelCase and keeps the values', () => {
    expect(toUsageSummary(summaryRow)).toEqual({
      tenantId: 't1',
      tenantName: 'Acme',
      planId: 'pro',
      planName: 'Pro',
      limitPolicy: 'overage',
      subscriptionStatus: 'active',
      periodStart: '2026-11-01T00:00:00+00:00',
      periodEnd: '2026-12-01T00:00:00+00:00',
      used: 1200,
      quota: 1000,
      remaining: 0,
      percent: 120,
      level: 'overage',
      overageUnits: 200,
      estimatedOverageAmount: 50,
      currency: 'usd',
      reserved: 3,
      executions: 1300,
      failed: 12,
    });
  });

  it('maps history periods and alerts, keeping nulls', () => {
    expect(
      toUsagePeriod({
        period_start: 'a',
        period_end: 'b',
        is_current: false,
        used: 5,
        quota: null as unknown as number,
        overage_units: 0,
        executions: 6,
        failed: 1,
        reported_to_stripe: 4,
        pending_to_stripe: 1,
        late: 0,
        corrected: -2,
        credited_amount: 40,
      }),
    ).toEqual({
      periodStart: 'a',
      periodEnd: 'b',
      isCurrent: false,
      used: 5,
      quota: null,
      overageUnits: 0,
      executions: 6,
      failed: 1,
      reportedToStripe: 4,
      pendingToStripe: 1,
      late: 0,
      corrected: -2,
      creditedAmount: 40,
    });
    expect(
      toUsageAlert({
        id: 7,
        tenant_id: 't1',
        period_start: 'a',
        period_end: 'b',
        threshold: 80,
        used: 800,
        quota: 1000,
        created_at: 'c',
        read_at: null,
      }),
    ).toEqual({
      id: 7,
      tenantId: 't1',
      periodStart: 'a',
      periodEnd: 'b',
      threshold: 80,
      used: 800,
      quota: 1000,
      createdAt: 'c',
      readAt: null,
    });
  });

  it('takes a day as YYYY-MM-DD or as the UTC day of a Date', () => {
    expect(toDay('2026-11-05')).toBe('2026-11-05');
    expect(toDay(new Date('2026-11-05T23:59:59.999Z'))).toBe('2026-11-05');
    expect(toDay(new Date('2026-11-06T00:00:00+01:00'))).toBe('2026-11-05');
  });

  it('leaves out arguments not given, so the SQL defaults apply', () => {
    expect(rpcArgs({ tenant_id: 't1', from_day: undefined, max_rows: 0, after: null })).toEqual({
      tenant_id: 't1',
      max_rows: 0,
      after: null,
    });
  });
});

describe('usage client calls', () => {
  it('calls the summary function with or without a tenant', async () => {
    const { client, calls } = stubClient({ data: [summaryRow], error: null });
    const all = await getUsageSummary(client);
    await getUsageSummary(client, 't1');
    expect(calls).toEqual([
      { fn: 'tenant_usage_summary', args: {} },
      { fn: 'tenant_usage_summary', args: { tenant_id: 't1' } },
    ]);
    expect(all).toEqual({ data: [toUsageSummary(summaryRow)], error: null });
  });

  it('answers a summary row of another shape as unexpected_shape, naming the field, not by throwing', async () => {
    const { level: _, ...withoutLevel } = summaryRow;
    for (const row of [
      withoutLevel,
      { ...summaryRow, used: null },
      { ...summaryRow, level: 'over' },
    ]) {
      const { client } = stubClient({ data: [row], error: null });
      const answer = await getUsageSummary(client);
      expect(answer).toEqual({
        data: null,
        error: {
          code: 'unexpected_shape',
          message: expect.stringMatching(
            /^tenant_usage_summary answered in an unexpected shape \((level|used)\); apply the latest migrations$/,
          ),
        },
      });
    }
  });

  it('sends snake_case arguments, days and instants as the API takes them', async () => {
    const { client, calls } = stubClient({ data: [], error: null });
    await getDailyUsage(client, { tenantId: 't1', fromDay: new Date('2026-10-01T12:00:00Z') });
    await getWorkflowBreakdown(client, {
      tenantId: 't1',
      periodStart: new Date('2026-10-01T00:00:00Z'),
      maxRows: 10,
      afterWorkflowId: 'wf-9',
    });
    await listAlerts(client, { tenantId: 't1', unreadOnly: true, beforeId: 40 });
    expect(calls).toEqual([
      { fn: 'tenant_usage_daily', args: { tenant_id: 't1', from_day: '2026-10-01' } },
      {
        fn: 'tenant_workflow_breakdown',
        args: {
          tenant_id: 't1',
          period_start: '2026-10-01T00:00:00.000Z',
          max_rows: 10,
          after_workflow_id: 'wf-9',
        },
      },
      { fn: 'tenant_alerts', args: { tenant_id: 't1', unread_only: true, before_id: 40 } },
    ]);
  });

  it('passes errors through untouched, without data', async () => {
    const error = { code: '42501', message: 'permission denied', details: null, hint: null };
    const { client } = stubClient({ data: null, error });
    expect(await getDailyUsage(client, { tenantId: 't1' })).toEqual({ data: null, error });
  });
});

describe('dbNumber', () => {
  it('reads a JSON number or numeric text, and refuses what is not a number instead of reading 0', () => {
    expect(dbNumber.parse(42)).toBe(42);
    expect(dbNumber.parse('12.50')).toBe(12.5);
    for (const bad of [null, undefined, '', '  ', 'twelve', true]) {
      expect(dbNumber.safeParse(bad).success).toBe(false);
    }
  });
});
