import { randomBytes } from 'node:crypto';
import { createClient } from '@supabase/supabase-js';
import type { Database } from '../../src/db/database.types.ts';
import type { EnforceSettings } from '../../src/enforcement/enforce.ts';
import { createEnforceHandler } from '../../src/enforcement/handler.ts';
import type { Decision } from '../../src/enforcement/schema.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { serviceClient, superuser } from './stack.ts';

export const runnerSecret = randomBytes(32).toString('hex');
export const secondRunnerSecret = randomBytes(32).toString('hex');

export function enforceHandler(
  settings: Partial<EnforceSettings> = {},
  db = serviceClient(),
  secrets: string[] = [runnerSecret, secondRunnerSecret],
) {
  return createEnforceHandler({
    db,
    runnerSecrets: secrets,
    settings: { reservationTtlSeconds: 1800, failMode: 'open', ...settings },
    log: silentLogger,
  });
}

export const unreachableDb = () =>
  createClient<Database>('http://127.0.0.1:9', 'eyJhbGciOiJIUzI1NiJ9.e30.x', {
    auth: { persistSession: false },
  });

export function enforceRequest(
  body: unknown,
  init: { secret?: string | null; method?: string; headers?: Record<string, string> } = {},
) {
  const secret = init.secret === undefined ? runnerSecret : init.secret;
  const method = init.method ?? 'POST';
  return new Request('https://flowmeter.test/api/v1/enforce', {
    method,
    headers: {
      'content-type': 'application/json',
      ...(secret ? { authorization: `Bearer ${secret}` } : {}),
      ...init.headers,
    },
    ...(method === 'GET' || method === 'HEAD'
      ? {}
      : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
}

/** Sets the tenant's collected billable count for the period containing now. */
export async function setCollectedUsage(
  tenantId: string,
  billable: number,
  periodStart?: Date,
  periodEnd?: Date,
) {
  await superuser().query(
    `insert into public.usage_counters (tenant_id, period_start, period_end, executions, billable, billable_success)
     select $1, coalesce($3, p.period_start), coalesce($4, p.period_end), $2, $2, $2
     from public.tenants t, private.billing_period(t.current_period_start, t.current_period_end, now()) p
     where t.id = $1
     on conflict (tenant_id, period_start) do update set executions = excluded.executions,
       billable = excluded.billable, billable_success = excluded.billable_success`,
    [tenantId, billable, periodStart ?? null, periodEnd ?? null],
  );
}

let defaultHandler: ReturnType<typeof enforceHandler> | undefined;
const sharedHandler = () => {
  defaultHandler ??= enforceHandler();
  return defaultHandler;
};

/** One runner request through the handler (default settings unless `handler` is given). */
export async function askEnforce(
  tenant: string,
  extra: Record<string, unknown> = {},
  handler = sharedHandler(),
) {
  const response = await handler(enforceRequest({ tenant, ...extra }));
  const body = (await response.json()) as Decision & { error?: { code: string } };
  return { status: response.status, body, headers: response.headers };
}

/** How many of the tenant's reservations were released for this reason. */
export async function releasedReservations(
  tenantId: string,
  reason: 'collected' | 'expired',
): Promise<number> {
  const { rows } = await superuser().query(
    'select count(*)::int as n from public.usage_reservations where tenant_id = $1 and release_reason = $2',
    [tenantId, reason],
  );
  return rows[0].n;
}

export async function activeReservations(tenantId: string): Promise<number> {
  const { rows } = await superuser().query(
    'select count(*)::int as n from public.usage_reservations where tenant_id = $1 and released_at is null',
    [tenantId],
  );
  return rows[0].n;
}

/**
 * The reservation TTL passing for a tenant: its active reservations reach their expiry,
 * and so does the counters row's note of the earliest one, as they would with time.
 */
export async function expireReservations(tenantId: string): Promise<void> {
  await superuser().query(
    `with expired as (
       update public.usage_reservations set expires_at = now() - interval '1 second'
       where tenant_id = $1 and released_at is null
       returning tenant_id, period_start
     )
     update public.usage_counters c set reservations_next_expiry = now() - interval '1 second'
     where (c.tenant_id, c.period_start) in (select tenant_id, period_start from expired)`,
    [tenantId],
  );
}

/** The tenant's counters row for the period containing now, as stored (null if none). */
export async function currentCounters(tenantId: string) {
  const { rows } = await superuser().query<{
    billable: string;
    reserved: string;
    reservations_next_expiry: Date | null;
    xmin: string;
    xmax: string;
  }>(
    `select c.billable, c.reserved, c.reservations_next_expiry, c.xmin::text as xmin, c.xmax::text as xmax
     from public.tenants t
     cross join private.billing_period(t.current_period_start, t.current_period_end, now()) p
     join public.usage_counters c on c.tenant_id = t.id and c.period_start = p.period_start
     where t.id = $1`,
    [tenantId],
  );
  return rows[0] ?? null;
}
