import { describe, expect, it } from 'vitest';
import {
  MAX_HOLE_SPAN,
  toIngestRow,
  type WalkPosition,
  walkStep,
} from '../../src/collector/walk.ts';
import type { N8nExecution, N8nPage } from '../../src/n8n/schemas.ts';

const execution = (id: number, startedAt = '2026-11-20T10:00:00.000Z'): N8nExecution => ({
  id: String(id),
  mode: 'trigger',
  status: 'success',
  startedAt,
  stoppedAt: startedAt,
  workflowId: 'wf1',
  retryOf: null,
  retrySuccessId: null,
  waitTill: null,
});
const page = (ids: number[], nextCursor: string | null = 'more'): N8nPage => ({
  data: ids.map((id) => execution(id)),
  nextCursor,
});
const at = (overrides: Partial<WalkPosition> = {}): WalkPosition => ({
  floorId: 0,
  lowestSeenId: null,
  topId: null,
  backfillFrom: null,
  filtered: false,
  ...overrides,
});

describe('walkStep', () => {
  it('continues while the page is above the floor and records the top id', () => {
    const step = walkStep(at({ floorId: 100 }), page([200, 199, 198], 'c2'));
    expect(step.progress).toEqual({ cursor: 'c2', top_id: 200, done: false });
    expect(step.executions.map((e) => e.id)).toEqual(['200', '199', '198']);
    expect(step.lowestId).toBe(198);
  });

  it('stops at the page that reaches the floor and ingests only ids above it', () => {
    const step = walkStep(
      at({ floorId: 100, topId: 300, lowestSeenId: 103 }),
      page([102, 101, 100, 99], 'c9'),
    );
    expect(step.progress).toEqual({ cursor: null, top_id: 300, done: true });
    expect(step.executions.map((e) => e.id)).toEqual(['102', '101']);
    expect(step.progress.gap).toBeUndefined();
  });

  it('keeps the highest top id across pages of one walk', () => {
    expect(walkStep(at({ topId: 500 }), page([400, 399])).progress.top_id).toBe(500);
  });

  it('reports a pruning gap when the list ends above the floor', () => {
    const step = walkStep(at({ floorId: 50, lowestSeenId: 400 }), page([399, 351], null));
    expect(step.progress.done).toBe(true);
    expect(step.progress.gap).toMatchObject({ from_id: 51, to_id: 350 });
  });

  it('reports no gap when the list ends right above the floor, or on a first walk', () => {
    expect(walkStep(at({ floorId: 50 }), page([52, 51], null)).progress.gap).toBeUndefined();
    expect(walkStep(at({ floorId: 0 }), page([52, 40], null)).progress.gap).toBeUndefined();
  });

  it('an empty last page after earlier pages reports the gap below the lowest id seen', () => {
    const step = walkStep(at({ floorId: 10, lowestSeenId: 20, topId: 30 }), page([], null));
    expect(step.progress.gap).toMatchObject({ from_id: 11, to_id: 19 });
  });

  it('lists the ids the page skipped as holes, down to the floor when it is reached', () => {
    const step = walkStep(at({ floorId: 95, lowestSeenId: 110 }), page([108, 105, 104, 90]));
    expect(step.holes).toEqual([109, 107, 106, 103, 102, 101, 100, 99, 98, 97, 96]);
  });

  it('skips a run of missing ids longer than MAX_HOLE_SPAN', () => {
    const step = walkStep(at(), page([MAX_HOLE_SPAN + 10, 5, 3]));
    expect(step.holes).toEqual([4]);
  });

  it('a filtered listing yields no holes below its last item', () => {
    const step = walkStep(at({ filtered: true }), page([10, 8], null));
    expect(step.holes).toEqual([9]);
    const unfiltered = walkStep(at(), page([10, 8], null));
    expect(unfiltered.holes).toEqual([9, 7, 6, 5, 4, 3, 2, 1]);
  });

  it('during a backfill, ingests nothing started before the period and stops at a page wholly before it', () => {
    const backfillFrom = new Date('2026-11-01T00:00:00Z');
    const mixed: N8nPage = {
      data: [execution(12, '2026-11-01T00:00:01Z'), execution(11, '2026-10-31T23:59:59Z')],
      nextCursor: 'c',
    };
    const step = walkStep(at({ backfillFrom }), mixed);
    expect(step.executions.map((e) => e.id)).toEqual(['12']);
    expect(step.progress.done).toBe(false);

    const before: N8nPage = { data: [execution(10, '2026-10-30T00:00:00Z')], nextCursor: 'c' };
    expect(walkStep(at({ backfillFrom }), before).progress.done).toBe(true);
  });

  it('keeps queued executions (no startedAt yet) during a backfill', () => {
    const queued = { ...execution(7), status: 'new' as const, startedAt: null };
    const step = walkStep(at({ backfillFrom: new Date('2026-11-01T00:00:00Z') }), {
      data: [queued],
      nextCursor: null,
    });
    expect(step.executions).toHaveLength(1);
  });
});

describe('toIngestRow', () => {
  it('sends what n8n has of an execution and leaves out the times and retry it has not', () => {
    expect(toIngestRow(execution(7))).toEqual({
      id: '7',
      status: 'success',
      mode: 'trigger',
      workflow_id: 'wf1',
      started_at: '2026-11-20T10:00:00.000Z',
      stopped_at: '2026-11-20T10:00:00.000Z',
    });
    expect(
      toIngestRow({
        ...execution(8),
        status: 'new',
        startedAt: null,
        stoppedAt: null,
        retryOf: '5',
      }),
    ).toEqual({ id: '8', status: 'new', mode: 'trigger', workflow_id: 'wf1', retry_of: '5' });
  });
});
