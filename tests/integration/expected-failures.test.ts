import { describe, expect, it } from 'vitest';
import { runReconciliation } from '../../src/billing/reconcile.ts';
import { refreshInvoicePreviews } from '../../src/billing/refresh-invoice-previews.ts';
import { runReporter } from '../../src/billing/report-usage.ts';
import { sendCorrections } from '../../src/billing/send-corrections.ts';
import { runCollection } from '../../src/collector/run-collection.ts';
import type { Db } from '../../src/db/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  createSource,
  fastN8nClient,
  keyring,
  testSettings,
  useN8nServer,
} from '../support/collector.ts';
import { dropRequest, faultyDb, rpcFetch } from '../support/faults.ts';
import { stripe } from '../support/stripe-events.ts';

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

  /** PostgREST's answer with this status and SQLSTATE. */
  const answered = (status: number, code: string, message: string) => () =>
    Promise.resolve(Response.json({ code, message, details: null, hint: null }, { status }));

  /**
   * How a billing run's first call can fail: only a database that did not answer is an
   * outage (try again); one that answered with a refusal (a privilege the deployment lacks)
   * or an error of its own is a fault to fix, never reported as the database being down.
   */
  const FAILURES = [
    ['never reaches the database', dropRequest, 'unavailable'],
    ['is refused a privilege', answered(403, '42501', 'permission denied'), 'unauthorized'],
    ['fails inside the database', answered(500, 'XX000', 'internal error'), 'internal'],
  ] as const;

  /** A service client whose calls of `fn` fail as `answer` says. */
  const dbFailing = (fn: string, answer: (typeof FAILURES)[number][1]) =>
    faultyDb(rpcFetch((call, send) => (call.fn === fn ? answer(call) : send())));

  const BILLING_RUNS: Array<[string, (db: Db) => Promise<{ ok: boolean }>]> = [
    [
      'claim_meter_deltas',
      (db) =>
        runReporter({
          db,
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
        }),
    ],
    [
      'reconcile_counters',
      (db) =>
        runReconciliation({
          db,
          stripe: null,
          log: silentLogger,
          since: new Date(),
          tenantIds: [],
        }),
    ],
    [
      'claim_meter_corrections',
      (db) =>
        sendCorrections({
          db,
          stripe,
          log: silentLogger,
          tenantIds: [],
          finalizationGraceMinutes: 60,
        }),
    ],
    [
      'invoice_preview_targets',
      (db) =>
        refreshInvoicePreviews({ db, stripe, log: silentLogger, tenantIds: [], maxAgeSeconds: 60 }),
    ],
  ];

  describe.each(FAILURES)('a billing run whose first call %s', (_, answer, code) => {
    it.each(BILLING_RUNS)(`answers ${code} when %s fails, naming the call`, async (fn, run) => {
      expect(await run(dbFailing(fn, answer))).toMatchObject({
        ok: false,
        error: { code, message: expect.stringContaining(`${fn} failed`) },
      });
    });
  });
});
