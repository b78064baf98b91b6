import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { type EmbeddedDatabase, startPostgres } from '../../src/local/postgres.ts';
import { type LocalStack, startLocalStack } from '../../src/local/stack.ts';

/**
 * A reserving decision commits without waiting for its WAL flush (see enforce_usage), so
 * a crash of the database server can lose the latest ones: term C of the overshoot bound
 * in docs/enforcement.md. This crashes a server of its own (the shared one serves the
 * other test files) and checks what the docs promise: what survives is a prefix of the
 * decisions in the order they committed, with the counters in step with the surviving
 * reservations, and the next decision simply does not see the lost ones.
 */

const DECISIONS = 300;
/** After this many decisions a checkpoint makes every one so far durable. */
const FLUSHED = 150;

let dir: string | undefined;
let stack: LocalStack | undefined;
let recovered: EmbeddedDatabase | undefined;

afterAll(async () => {
  // Whichever server is still up, the first (the test failed before its crash) or the
  // recovered one, stops before its data folder goes.
  await stack?.stop().catch(() => {});
  await recovered?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The postmaster's pid, from the first line of postmaster.pid in its data folder. */
async function postmasterPid(dataDir: string): Promise<number> {
  const [line] = (await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n');
  return Number(line);
}

async function waitForExit(pid: number): Promise<void> {
  for (;;) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => {});
  await client.connect();
  return client;
}

describe('a database crash under asynchronous commit', () => {
  it('keeps a consistent prefix of the decisions; the next one does not see the lost ones', async () => {
    dir = await mkdtemp(join(tmpdir(), 'flowmeter-crash-'));
    const dataDir = join(dir, 'data');
    stack = await startLocalStack({ dataDir });
    const url = stack.databaseUrl;
    const admin = await connect(url);
    await admin.query(
      "insert into public.plans (id, name, included_executions, limit_policy) values ('crash', 'Crash', 1000000, 'hard_limit')",
    );
    const {
      rows: [tenant],
    } = await admin.query<{ id: string }>(
      "insert into public.tenants (name, plan_id) values ('crash', 'crash') returning id",
    );
    const tenantId = (tenant as { id: string }).id;
    // The WAL writer would flush every 200 ms; at its longest interval (10 s) the crash
    // below falls, all but certainly, between two flushes and loses the latest decisions.
    await admin.query("alter system set wal_writer_delay = '10s'");
    await admin.query("alter system set wal_writer_flush_after = '64MB'");
    await admin.query('select pg_reload_conf()');
    await admin.query('checkpoint');

    // One runner asking one at a time: commit order is the order of the run references.
    const runner = await connect(url);
    await runner.query('set role service_role');
    for (let i = 1; i <= DECISIONS; i++) {
      const { rows } = await runner.query<{ reason: string }>(
        "select public.enforce_usage($1, 'wf1', $2) ->> 'reason' as reason",
        [tenantId, `run-${i}`],
      );
      expect(rows[0]?.reason).toBe('within_limit');
      // Flushes the WAL up to here: these decisions must survive the crash.
      if (i === FLUSHED) await admin.query('checkpoint');
    }
    await admin.end();

    // An immediate shutdown (SIGQUIT): no checkpoint, no final WAL flush, as in a crash.
    const pid = await postmasterPid(dataDir);
    process.kill(pid, 'SIGQUIT');
    await waitForExit(pid);
    await runner.end().catch(() => {});
    // Its RPC endpoint and pool go with it; the server is already gone.
    await stack.stop().catch(() => {});
    stack = undefined;

    // Restart on the same data folder: crash recovery replays what reached the WAL.
    recovered = await startPostgres({
      dataDir,
      port: Number(new URL(url).port),
      password: decodeURIComponent(new URL(url).password),
      persistent: true,
    });
    const after = await connect(recovered.url);
    try {
      const { rows: kept } = await after.query<{ n: number }>(
        'select substr(run_ref, 5)::int as n from public.usage_reservations where tenant_id = $1 and released_at is null order by 1',
        [tenantId],
      );
      const survived = kept.map((r) => r.n);
      // What was flushed survived, some of what was not was lost, and what survived is
      // exactly the first `survived.length`: nothing committed after a lost decision.
      expect(survived.length).toBeGreaterThanOrEqual(FLUSHED);
      expect(survived.length).toBeLessThan(DECISIONS);
      expect(survived).toEqual(Array.from({ length: survived.length }, (_, i) => i + 1));
      const counters = async () =>
        (
          await after.query<{ reserved: number }>(
            'select reserved::int from public.usage_counters where tenant_id = $1',
            [tenantId],
          )
        ).rows[0]?.reserved ?? 0;
      expect(await counters()).toBe(survived.length);

      // The next decision counts the survivors only; a lost run asking again (its runner
      // never got the answer, or retries) takes a slot again.
      await after.query('set role service_role');
      const { rows: next } = await after.query<{
        decision: { allowed: boolean; committed: number };
      }>("select public.enforce_usage($1, 'wf1', $2) as decision", [tenantId, `run-${DECISIONS}`]);
      expect(next[0]?.decision).toMatchObject({ allowed: true, committed: survived.length + 1 });
      expect(await counters()).toBe(survived.length + 1);
    } finally {
      await after.end();
    }
  }, 120_000);
});
