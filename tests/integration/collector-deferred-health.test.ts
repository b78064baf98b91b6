import { describe, expect, it } from 'vitest';
import { createN8nClient } from '../../src/n8n/client.ts';
import {
  collect,
  createSource,
  listRequest,
  sourceState,
  storedExecutionIds,
  useN8nServer,
} from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';
import { statusEndpoint } from '../support/status.ts';

/**
 * Without a background function (a supported setup), a source whose n8n never answers a
 * page within the scheduled budget is deferred run after run. Nothing is ever collected from
 * it, yet each deferral is released as a success: health must not call it healthy.
 */

const server = useN8nServer();
const { forTenants } = statusEndpoint();

const patientClient = ({ baseUrl, apiKey }: { baseUrl: string; apiKey: string }) =>
  createN8nClient({ baseUrl, apiKey, timeoutMs: 60_000, retries: 0 });

describe('a source deferred run after run (its n8n never answers within the budget)', () => {
  it('is not reported as collected, nor the status as healthy', async () => {
    const source = await createSource(server);
    source.fake.addMany(10, (i) => ({ startedAt: recent(300 - i) }));
    // Added 40 minutes ago: four collector cycles, none of which collected anything.
    await superuser().query(
      `update public.n8n_sources set created_at = now() - interval '40 minutes' where id = $1`,
      [source.sourceId],
    );
    for (let run = 1; run <= 3; run++) {
      source.fake.failNext({ kind: 'hang' }, 1);
      const budget = new AbortController();
      void listRequest(source, run).then(() => setTimeout(() => budget.abort(), 20));
      // No handOff: the deferred source is freed for the next run, as documented.
      const summary = await collect([source], {
        createN8nClient: patientClient,
        budgetSignal: budget.signal,
      });
      expect(summary.sourcesDeferred).toBe(1);
    }
    expect(await storedExecutionIds(source.sourceId)).toEqual([]);

    const state = await sourceState(source.sourceId);
    // Nothing was ever collected from this source.
    expect.soft(state.last_success_at).toBeNull();

    const body = (await (await forTenants([source.tenantId])).json()) as {
      needs_attention: string[];
    };
    expect.soft(body.needs_attention.join('\n')).toMatch(/not collected|failing|deferred/);
    // Named for what it is, runs taking it but never getting through, with what to change;
    // not as a source no run takes.
    const finding = body.needs_attention.find((line) => line.includes(source.sourceId.slice(0, 8)));
    expect(finding).toMatch(
      /although every collector run takes it: each run cuts its walk at its budget/,
    );
    expect(finding).toMatch(
      /its walk never completed\): unless FLOWMETER_INTERNAL_SECRET and URL are set, set them/,
    );
    expect(body.needs_attention.join('\n')).not.toMatch(/without an error/);
  });
});
