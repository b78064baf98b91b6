import { describe, expect, it } from 'vitest';
import { fail } from '../../src/domain/result.ts';
import {
  collect,
  createSource,
  sourceState,
  storedExecutionIds,
  useN8nServer,
} from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';

/**
 * Without FLOWMETER_INTERNAL_SECRET and URL (a supported setup: "the scheduled run collects
 * its own share, frees the rest, and the next run resumes"), every due source must still be
 * collected within a few cycles, and a source nobody collected must not read as collected.
 */

const server = useN8nServer();

describe('more due sources than one scheduled run collects itself, no background function', () => {
  it('collects every source within a few cycles', async () => {
    const sources = await Promise.all([1, 2, 3].map(() => createSource(server)));
    for (const s of sources) s.fake.addMany(5, (i) => ({ startedAt: recent(300 - i) }));

    for (let cycle = 1; cycle <= 4; cycle++) {
      await collect(sources, {
        trigger: 'schedule',
        // What backgroundHandOff answers without FLOWMETER_INTERNAL_SECRET or URL.
        handOff: async () => fail('not_configured', 'FLOWMETER_INTERNAL_SECRET or URL is not set'),
        // Its own share: concurrency × budget seconds = 1 source.
        settings: { concurrency: 1, budgetMs: 1000 },
      });
    }

    const stored = await Promise.all(sources.map((s) => storedExecutionIds(s.sourceId)));
    const states = await Promise.all(sources.map((s) => sourceState(s.sourceId)));
    for (const [i, ids] of stored.entries()) {
      // A source with nothing stored must not have a last success.
      if (ids.length === 0) expect.soft(states[i].last_success_at).toBeNull();
    }
    expect(stored.map((ids) => ids.length)).toEqual([5, 5, 5]);
  });
});
