import type { SupabaseClient } from '@supabase/supabase-js';
import type { Database } from '../../src/db/database.types.ts';
import { claimSource } from './leases.ts';
import { serviceClient, superuser, uniqueId } from './stack.ts';

/**
 * A tenant with a realistic history, stored by the system's own functions: executions
 * through the collector's ingestion (so counters, daily totals and alerts are the
 * system's), the previous period reported to Stripe through the reporter's ledger
 * functions. The billing period is anchored like a Stripe subscription that started 20
 * days ago, so the current period has days to chart whatever today's date is.
 */
const DAY = 86_400_000;
const WORKFLOWS = [
  { id: 'orders-sync', share: 0.42, ms: 2_400, errorEvery: 40 },
  { id: 'crm-enrichment', share: 0.27, ms: 5_800, errorEvery: 12 },
  { id: 'slack-digest', share: 0.18, ms: 900, errorEvery: 0 },
  { id: 'invoice-export', share: 0.13, ms: 14_000, errorEvery: 25 },
] as const;

export interface SeededTenant {
  tenantId: string;
  name: string;
  periodStart: Date;
  periodEnd: Date;
  previousPeriodStart: Date;
  daysSoFar: number;
}

export interface Run {
  workflow: string;
  startedAt: number;
  status: 'success' | 'error';
  durationMs: number;
}

function check<T>(
  what: string,
  response: { data: T | null; error: { message: string } | null },
): T {
  if (response.error || response.data === null)
    throw new Error(`${what}: ${response.error?.message}`);
  return response.data;
}

/** Runs of one UTC day, spread over its hours; `perDay` of them, the same every call. */
function runsOfDay(dayStart: number, perDay: number, salt: number): Run[] {
  return Array.from({ length: perDay }, (_, i) => {
    const pick = ((i * 7 + salt) % 100) / 100;
    const wf =
      WORKFLOWS.find((_, k) => WORKFLOWS.slice(0, k + 1).reduce((a, w) => a + w.share, 0) > pick) ??
      WORKFLOWS[0];
    return {
      workflow: wf.id,
      startedAt: dayStart + Math.floor(((i + 0.5) / perDay) * (DAY - 60_000)),
      status: wf.errorEvery > 0 && (i + salt) % wf.errorEvery === 0 ? 'error' : 'success',
      durationMs: Math.round(wf.ms * (0.6 + ((i * 13 + salt) % 9) / 10)),
    };
  });
}

/** Stores finished executions through ingest_execution_page, on a new source, in pages (of this run's stack, or `db`'s). */
export async function ingest(
  tenantId: string,
  runs: Run[],
  db: SupabaseClient<Database> = serviceClient(),
): Promise<void> {
  const source = check(
    'add_n8n_source',
    await db.rpc('add_n8n_source', {
      tenant_id: tenantId,
      name: 'main',
      base_url: `https://${uniqueId('n8n')}.example.test`,
      api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
    }),
  );
  const { lease_token: lease } = await claimSource(source.id, {}, db);
  for (let from = 0; from < runs.length; from += 250) {
    check(
      'ingest_execution_page',
      await db.rpc('ingest_execution_page', {
        source_id: source.id,
        lease_token: lease,
        executions: runs.slice(from, from + 250).map((r, i) => ({
          id: from + i + 1,
          status: r.status,
          mode: 'trigger',
          workflow_id: r.workflow,
          started_at: new Date(r.startedAt).toISOString(),
          stopped_at: new Date(r.startedAt + r.durationMs).toISOString(),
          retry_of: null,
        })),
      }),
    );
  }
  await db.rpc('release_collector_sources', { source_ids: [source.id], lease_tokens: [lease] });
}

