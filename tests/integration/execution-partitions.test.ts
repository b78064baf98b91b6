import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { waitForLockWait } from '../support/faults.ts';
import { useOwnStack } from '../support/own-stack.ts';
import { inTransaction } from '../support/stack.ts';

/**
 * The monthly partitions of public.executions: made with statistics, analyzed after their
 * first large batch, and never dropped under an ingest. On a stack of this file's own: the
 * upkeep drops every partition past its retention, which would take other files' months.
 */
const own = useOwnStack();

/** A month no ingest has written to yet, `monthsAgo` before now's, and its partition's name. */
async function monthAgo(monthsAgo: number) {
  const { rows } = await own.pool.query(
    `select date_trunc('month', now() at time zone 'UTC') at time zone 'UTC' - make_interval(months => $1) as start,
            'private.executions_' || to_char(date_trunc('month', now() at time zone 'UTC') - make_interval(months => $1), 'YYYY_MM') as partition`,
    [monthsAgo],
  );
  return { start: (rows[0].start as Date).getTime(), partition: rows[0].partition as string };
}

/** A tenant with one source, leased as the collector leases it. */
async function leasedSource() {
  const { rows } = await own.pool.query<{ source_id: string; lease_token: string }>(
    `with plan as (
       insert into public.plans (id, name, included_executions, limit_policy)
       values ('partitions-' || gen_random_uuid(), 'Partitions', null, 'unlimited') returning id
     ), tenant as (
       insert into public.tenants (name, plan_id) select 'partitions', id from plan returning id
     ), source as (
       insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext)
       select id, 'n8n', 'https://partitions-' || id || '.example.test', 'fm1.x' from tenant returning id
     )
     select c.source_id, c.lease_token from source,
       lateral public.claim_collector_sources(
         lease_seconds => 600, max_sources => 1, source_ids => array[source.id], ignore_schedule => true) c`,
  );
  return rows[0] as { source_id: string; lease_token: string };
}

/** 250 finished executions from id `from`, one a second from `start`. */
const page = (start: number, from: number) =>
  JSON.stringify(
    Array.from({ length: 250 }, (_, i) => ({
      id: from + i,
      status: 'success',
      mode: 'trigger',
      workflow_id: 'wf1',
      started_at: new Date(start + (from + i) * 1000).toISOString(),
      stopped_at: new Date(start + (from + i) * 1000 + 500).toISOString(),
      retry_of: null,
    })),
  );

/** `work` on one connection as the service role, as the RPC endpoint calls the functions. */
async function asServiceRole<T>(work: (db: pg.PoolClient) => Promise<T>): Promise<T> {
  const db = await own.pool.connect();
  try {
    await db.query('set role service_role');
    return await work(db);
  } finally {
    await db.query('reset role');
    db.release();
  }
}

describe('a new month', () => {
  it('its partition is analyzed when created and again after its first large batch', async () => {
    const lease = await leasedSource();
    const { start, partition } = await monthAgo(10);
    // As the service role: analyzing needs no more privileges.
    await asServiceRole(async (db) => {
      const statistics = async () =>
        (
          await db.query(
            'select reltuples::int as rows, relpages::int as pages from pg_catalog.pg_class where oid = to_regclass($1)',
            [partition],
          )
        ).rows[0] as { rows: number; pages: number } | undefined;
      expect(await statistics()).toBeUndefined();
      const ingest = (from: number) =>
        db.query('select public.ingest_execution_page($1, $2, $3::jsonb)', [
          lease.source_id,
          lease.lease_token,
          page(start, from),
        ]);

      await ingest(1);
      // -1 means never analyzed; the planner then guesses instead of measuring.
      expect((await statistics())?.rows).toBeGreaterThanOrEqual(0);

      for (let from = 251; from < 40 * 250; from += 250) await ingest(from);
      const after = await statistics();
      expect(after?.pages).toBeGreaterThanOrEqual(128);
      expect(after?.rows).toBeGreaterThanOrEqual(5000);
    });
  });
});

describe('the upkeep dropping a month past the retention', () => {
  it('waits for an ingest writing to that month, and a later ingest makes it again: nothing lands in the default partition', async () => {
    const lease = await leasedSource();
    const { start, partition } = await monthAgo(5);
    await inTransaction(
      async (writer) => {
        await writer.query('select public.ingest_execution_page($1, $2, $3::jsonb)', [
          lease.source_id,
          lease.lease_token,
          page(start, 1),
        ]);
        await writer.query('commit');
        // The next page's ingest has made sure of the partition and holds it, not committed yet.
        await writer.query('begin');
        await writer.query('select private.ensure_execution_partition($1)', [new Date(start)]);
        await writer.query('select private.hold_execution_partitions(array[$1::timestamptz])', [
          new Date(start),
        ]);
        // On a connection of its own: the file's pool has two, the writer's and the lock check's.
        const upkeep = new pg.Client({ connectionString: own.stack.databaseUrl });
        await upkeep.connect();
        const dropping = upkeep
          .query('select public.maintain_execution_partitions(retention_months => 2) as dropped')
          .finally(() => upkeep.end());
        await waitForLockWait({ queryLike: 'maintain_execution_partitions' }, own.pool);
        await writer.query(
          `insert into public.executions (source_id, execution_id, tenant_id, workflow_id, mode, status,
           started_at, stopped_at, occurred_at, duration_ms, billable, period_start)
         select $1, 9999, s.tenant_id, 'wf1', 'trigger', 'success', $2, $2, $2, 0, true, date_trunc('month', $2::timestamptz)
         from public.n8n_sources s where s.id = $1`,
          [lease.source_id, new Date(start + 600_000)],
        );
        await writer.query('commit');
        const dropped = (await dropping).rows.map((r) => r.dropped);
        expect(dropped).toContain(partition.replace('private.', ''));
      },
      { pool: own.pool },
    );
    const inDefault = async () =>
      (await own.pool.query('select count(*)::int as n from private.executions_default')).rows[0]
        .n as number;
    expect(await inDefault()).toBe(0);

    // The month comes back with the next page of it.
    await asServiceRole((db) =>
      db.query('select public.ingest_execution_page($1, $2, $3::jsonb)', [
        lease.source_id,
        lease.lease_token,
        page(start, 251),
      ]),
    );
    const { rows } = await own.pool.query('select to_regclass($1) is not null as present', [
      partition,
    ]);
    expect(rows[0].present).toBe(true);
    expect(await inDefault()).toBe(0);
  });
});

describe('a month dropped between making sure of its partition and holding it', () => {
  it('fails the ingest with a retryable error and stores nothing, in the default partition least of all', async () => {
    const { start } = await monthAgo(6);
    await own.pool.query('select private.ensure_execution_partition($1)', [new Date(start)]);
    await inTransaction(
      async (writer) => {
        await writer.query('select private.ensure_execution_partition($1)', [new Date(start)]);
        // The upkeep runs in between: nothing holds the partition yet, so it goes at once.
        await own.pool.query('select public.maintain_execution_partitions(retention_months => 2)');
        await expect(
          writer.query('select private.hold_execution_partitions(array[$1::timestamptz])', [
            new Date(start),
          ]),
        ).rejects.toMatchObject({ code: '40001' });
      },
      { pool: own.pool },
    );
    const { rows } = await own.pool.query(
      'select count(*)::int as n from private.executions_default',
    );
    expect(rows[0].n).toBe(0);
  });
});
