import { describe, expect, it } from 'vitest';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { runCollection } from '../../src/collector/run-collection.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  createSource,
  fastN8nClient,
  keyring,
  testSettings,
  useN8nServer,
} from '../support/collector.ts';
import { dropRequest, faultyDb, rpcFetch } from '../support/faults.ts';

const server = useN8nServer();

/** A service client whose calls of `fn` never reach the database. */
const dbWithout = (fn: string) =>
  faultyDb(rpcFetch((call, send) => (call.fn === fn ? dropRequest(call) : send())));

/** A manual collector run over one source, on a client whose calls of `fn` are dropped. */
const collectWithout = (fn: string, source: { sourceId: string }) =>
  runCollection({
    db: dbWithout(fn),
    keyring,
    log: silentLogger,
    trigger: 'manual',
    createN8nClient: fastN8nClient(),
    select: { sourceIds: [source.sourceId] },
    settings: testSettings,
  });

describe('a database that fails a run is a failure value, not a thrown string', () => {
  it.each(['start_collector_run', 'claim_collector_sources'])(
    'the collector answers unavailable when %s fails',
    async (fn) => {
      const result = await collectWithout(fn, await createSource(server));
      expect(result).toMatchObject({
        ok: false,
        error: { code: 'unavailable', message: expect.stringContaining(fn) },
      });
    },
  );

  it('a source whose page the database does not take fails alone, with the reason', async () => {
    const source = await createSource(server);
    source.fake.addMany(3);
    const result = await collectWithout('ingest_execution_page', source);
    expect(result.ok && result.value.errors).toEqual([
      {
        source_id: source.sourceId,
        tenant_id: source.tenantId,
        error: expect.stringContaining('the database could not be reached (ingest_execution_page'),
      },
    ]);
  });

  it('the reporter answers unavailable when the ledger cannot be claimed', async () => {
    const result = await runReporter({
      db: dbWithout('claim_meter_deltas'),
      stripe: null,
      log: silentLogger,
      tenantIds: [],
      settings: {
        budgetMs: 1000,
        ratePerSecond: 10,
        concurrency: 1,
        maxRows: 10,
        finalizationGraceMinutes: 60,
      },
    });
    expect(result).toMatchObject({
      ok: false,
      error: { code: 'unavailable', message: expect.stringContaining('claim_meter_deltas') },
    });
  });

  it('reconciliation answers unavailable when the counters cannot be recomputed', async () => {
    const result = await runReconciliation({
      db: dbWithout('reconcile_counters'),
      stripe: null,
      log: silentLogger,
      since: new Date(),
      tenantIds: [],
    });
    expect(result).toMatchObject({
      ok: false,
      error: { code: 'unavailable', message: expect.stringContaining('reconcile_counters') },
    });
  });
});
