import { describe, expect, it, onTestFinished } from 'vitest';
import { ConfigError } from '../../src/config/env.ts';
import { fail, ok } from '../../src/domain/result.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { needsAttention } from '../../src/ops/attention.ts';
import { operatorStatusSchema } from '../../src/ops/operator-status.ts';
import { recordedRun, scheduledFunction } from '../../src/ops/scheduled-run.ts';
import { dropRequest, faultyDb, loseResponse, type RpcHook, rpcFetch } from '../support/faults.ts';
import { asRole, serviceClient, stack, superuser, uniqueId } from '../support/stack.ts';

async function runsOf(functionName: string) {
  const { rows } = await superuser().query(
    'select ok, summary, error, finished_at is not null as finished from public.scheduled_runs where function_name = $1',
    [functionName],
  );
  return rows;
}

/**
 * A function name whose runs are deleted when the test ends, passed or not: other files
 * read the status, and a failed or unfinished run left behind is not theirs to see.
 */
function forgottenAfterTest(): string {
  const name = uniqueId('job').toLowerCase();
  onTestFinished(async () => {
    await superuser().query('delete from public.scheduled_runs where function_name = $1', [name]);
  });
  return name;
}

/** A client whose finish_scheduled_run calls `answer` decides, counted; other calls pass. */
function finishThrough(answer: RpcHook) {
  let attempts = 0;
  const db = faultyDb(
    rpcFetch((call, send) => {
      if (call.fn !== 'finish_scheduled_run') return send();
      attempts += 1;
      return answer(call, send);
    }),
  );
  return { db, attempts: () => attempts };
}

