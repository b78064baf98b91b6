import { describe, expect, it } from 'vitest';
import { loadEnforceConfig } from '../../src/config/env.ts';
import { enforce } from '../../src/enforcement/enforce.ts';
import { createEnforceHandler, enforceDependencies } from '../../src/enforcement/handler.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  activeReservations,
  askEnforce,
  enforceHandler,
  runnerSecret,
  setCollectedUsage,
  unreachableDb,
} from '../support/enforcement.ts';
import { dropRequest, faultyDb, type RpcHook, rpcFetch } from '../support/faults.ts';
import { createPlan, createTenant } from '../support/fixtures.ts';
import { anonClient, inTransaction, stack, superuser } from '../support/stack.ts';

/**
 * Which failures of the enforce_usage call fail open. Each class is injected at the HTTP
 * boundary of the RPC call (a fetch wrapper around the real transport), or made real by
 * PostgreSQL itself. The tenant is on a hard limit and at it, so any 200 that is not
 * `fail_open` would be a run allowed past the limit; and only an unreachable database may
 * give even `fail_open`.
 */

async function tenantAtItsLimit() {
  const tenant = await createTenant((await createPlan({ included_executions: 3 })).id);
  await setCollectedUsage(tenant.id, 3);
  return tenant;
}

const answer = (status: number, body: string, type = 'application/json; charset=utf-8') =>
  new Response(body, { status, headers: { 'content-type': type } });

const postgrestBody = (code: string, message = `injected ${code}`) =>
  JSON.stringify({ code, message, details: null, hint: null });

/** The RPC call answered by `respond` instead of the database. */
const injected =
  (respond: () => Response | Promise<Response>): RpcHook =>
  async () =>
    respond();

/** The RPC call answered with PostgREST's error body for `code`, as HTTP `status`. */
const postgrestError = (status: number, code: string) =>
  injected(() => answer(status, postgrestBody(code)));

const timeout: RpcHook = async () => {
  throw new DOMException('The operation was aborted due to timeout', 'TimeoutError');
};

async function askThrough(hook: RpcHook, failMode: 'open' | 'closed', tenantId: string) {
  const handler = enforceHandler({ failMode }, faultyDb(rpcFetch(hook)));
  return askEnforce(tenantId, { runRef: `run-${failMode}` }, handler);
}

const unreachableClasses: Array<[string, RpcHook]> = [
  ['the connection reset before an answer', (call) => dropRequest(call)],
  ['a timeout', timeout],
  [
    '502 from the gateway (HTML, no PostgREST body)',
    injected(() => answer(502, '<html>Bad Gateway</html>', 'text/html')),
  ],
  ['503 from the gateway with an empty body', injected(() => answer(503, ''))],
  [
    '504 from the gateway with its own JSON',
    injected(() => answer(504, '{"message":"upstream timed out"}')),
  ],
  ['PGRST001: PostgREST cannot connect to the database', postgrestError(503, 'PGRST001')],
  ['PGRST003: PostgREST timed out waiting for a pool connection', postgrestError(504, 'PGRST003')],
  ['08006: connection failure', postgrestError(503, '08006')],
  ['53300: too many connections', postgrestError(503, '53300')],
  ['57P03: the database is starting up', postgrestError(500, '57P03')],
];

/** Waits until a backend waits on a lock held by `holderPid`, then terminates it. */
async function terminateBackendBlockedBy(holderPid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    const { rows } = await superuser().query(
      'select pg_terminate_backend(pid) as done from pg_stat_activity where $1 = any(pg_blocking_pids(pid))',
      [holderPid],
    );
    if (rows.length > 0) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`no backend ever waited on a lock of backend ${holderPid}`);
}

describe('the database could not be reached: fail open (or 503 when closed)', () => {
  it.each(unreachableClasses)('%s', async (_, hook) => {
    const tenant = await tenantAtItsLimit();
    const open = await askThrough(hook, 'open', tenant.id);
    expect(open.status).toBe(200);
    expect(open.body).toMatchObject({ allowed: true, reason: 'fail_open' });
    const closed = await askThrough(hook, 'closed', tenant.id);
    expect(closed.status).toBe(503);
    expect(closed.body.error?.code).toBe('unavailable');
  });

  it('a database that never answers, cut at ENFORCE_DB_TIMEOUT_MS (never allowed when closed)', async () => {
    const tenant = await tenantAtItsLimit();
    const hung = rpcFetch(async () => new Promise<Response>(() => {}));
    const ask = (failMode: 'open' | 'closed') =>
      askEnforce(
        tenant.id,
        { runRef: `hung-${failMode}` },
        createEnforceHandler(
          enforceDependencies(
            loadEnforceConfig({
              SUPABASE_URL: stack.supabaseUrl,
              SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
              RUNNER_SECRETS: runnerSecret,
              ENFORCE_FAIL_MODE: failMode,
              ENFORCE_DB_TIMEOUT_MS: '300',
            }),
            silentLogger,
            hung,
          ),
        ),
      );
    const open = await ask('open');
    expect(open.status).toBe(200);
    expect(open.body).toMatchObject({ allowed: true, reason: 'fail_open' });
    const closed = await ask('closed');
    expect(closed.status).toBe(503);
    expect(closed.body.error?.code).toBe('unavailable');
    expect(await activeReservations(tenant.id)).toBe(0);
  });

  it('a database nobody listens on (connection refused)', async () => {
    const tenant = await tenantAtItsLimit();
    const open = await askEnforce(
      tenant.id,
      {},
      enforceHandler({ failMode: 'open' }, unreachableDb()),
    );
    expect(open.body).toMatchObject({ allowed: true, reason: 'fail_open' });
  });

  it('57P01: the backend running the decision is terminated mid-call (real)', async () => {
    // Below the limit, so the decision updates the counters row: held here, it waits.
    const tenant = await createTenant((await createPlan({ included_executions: 5 })).id);
    await setCollectedUsage(tenant.id, 1);
    await inTransaction(async (holder) => {
      await holder.query('select 1 from public.usage_counters where tenant_id = $1 for update', [
        tenant.id,
      ]);
      const pending = askEnforce(tenant.id, { runRef: 'run-terminated' });
      // The backend this holder blocks, and only it: other files' bursts wait on locks too.
      const { rows } = await holder.query<{ pid: number }>('select pg_backend_pid() as pid');
      await terminateBackendBlockedBy(rows[0]?.pid as number);
      const response = await pending;
      expect(response.status).toBe(200);
      expect(response.body).toMatchObject({ allowed: true, reason: 'fail_open' });
    });
    expect(await activeReservations(tenant.id)).toBe(0);
    // The endpoint dropped the dead connection: the next decision is a real one.
    expect((await askEnforce(tenant.id, { runRef: 'run-after' })).body).toMatchObject({
      reason: 'within_limit',
      committed: 2,
    });
  });
});