/** Records every unreported delta of the tenant in the ledger; `send` marks them sent. */
async function reportToStripe(tenantId: string, send: boolean): Promise<void> {
  const db = serviceClient();
  // The previous period is stored after its end: a grace as long as a period lets its
  // usage be sent as the reporter would have sent it in time.
  const reports = check(
    'claim_meter_deltas',
    await db.rpc('claim_meter_deltas', {
      tenant_ids: [tenantId],
      finalization_grace_minutes: 60 * 24 * 40,
    }),
  );
  if (!send) return;
  for (const report of reports) {
    check(
      'record_meter_report',
      await db.rpc('record_meter_report', { id: report.id, outcome: 'sent' }),
    );
  }
}

export async function seedUsageTenant(options: {
  name: string;
  included: number;
  /** Default overage: Pro, 0.5 cents per execution over the quota. */
  policy?: 'overage' | 'hard_limit';
  /** Runs per day in the previous and the current period. */
  previousPerDay: number;
  currentPerDay: number;
  /** Runs asked for through enforcement now (a hard limit reserves the allowed ones). */
  reservations?: number;
  now?: Date;
}): Promise<SeededTenant> {
  const db = serviceClient();
  const plan = check(
    'set_plan',
    await db.rpc('set_plan', {
      ...(options.policy === 'hard_limit'
        ? { id: uniqueId('starter'), name: 'Starter', limit_policy: 'hard_limit' }
        : { id: uniqueId('pro'), name: 'Pro', limit_policy: 'overage', overage_unit_amount: 0.5 }),
      included_executions: options.included,
      currency: 'eur',
      stripe_meter_event_name: 'n8n_executions',
    }),
  );
  const tenant = check(
    'add_tenant',
    await db.rpc('add_tenant', {
      name: options.name,
      plan_id: plan.id,
      external_ref: uniqueId('ref'),
      stripe_customer_id: `cus_${uniqueId('web').replace('-', '')}`,
    }),
  );
  const now = (options.now ?? new Date()).getTime();
  const periodStart = Math.floor(now / DAY) * DAY - 20 * DAY;
  const periodEnd = new Date(periodStart);
  periodEnd.setUTCMonth(periodEnd.getUTCMonth() + 1);
  const previousStart = new Date(periodStart);
  previousStart.setUTCMonth(previousStart.getUTCMonth() - 1);
  await superuser().query(
    `update public.tenants set subscription_status = 'active', current_period_start = $2,
       current_period_end = $3 where id = $1`,
    [tenant.id, new Date(periodStart), periodEnd],
  );
  const wave = (day: number) => 0.75 + 0.25 * Math.sin(day / 2.2) + (day % 7 === 5 ? -0.3 : 0);
  const previous: Run[] = [];
  for (let day = previousStart.getTime(), i = 0; day < periodStart; day += DAY, i++) {
    previous.push(...runsOfDay(day, Math.round(options.previousPerDay * wave(i)), i));
  }
  await ingest(tenant.id, previous);
  await reportToStripe(tenant.id, true);
  // This period: the days before today reported, today's runs still pending.
  const today = Math.floor(now / DAY) * DAY;
  const current: Run[] = [];
  for (let day = periodStart, i = 0; day < today; day += DAY, i++) {
    current.push(...runsOfDay(day, Math.round(options.currentPerDay * wave(i + 3)), i + 50));
  }
  await ingest(tenant.id, current);
  await reportToStripe(tenant.id, true);
  await ingest(
    tenant.id,
    runsOfDay(today, options.currentPerDay, 99).filter((r) => r.startedAt <= now - 60_000),
  );
  await reportToStripe(tenant.id, false);
  for (let i = 0; i < (options.reservations ?? 0); i++) {
    check(
      'enforce_usage',
      await db.rpc('enforce_usage', {
        tenant: tenant.id,
        workflow_id: 'orders-sync',
        run_ref: `seeded-${i}`,
      }),
    );
  }
  return {
    tenantId: tenant.id,
    name: options.name,
    periodStart: new Date(periodStart),
    periodEnd,
    previousPeriodStart: previousStart,
    daysSoFar: (today - periodStart) / DAY + 1,
  };
}