describe('recorded scheduled runs', () => {
  it('records a run, its summary and a run id for its log lines', async () => {
    const name = uniqueId('job').toLowerCase();
    const lines: object[] = [];
    const log = {
      ...silentLogger,
      child: (fields: object) => {
        lines.push(fields);
        return silentLogger;
      },
    };
    const result = await recordedRun({ db: serviceClient(), functionName: name, log }, async () =>
      ok({ sent: 3 }),
    );
    expect(result).toEqual(ok({ sent: 3 }));
    expect(await runsOf(name)).toEqual([
      { ok: true, summary: { sent: 3 }, error: null, finished: true },
    ]);
    expect(lines[0]).toMatchObject({ fn: name, run_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  it('records a failed run with its error and rethrows', async () => {
    const name = forgottenAfterTest();
    await expect(
      recordedRun({ db: serviceClient(), functionName: name, log: silentLogger }, async () => {
        throw new Error('Stripe is down');
      }),
    ).rejects.toThrow('Stripe is down');
    expect(await runsOf(name)).toEqual([
      { ok: false, summary: null, error: 'Stripe is down', finished: true },
    ]);
  });

  it('records a run whose configuration does not parse as failed, naming the variable, and rethrows', async () => {
    const name = forgottenAfterTest();
    const refused = new ConfigError(['STRIPE_SECRET_KEY must be a secret key (sk_…)']);
    const env = {
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      LOG_LEVEL: 'error',
    };
    const run = scheduledFunction(
      name,
      () => {
        throw refused;
      },
      () => {
        throw new Error('setup is not reached');
      },
      env,
    );
    await expect(run()).rejects.toBe(refused);
    expect(await runsOf(name)).toEqual([
      {
        ok: false,
        summary: null,
        error: expect.stringContaining('STRIPE_SECRET_KEY'),
        finished: true,
      },
    ]);
    // Without the database's settings nothing can be recorded: the error still gets out.
    await expect(
      scheduledFunction(
        name,
        () => {
          throw refused;
        },
        () => {
          throw new Error('setup is not reached');
        },
        {},
      )(),
    ).rejects.toBe(refused);
    expect(await runsOf(name)).toHaveLength(1);
  });

  it('records a failure the work returns, and returns it', async () => {
    const name = forgottenAfterTest();
    const result = await recordedRun(
      { db: serviceClient(), functionName: name, log: silentLogger },
      async () => fail('unavailable', 'claim_meter_deltas failed: connection refused'),
    );
    expect(result).toEqual(fail('unavailable', 'claim_meter_deltas failed: connection refused'));
    expect(await runsOf(name)).toEqual([
      {
        ok: false,
        summary: null,
        error: 'claim_meter_deltas failed: connection refused',
        finished: true,
      },
    ]);
  });

  it.each([
    ['never reached the database', dropRequest],
    ['committed, but its answer was lost', loseResponse],
  ] as const)('records the outcome when its first attempt %s', async (_, fault) => {
    const name = uniqueId('job').toLowerCase();
    const { db, attempts } = finishThrough((call, send) =>
      call.indexOfFn === 1 ? fault(call, send) : send(),
    );
    await recordedRun({ db, functionName: name, log: silentLogger }, async () => ok({ sent: 1 }));
    expect(attempts()).toBe(2);
    // Recorded as it ended, not left to read as killed once 2 minutes have passed.
    expect(await runsOf(name)).toEqual([
      { ok: true, summary: { sent: 1 }, error: null, finished: true },
    ]);
  });

  it('does not retry an end the database refuses: it would refuse it again', async () => {
    const name = forgottenAfterTest();
    const { db, attempts } = finishThrough(() =>
      Promise.resolve(
        Response.json(
          { code: '22P02', message: 'invalid input syntax', details: null, hint: null },
          { status: 400 },
        ),
      ),
    );
    await recordedRun({ db, functionName: name, log: silentLogger }, async () => ok({ sent: 1 }));
    expect(attempts()).toBe(1);
    expect(await runsOf(name)).toEqual([{ ok: null, summary: null, error: null, finished: false }]);
  });

  /** A finish_scheduled_run answered 503 by the gateway, every time. */
  const unavailable = () =>
    Promise.resolve(Response.json({ message: 'upstream unavailable' }, { status: 503 }));

  it('retries recording the end while there is time for another attempt', async () => {
    const name = forgottenAfterTest();
    const { db, attempts } = finishThrough(unavailable);
    await recordedRun(
      { db, functionName: name, log: silentLogger, recordBy: Date.now() + 60_000 },
      async () => ok({ sent: 1 }),
    );
    expect(attempts()).toBe(4);
  });

  it('starts no attempt to record the end after recordBy: the platform would stop it midway', async () => {
    const name = forgottenAfterTest();
    const { db, attempts } = finishThrough(unavailable);
    await recordedRun(
      { db, functionName: name, log: silentLogger, recordBy: Date.now() - 1 },
      async () => ok({ sent: 1 }),
    );
    expect(attempts()).toBe(1);
    expect(await runsOf(name)).toEqual([{ ok: null, summary: null, error: null, finished: false }]);
  });
});

describe('scheduled functions in the operator status', () => {
  /** operator_status() with these runs recorded, inside a transaction that is rolled back. */
  const statusWith = (runs: Array<{ name: string; minutesAgo: number; ok: boolean | null }>) =>
    asRole('service_role', {}, async (db) => {
      for (const run of runs) {
        await db.query(
          `insert into public.scheduled_runs (function_name, started_at, finished_at, ok, error)
           values ($1, now() - make_interval(mins => $2::int),
                   case when $3::boolean is not null then now() - make_interval(mins => $2::int) + interval '2 seconds' end,
                   $3, case when $3 = false then 'Stripe is down' end)`,
          [run.name, run.minutesAgo, run.ok],
        );
      }
      const { rows } = await db.query('select public.operator_status() as status');
      return operatorStatusSchema.parse(rows[0].status);
    });

  it('shows the latest run and counts failures since the last success', async () => {
    const name = uniqueId('job').toLowerCase();
    const status = await statusWith([
      { name, minutesAgo: 30, ok: false },
      { name, minutesAgo: 20, ok: true },
      { name, minutesAgo: 10, ok: false },
      { name, minutesAgo: 5, ok: false },
    ]);
    expect(status.scheduled_functions.find((f) => f.function_name === name)).toMatchObject({
      last_ok: false,
      last_error: 'Stripe is down',
      failures_since_success: 2,
      last_success_at: expect.any(String),
    });
  });

  it('counts a run that never finished within 2 minutes (a scheduled function ends at 30 s) as failed; a running one is not', async () => {
    const stuck = uniqueId('job').toLowerCase();
    const running = uniqueId('job').toLowerCase();
    const status = await statusWith([
      { name: stuck, minutesAgo: 3, ok: null },
      { name: running, minutesAgo: 1, ok: null },
    ]);
    const of = (n: string) => status.scheduled_functions.find((f) => f.function_name === n);
    expect(of(stuck)).toMatchObject({
      last_ok: false,
      last_error: 'did not finish: killed or timed out',
      failures_since_success: 1,
      last_success_at: null,
    });
    expect(of(running)).toMatchObject({ last_ok: null, failures_since_success: 0 });
  });

  it('does not call a run that finished killed, even when it recorded no outcome', async () => {
    // finish_scheduled_run accepts a null ok: finished is what tells killed runs apart.
    const name = uniqueId('job').toLowerCase();
    const status = await asRole('service_role', {}, async (db) => {
      await db.query(
        `insert into public.scheduled_runs (function_name, started_at, finished_at, ok)
         values ($1, now() - interval '20 minutes', now() - interval '19 minutes', null)`,
        [name],
      );
      const { rows } = await db.query('select public.operator_status() as status');
      return rows[0].status as { scheduled_functions: Array<Record<string, unknown>> };
    });
    expect(status.scheduled_functions.find((f) => f.function_name === name)).toMatchObject({
      last_ok: null,
      last_error: null,
      failures_since_success: 0,
    });
  });

  it('reads as the status schema expects over the RPC endpoint, microseconds and offset included', async () => {
    const name = forgottenAfterTest();
    await superuser().query(
      `insert into public.scheduled_runs (function_name, started_at, finished_at, ok)
       values ($1, date_trunc('second', now()) - interval '3 minutes 0.123456 seconds', now(), true)`,
      [name],
    );
    const { data, error } = await serviceClient().rpc('operator_status');
    expect(error).toBeNull();
    const run = operatorStatusSchema
      .parse(data)
      .scheduled_functions.find((f) => f.function_name === name);
    expect(run?.last_started_at).toMatch(/T\d\d:\d\d:\d\d\.876544\+00:00$/);
  });

  it('reads as the status schema expects in a session time zone off UTC by a part of an hour', async () => {
    const name = uniqueId('job').toLowerCase();
    const status = await asRole('service_role', {}, async (db) => {
      await db.query("set local time zone 'Asia/Kathmandu'");
      await db.query(
        `insert into public.scheduled_runs (function_name, started_at, finished_at, ok)
         values ($1, now() - interval '5 minutes', now(), true)`,
        [name],
      );
      const { rows } = await db.query('select public.operator_status() as status');
      return operatorStatusSchema.parse(rows[0].status);
    });
    expect(status.generated_at).toMatch(/\+05:45$/);
    expect(status.scheduled_functions.find((f) => f.function_name === name)).toMatchObject({
      last_started_at: expect.stringMatching(/\+05:45$/),
    });
  });

  it('makes the status need attention when one of our scheduled functions fails', async () => {
    const status = await statusWith([
      { name: 'report-usage', minutesAgo: 70, ok: true },
      { name: 'report-usage', minutesAgo: 10, ok: false },
    ]);
    expect(needsAttention(status)).toContain(
      'report-usage failed 1 time since its last success (Stripe is down)',
    );
  });

  it('makes the status need attention when one of our scheduled functions stopped running', async () => {
    /** The findings about collect-usage with only these runs of it recorded (rolled back). */
    const collectFindings = (minutesAgo: number) =>
      asRole('service_role', {}, async (db) => {
        await db.query("delete from public.scheduled_runs where function_name = 'collect-usage'");
        await db.query(
          `insert into public.scheduled_runs (function_name, started_at, finished_at, ok)
           values ('collect-usage', now() - make_interval(mins => $1::int),
                   now() - make_interval(mins => $1::int) + interval '20 seconds', true)`,
          [minutesAgo],
        );
        const { rows } = await db.query('select public.operator_status() as status');
        return needsAttention(operatorStatusSchema.parse(rows[0].status)).filter((f) =>
          f.startsWith('collect-usage'),
        );
      });
    expect(await collectFindings(12)).toEqual([]);
    expect(await collectFindings(40)).toEqual([
      "collect-usage has not run for 40 minutes (it is scheduled every 10 minutes): check that the site's scheduled functions are deployed and enabled in Netlify and see its function log; `flowmeter collect` does its work now",
    ]);
  });
});