/** Rows for it.each: each of `classes` with the answer every one of them must get. */
const refusedAs = (status: number, code: string, classes: Array<[string, RpcHook]>) =>
  classes.map(([name, hook]): [string, number, string, RpcHook] => [name, status, code, hook]);

const refusedClasses = [
  ...refusedAs(400, 'invalid_request', [
    ['22P05: a value PostgreSQL cannot store', postgrestError(400, '22P05')],
    ['22021: an invalid byte sequence', postgrestError(400, '22021')],
    ['23505: a unique violation', postgrestError(409, '23505')],
    ['P0001: the function refused its arguments', postgrestError(400, 'P0001')],
  ]),
  ...refusedAs(500, 'internal', [
    ['42501: permission denied', postgrestError(403, '42501')],
    ['42883: the function does not exist', postgrestError(404, '42883')],
    ['PGRST202: not in the schema cache', postgrestError(404, 'PGRST202')],
    ['PGRST102: the request body was refused', postgrestError(400, 'PGRST102')],
    ['40P01: a deadlock', postgrestError(500, '40P01')],
    ['57014: a cancelled statement', postgrestError(500, '57014')],
    ['XX000: an internal error', postgrestError(500, 'XX000')],
    ['a code nobody knows', postgrestError(400, 'ZZ123')],
    ['500 without a body', injected(() => answer(500, ''))],
    [
      '401 from the gateway (service key refused)',
      injected(() => answer(401, '{"message":"Invalid API key"}')),
    ],
    [
      '200 with a body that is not JSON',
      injected(() => answer(200, '<html>hi</html>', 'text/html')),
    ],
    ['200 with JSON null', injected(() => answer(200, 'null'))],
    [
      '200 with an allow in a shape enforce_usage never answers',
      injected(() => answer(200, '{"allowed":true}')),
    ],
  ]),
];

describe('every other failure: a 4xx or a 500, never an allow, in either fail mode', () => {
  it.each(refusedClasses)('%s → %i %s', async (_, status, code, hook) => {
    const tenant = await tenantAtItsLimit();
    for (const failMode of ['open', 'closed'] as const) {
      const response = await askThrough(hook, failMode, tenant.id);
      expect(response.status, failMode).toBe(status);
      expect(response.body.error?.code, failMode).toBe(code);
      expect(response.body.allowed, failMode).toBeUndefined();
    }
    expect(await activeReservations(tenant.id)).toBe(0);
  });

  it('42501 (real): a client without the service role is refused by PostgreSQL', async () => {
    const tenant = await tenantAtItsLimit();
    const anon = anonClient();
    const response = await askEnforce(tenant.id, {}, enforceHandler({ failMode: 'open' }, anon));
    expect(response.status).toBe(500);
    expect(response.body.error?.code).toBe('internal');
  });

  it.each([
    ['tenant', { tenant: 'ext\u0000ref' }],
    ['workflowId', { workflowId: 'wf\u0000' }],
    ['runRef', { runRef: '\ud800run' }],
  ])(
    'a %s PostgreSQL really refuses, sent past the request schema, is a 400 (real)',
    async (_, fields) => {
      const tenant = await tenantAtItsLimit();
      const outcome = await enforce(
        faultyDb(rpcFetch((_call, send) => send())),
        { tenant: tenant.id, ...fields },
        { reservationTtlSeconds: 1800, failMode: 'open' },
      );
      expect(outcome).toMatchObject({ ok: false, error: { code: 'invalid_request' } });
      expect(outcome.failedOpen).toBeUndefined();
      expect(await activeReservations(tenant.id)).toBe(0);
    },
  );
});

describe('enforce_usage answers are parsed, not trusted', () => {
  const renaming =
    (from: string, to: string): RpcHook =>
    async (_call, send) => {
      const real = (await (await send()).json()) as Record<string, unknown>;
      const { [from]: value, ...rest } = real;
      return answer(200, JSON.stringify({ ...rest, [to]: value }));
    };

  it.each([
    ['committed', 'committed_total'],
    ['reservation_id', 'reservationId'],
    ['period_end', 'ends_at'],
    ['allowed', 'allow'],
  ])('a renamed key (%s → %s) is a 500, not a decision with a hole in it', async (from, to) => {
    const tenant = await createTenant((await createPlan({ included_executions: 5 })).id);
    const response = await askThrough(renaming(from, to), 'open', tenant.id);
    expect(response.status).toBe(500);
    expect(response.body.error?.code).toBe('internal');
  });
});
