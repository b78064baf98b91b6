import { describe, expect, it } from 'vitest';
import {
  type CollectorHealth,
  collectorAttention,
  collectorHealthSchema,
} from '../../src/ops/collector-health.ts';
import { healthyCollector as healthy } from '../support/healthy-status.ts';

const latestRun = healthy.latest_scheduled_run as NonNullable<
  CollectorHealth['latest_scheduled_run']
>;
const { killed: _, ...backgroundRun } = latestRun;
/** What the collector asks of a person when its health differs from healthy by `changes`. */
const attentionWith = (changes: Partial<CollectorHealth>, perTenant = false) =>
  collectorAttention({ ...healthy, ...changes }, { perTenant });
/** What the collector asks of a person when its latest scheduled run differs by `changes`. */
const withLatest = (changes: Partial<typeof latestRun>, perTenant = false) =>
  attentionWith({ latest_scheduled_run: { ...latestRun, ...changes } }, perTenant);

describe('collectorAttention', () => {
  it('is silent when the collector is healthy', () => {
    expect(collectorAttention(healthy, { perTenant: false })).toEqual([]);
  });

  it('flags a scheduled run that finished with failures, with its first error', () => {
    const lines = withLatest({
      sources_failed: 2,
      first_error: 'n8n at https://a.example rejected the API key (401)',
    });
    expect(lines).toEqual([
      'the latest scheduled collection (2026-12-01T12:00:00Z) finished with 2 failed sources (n8n at https://a.example rejected the API key (401)): see the sources above',
    ]);
  });

  it('flags a run that could not reach the database', () => {
    const lines = withLatest({ database_unreachable: true });
    expect(lines.join()).toMatch(/could not reach the database: check SUPABASE_URL/);
  });

  it('flags killed runs with what they committed, dead leases with how long, and gaps by kind', () => {
    const lines = attentionWith({
      killed_runs: [
        {
          id: 'k',
          trigger: 'schedule',
          started_at: '2026-12-01T11:00:00Z',
          pages: 7,
          executions_ingested: 1750,
          billable_counted: 1700,
        },
      ],
      dead_leases: [
        {
          source_id: '3666cbfb-91f2-4630-8cc3-d426717c4ec7',
          tenant_id: 't',
          base_url: 'https://acme.app.n8n.cloud',
          lease_expired_at: '2026-12-01T11:30:00Z',
          held_for_seconds: 7200,
        },
      ],
      unacknowledged_gaps: {
        gaps: 3,
        executions: 12,
        by_kind: { pruned: 10, missing: 2 },
        sources: 1,
        oldest_detected_at: '2026-12-01T10:00:00Z',
      },
    });
    expect(lines).toEqual([
      '1 collector run in the last day never finished (killed or timed out; the latest, schedule at 2026-12-01T11:00:00Z, had committed 7 pages, 1,750 executions): check the function logs',
      'source 3666cbfb (https://acme.app.n8n.cloud) is held by a lease that ran out unreleased (its run died, or never learned it held it), for 2 h: the next run takes it over; if this persists, check that collect-usage runs',
      '3 gaps (12 executions possibly uncounted: 10 pruned, 2 missing) since the last acknowledgement: see `flowmeter sources list`, then `flowmeter sources acknowledge-gaps`',
    ]);
  });

  it('flags sources every run defers, with how long and what to configure or raise', () => {
    const lines = attentionWith(
      {
        deferred_sources: {
          count: 2,
          longest: [
            {
              source_id: '3666cbfb-91f2-4630-8cc3-d426717c4ec7',
              tenant_id: 't',
              base_url: 'https://slow.app.n8n.cloud',
              last_success_at: null,
              last_walk_completed_at: null,
              uncollected_seconds: 2400,
            },
          ],
        },
      },
      true,
    );
    expect(lines).toEqual([
      '2 sources not collected for 30 minutes or more although every collector run takes them: each run cuts their walks at its budget and defers them (the longest: 3666cbfb (https://slow.app.n8n.cloud), for 40 min, its walk never completed): unless FLOWMETER_INTERNAL_SECRET and URL are set, set them so that collect-usage hands walks unfinished at its budget to collect-usage-background; with or without them, raising COLLECTOR_BUDGET_SECONDS or COLLECTOR_CONCURRENCY gives each walk more; if its n8n answers slowly or not at all, `flowmeter sources test 3666cbfb-91f2-4630-8cc3-d426717c4ec7` shows it',
    ]);
  });

  it('flags a scheduled run that failed as a whole, and one that lost leases to another run', () => {
    expect(
      withLatest({ failure: 'claim_collector_sources failed: permission denied', sources_ok: 0 }),
    ).toEqual([
      'the latest scheduled collection (2026-12-01T12:00:00Z) failed as a whole (claim_collector_sources failed: permission denied): check the function logs; its sources stay due and the next run collects them',
    ]);
    expect(withLatest({ sources_lease_lost: 2 })).toEqual([
      'the latest scheduled collection (2026-12-01T12:00:00Z) found 2 sources taken over by another run (its lease ran out first): if this repeats, check that runs do not overlap for longer than COLLECTOR_LEASE_SECONDS',
    ]);
  });

  it('flags background runs that ended badly, not only the scheduled one', () => {
    const lines = attentionWith({
      failed_background_runs: {
        count: 7,
        latest: [
          {
            ...backgroundRun,
            id: 'b1',
            started_at: '2026-12-01T12:00:02Z',
            database_unreachable: true,
            failure: 'resume_collector_sources failed: fetch failed',
          },
          {
            ...backgroundRun,
            id: 'b2',
            started_at: '2026-12-01T12:00:03Z',
            sources_lease_lost: 1000,
          },
          {
            ...backgroundRun,
            id: 'b3',
            started_at: '2026-12-01T12:00:04Z',
            sources_failed: 1,
            first_error: 'n8n answered 500',
          },
        ],
      },
    });
    expect(lines).toEqual([
      "a background collection (2026-12-01T12:00:02Z) could not reach the database (resume_collector_sources failed: fetch failed): check SUPABASE_URL and the database's availability",
      'a background collection (2026-12-01T12:00:03Z) found 1,000 sources taken over by another run (its lease ran out first): if this repeats, check that runs do not overlap for longer than COLLECTOR_LEASE_SECONDS',
      'a background collection (2026-12-01T12:00:04Z) finished with 1 failed source (n8n answered 500): see the sources above',
      '4 more background collections since the latest scheduled one ended badly: check the collect-usage-background logs',
    ]);
    expect(attentionWith({ failed_background_runs: { count: 7, latest: [] } }, true)).toEqual([]);
  });

  it.each([
    [
      'https://flowmeter.example/.netlify/functions/collect-usage-background answered 401',
      'set the same FLOWMETER_INTERNAL_SECRET for collect-usage and collect-usage-background',
    ],
    [
      'https://flowmeter.example/.netlify/functions/collect-usage-background could not be reached: fetch failed',
      'check that URL is the site URL and collect-usage-background is deployed',
    ],
    [
      'https://flowmeter.example/.netlify/functions/collect-usage-background did not answer before the run had to end',
      'collect-usage-background answers at once when deployed: if this repeats, check that URL is the site URL, or lower COLLECTOR_BUDGET_SECONDS so the hand-off starts earlier',
    ],
  ])('flags hand-offs refused (%s) with what to do', (error, advice) => {
    const lines = withLatest({ sources_handoff_refused: 1200, handoff_error: error });
    expect(lines).toEqual([
      `the latest scheduled collection (2026-12-01T12:00:00Z) could not hand 1,200 sources to collect-usage-background (${error}): ${advice}; they stay due and the next run collects them`,
    ]);
  });

  it('limited to some tenants, leaves run-wide findings out', () => {
    const lines = withLatest({ sources_failed: 1 }, true);
    expect(lines).toEqual([]);
  });

  it('writes large counts with thousands separators, as every other count a person reads', () => {
    const lines = attentionWith({
      unacknowledged_gaps: {
        ...healthy.unacknowledged_gaps,
        gaps: 1,
        executions: 12500,
        by_kind: { pruned: 12500 },
      },
    });
    expect(lines[0]).toMatch(/^1 gap \(12,500 executions possibly uncounted/);
  });
});

describe('collectorHealthSchema', () => {
  const deadLease = {
    source_id: 's1',
    tenant_id: 't1',
    base_url: 'https://n8n.example',
    lease_expired_at: '2026-12-01T11:50:00.123456+00:00',
    held_for_seconds: 900,
  };
  const killedRun = {
    id: 'r0',
    trigger: 'schedule',
    started_at: '2026-12-01T11:40:00+00:00',
    pages: 1,
    executions_ingested: 10,
    billable_counted: 9,
  };
  const full = {
    ...healthy,
    failed_background_runs: { count: 1, latest: [{ ...backgroundRun }] },
    killed_runs: [killedRun],
    dead_leases: [deadLease],
  };

  it('reads every time as PostgreSQL writes a timestamptz', () => {
    expect(collectorHealthSchema.safeParse(full).success).toBe(true);
  });

  // Each time the health page shows or its rules weigh, with a value no timestamptz has.
  it.each([
    [
      ['latest_scheduled_run', 'started_at'],
      { latest_scheduled_run: { ...latestRun, started_at: 'now' } },
    ],
    [
      ['latest_scheduled_run', 'finished_at'],
      { latest_scheduled_run: { ...latestRun, finished_at: '2026-12-01' } },
    ],
    [
      ['failed_background_runs', 'latest', 0, 'started_at'],
      { failed_background_runs: { count: 1, latest: [{ ...backgroundRun, started_at: '12:00' }] } },
    ],
    [['killed_runs', 0, 'started_at'], { killed_runs: [{ ...killedRun, started_at: '' }] }],
    [
      ['dead_leases', 0, 'lease_expired_at'],
      { dead_leases: [{ ...deadLease, lease_expired_at: '2026-12-01 11:50:00' }] },
    ],
    [
      ['unacknowledged_gaps', 'oldest_detected_at'],
      { unacknowledged_gaps: { ...healthy.unacknowledged_gaps, oldest_detected_at: 'yesterday' } },
    ],
  ])('refuses a malformed time at %j', (path, change) => {
    const refused = collectorHealthSchema.safeParse({ ...full, ...change });
    expect(refused.error?.issues).toEqual([
      expect.objectContaining({ path, message: 'Invalid ISO datetime' }),
    ]);
  });
});
