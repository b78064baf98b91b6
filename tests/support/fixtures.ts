import { randomUUID } from 'node:crypto';
import type { SupabaseClient } from '@supabase/supabase-js';
import type { Database } from '../../src/db/database.types.ts';
import { claimSource } from './leases.ts';
import { serviceClient, superuser, uniqueId, userClient } from './stack.ts';

type SetPlanArgs = Database['public']['Functions']['set_plan']['Args'];

/** An instant `seconds` before now, as n8n writes it: the start of a recent execution. */
export const recent = (seconds: number) => new Date(Date.now() - seconds * 1000).toISOString();

/**
 * Fixtures go through the same service-only functions the operator uses. `db` is the
 * service client of another stack than the shared one, for tests that start their own.
 */
export async function setPlan(args: SetPlanArgs, db: SupabaseClient<Database> = serviceClient()) {
  const { data, error } = await db.rpc('set_plan', args);
  if (error || !data) throw new Error(`set_plan: ${error?.message}`);
  return data;
}

export async function createPlan(
  overrides: { included_executions?: number; limit_policy?: string } = {},
) {
  return setPlan({
    id: uniqueId('plan'),
    name: 'Test plan',
    included_executions: overrides.included_executions ?? 1000,
    limit_policy: overrides.limit_policy ?? 'hard_limit',
  });
}

export async function createTenant(planId?: string) {
  const plan = planId ?? (await createPlan()).id;
  const { data, error } = await serviceClient().rpc('add_tenant', {
    name: uniqueId('tenant'),
    plan_id: plan,
    external_ref: uniqueId('ext'),
  });
  if (error) throw new Error(`add_tenant: ${error.message}`);
  return data;
}

/** A Supabase Auth user; auth.users belongs to Supabase Auth, so fixtures write it directly. */
export async function createUser(): Promise<string> {
  const id = randomUUID();
  await superuser().query(
    "insert into auth.users (id, email, role, aud) values ($1, $2, 'authenticated', 'authenticated')",
    [id, `${id}@example.test`],
  );
  return id;
}

export async function addMember(tenantId: string, userId: string, role = 'viewer') {
  const { error } = await serviceClient().rpc('add_tenant_member', {
    tenant_id: tenantId,
    user_id: userId,
    role,
  });
  if (error) throw new Error(`add_tenant_member: ${error.message}`);
}

/** A new user, a member of these tenants, and supabase-js signed in as them. */
export async function memberOf(...tenantIds: string[]) {
  const userId = await createUser();
  for (const id of tenantIds) await addMember(id, userId);
  return { userId, db: await userClient(userId) };
}

const iso = (ms: number) => new Date(ms).toISOString();

export interface Run {
  workflow: string;
  startedAt: number;
  status?: 'success' | 'error' | 'crashed' | 'canceled';
  mode?: string;
  /** null: never stopped (no duration). */
  durationMs?: number | null;
}

/** `count` runs of workflow wf, started a millisecond apart from `msAgo` before now. */
export const recentRuns = (count: number, msAgo: number): Run[] => {
  const from = Date.now() - msAgo;
  return Array.from({ length: count }, (_, i) => ({ workflow: 'wf', startedAt: from + i }));
};

/** A new source of the tenant (an n8n nobody calls, at `baseUrl`): its id. */
export async function addSource(
  tenantId: string,
  baseUrl = `https://${uniqueId('n8n')}.example.test`,
): Promise<string> {
  const { data: source, error } = await serviceClient().rpc('add_n8n_source', {
    tenant_id: tenantId,
    name: 'main',
    base_url: baseUrl,
    api_key_ciphertext: 'fm1.k1.aXY.dGFn.Y2lwaGVy',
  });
  if (error || !source) throw new Error(`add_n8n_source: ${error?.message}`);
  return source.id;
}

/** A new source of the tenant, leased to the caller as a collector run would lease it. */
export async function leasedSource(tenantId: string) {
  const sourceId = await addSource(tenantId);
  const { lease_token: lease } = await claimSource(sourceId, {}, serviceClient());
  return { sourceId, lease };
}

/** The runs as the `executions` of a page of ingest_execution_page, ids from 1. */
export const executionPage = (runs: Run[]) =>
  runs.map((r, i) => {
    const duration = r.durationMs === undefined ? 1000 : r.durationMs;
    return {
      id: i + 1,
      status: r.status ?? 'success',
      mode: r.mode ?? 'trigger',
      workflow_id: r.workflow,
      started_at: iso(r.startedAt),
      stopped_at: duration === null ? null : iso(r.startedAt + duration),
      retry_of: null,
    };
  });

/** Stores finished executions through the collector's own SQL (a new leased source). */
export async function ingestExecutions(tenantId: string, runs: Run[]): Promise<void> {
  const db = serviceClient();
  const { sourceId, lease } = await leasedSource(tenantId);
  const { error } = await db.rpc('ingest_execution_page', {
    source_id: sourceId,
    lease_token: lease,
    executions: executionPage(runs),
  });
  if (error) throw new Error(`ingest_execution_page: ${error.message}`);
  await db.rpc('release_collector_sources', { source_ids: [sourceId], lease_tokens: [lease] });
}
