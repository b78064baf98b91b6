import { describe, expect, it } from 'vitest';
import { fail, ok } from '../../src/domain/result.ts';
import { type UpkeepSummary, withUpkeep } from '../../src/ops/upkeep.ts';

const clean: UpkeepSummary = { droppedPartitions: [], pruned: { reservations: 3 }, failed: [] };
const failing: UpkeepSummary = {
  ...clean,
  failed: ['prune_history failed: permission denied', 'maintain_execution_partitions failed: x'],
};

describe('a run that did the upkeep first', () => {
  it('answers as the run did when the upkeep went well', () => {
    expect(withUpkeep(clean, ok({ sourcesOk: 3 }))).toEqual(ok({ sourcesOk: 3 }));
  });

  it('reads as failed when the upkeep failed, naming what failed and keeping what the run did', () => {
    expect(withUpkeep(failing, ok({ sourcesOk: 3 }))).toEqual(
      fail(
        'internal',
        'storage upkeep failed (prune_history failed: permission denied; maintain_execution_partitions failed: x); the collection itself ran',
        { value: { sourcesOk: 3 } },
      ),
    );
  });

  it('keeps the run’s own failure first', () => {
    const failed = fail('unavailable', 'claim_collector_sources failed: no answer');
    expect(withUpkeep(failing, failed)).toBe(failed);
  });
});
