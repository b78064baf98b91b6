import { Agent, request } from 'undici';
import { afterAll, describe, expect, it } from 'vitest';
import { stack } from '../support/stack.ts';

/**
 * The local RPC endpoint under many concurrent calls from one client, as the collector's
 * fan-out makes them: every call is queued for one of the pool's few connections and
 * answered, and a client whose event loop stalls (a loaded machine) finds its kept-alive
 * connections still open when it wakes up.
 */

// undici's defaults, as in the global dispatcher src/db/fetch.ts sends through.
const agent = new Agent();
afterAll(() => agent.close());

const CONCURRENT = 160;

async function call(): Promise<number | string> {
  try {
    const response = await request(`${stack.supabaseUrl}/rest/v1/rpc/collector_health`, {
      dispatcher: agent,
      method: 'POST',
      headers: {
        apikey: stack.serviceRoleKey,
        authorization: `Bearer ${stack.serviceRoleKey}`,
        'content-type': 'application/json',
      },
      body: '{}',
    });
    await response.body.arrayBuffer();
    return response.statusCode;
  } catch (error) {
    const cause = (error as { code?: string; message: string }).code;
    return cause ?? (error as Error).message;
  }
}

const burst = () => Promise.all(Array.from({ length: CONCURRENT }, call));

/** Blocks this thread, as CPU starvation does, past the keep-alive Node's server defaults to. */
function stall(ms: number) {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // Nothing runs meanwhile: no timer, no socket event.
  }
}

describe('the local RPC endpoint under concurrent calls', () => {
  it(`answers ${CONCURRENT} concurrent calls, queued behind its pool`, async () => {
    expect(await burst()).toEqual(Array(CONCURRENT).fill(200));
  });

  it('keeps idle connections open for a client that stalled, so its next calls succeed', async () => {
    expect(await burst()).toEqual(Array(CONCURRENT).fill(200));
    // Node closes an idle connection 5 s (+1 s) after its last answer by default; a client
    // stalled meanwhile cannot see the close before it sends on the connection again.
    stall(7000);
    expect(await burst()).toEqual(Array(CONCURRENT).fill(200));
  });
});
