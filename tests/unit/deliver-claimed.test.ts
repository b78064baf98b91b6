import { describe, expect, it } from 'vitest';
import { rpcResult } from '../../src/db/rpc-result.ts';
import {
  type Attempt,
  type DeliveryOutbox,
  deliverClaimed,
} from '../../src/domain/deliver-claimed.ts';
import { fail, ok } from '../../src/domain/result.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { postgrestError } from '../support/rpc-stub.ts';

interface Delivery {
  id: number;
  lane: string;
  /** What the destination does with it. */
  answer: 'ok' | 'fail' | 'last';
}

/** A delivery's key in this outbox. */
interface Key {
  id: number;
}

/** An outbox over plain values: its claim hands out `due`, its finish answers as SQL would. */
function outbox(due: Delivery[], overrides: Partial<DeliveryOutbox<Delivery, Attempt, Key>> = {}) {
  const sent: number[] = [];
  const finished: { id: number; outcome: { delivered: boolean; error?: string } }[] = [];
  const givenBack: number[] = [];
  let sending = 0;
  let mostAtOnce = 0;
  const run: DeliveryOutbox<Delivery, Attempt, Key> = {
    noun: 'test',
    defaults: { maxRows: 10, leaseSeconds: 60, concurrency: 2 },
    claim: async (lease) => ok(due.slice(0, lease.max_rows)),
    laneOf: (d) => d.lane,
    key: (d) => ({ id: d.id }),
    context: (d) => ({ id: d.id }),
    send: async (d) => {
      sending += 1;
      mostAtOnce = Math.max(mostAtOnce, sending);
      await new Promise((resolve) => setTimeout(resolve, 5));
      sent.push(d.id);
      sending -= 1;
      return { error: d.answer === 'ok' ? null : 'boom' };
    },
    giveBack: async (keys) => {
      givenBack.push(...keys.map((k) => k.id));
      return { data: keys.length, error: null, status: 200 };
    },
    finish: async ({ id, ...outcome }) => {
      finished.push({ id, outcome });
      return {
        data: {
          status: outcome.delivered ? 'delivered' : 'failed',
          next_attempt_at: due.find((d) => d.id === id)?.answer === 'last' ? null : 'later',
        },
        error: null,
        status: 200,
      };
    },
    ...overrides,
  };
  return { run, sent, finished, givenBack, mostAtOnce: () => mostAtOnce };
}

describe('delivering claimed deliveries', () => {
  it('sends a lane one at a time in claim order, lanes side by side up to the concurrency', async () => {
    const due: Delivery[] = [
      { id: 1, lane: 'a', answer: 'ok' },
      { id: 2, lane: 'b', answer: 'ok' },
      { id: 3, lane: 'a', answer: 'ok' },
      { id: 4, lane: 'c', answer: 'ok' },
      { id: 5, lane: 'a', answer: 'ok' },
    ];
    const { run, sent, mostAtOnce } = outbox(due);
    await deliverClaimed({ log: silentLogger }, run);
    expect(sent.filter((id) => [1, 3, 5].includes(id))).toEqual([1, 3, 5]);
    expect(mostAtOnce()).toBe(2);
  });

  it('without lanes every delivery is its own', async () => {
    const due = [1, 2, 3].map((id): Delivery => ({ id, lane: 'same', answer: 'ok' }));
    const { run, mostAtOnce } = outbox(due, { laneOf: undefined });
    await deliverClaimed({ log: silentLogger, concurrency: 3 }, run);
    expect(mostAtOnce()).toBe(3);
  });

  it('records each outcome and sums up delivered, failed and given up', async () => {
    const due: Delivery[] = [
      { id: 1, lane: 'a', answer: 'ok' },
      { id: 2, lane: 'b', answer: 'fail' },
      { id: 3, lane: 'c', answer: 'last' },
    ];
    const { run, finished } = outbox(due);
    expect(await deliverClaimed({ log: silentLogger }, run)).toEqual(
      ok({ claimed: 3, delivered: 1, failed: 1, gaveUp: 1, deferred: 0 }),
    );
    expect(finished.sort((x, y) => x.id - y.id)).toEqual([
      { id: 1, outcome: { delivered: true } },
      { id: 2, outcome: { delivered: false, error: 'boom' } },
      { id: 3, outcome: { delivered: false, error: 'boom' } },
    ]);
  });

  it('starts no send after startBy: the rest of the claim is deferred, not sent or recorded', async () => {
    const due: Delivery[] = [
      { id: 1, lane: 'slow', answer: 'ok' },
      { id: 2, lane: 'slow', answer: 'ok' },
      { id: 3, lane: 'slow', answer: 'ok' },
    ];
    // The first send is still going when startBy passes: its lane's next ones are not sent.
    const startBy = Date.now() + 500;
    const { run, sent, finished, givenBack } = outbox(due);
    const send = run.send;
    run.send = async (d) => {
      while (Date.now() <= startBy) await new Promise((resolve) => setTimeout(resolve, 10));
      return send(d);
    };
    const summary = await deliverClaimed({ log: silentLogger, startBy }, run);
    expect(summary).toEqual(ok({ claimed: 3, delivered: 1, failed: 0, gaveUp: 0, deferred: 2 }));
    expect(sent).toEqual([1]);
    expect(finished.map((f) => f.id)).toEqual([1]);
    // Handed back in one call, their attempt not counted.
    expect(givenBack).toEqual([2, 3]);
    const past = outbox(due);
    expect(await deliverClaimed({ log: silentLogger, startBy: Date.now() - 1 }, past.run)).toEqual(
      ok({ claimed: 3, delivered: 0, failed: 0, gaveUp: 0, deferred: 3 }),
    );
    expect(past.sent).toEqual([]);
  });

  it('tries a give-back that got no answer again, while the lease lasts, and not one refused', async () => {
    const due = [1, 2].map((id): Delivery => ({ id, lane: String(id), answer: 'ok' }));
    const answers = [
      { data: null, error: { message: 'fetch failed' }, status: 0 },
      { data: null, error: { message: 'upstream' }, status: 503 },
      { data: 2, error: null, status: 200 },
    ];
    const calls: number[][] = [];
    const { run, sent } = outbox(due, {
      giveBack: async (keys) => {
        calls.push(keys.map((k) => k.id));
        return answers.shift() ?? { data: 0, error: null, status: 200 };
      },
    });
    const summary = await deliverClaimed({ log: silentLogger, startBy: Date.now() - 1 }, run);
    expect(summary).toEqual(ok({ claimed: 2, delivered: 0, failed: 0, gaveUp: 0, deferred: 2 }));
    expect(sent).toEqual([]);
    expect(calls).toEqual([
      [1, 2],
      [1, 2],
      [1, 2],
    ]);

    const refusedCalls: number[] = [];
    const refused = outbox(due, {
      giveBack: async (keys) => {
        refusedCalls.push(keys.length);
        return { data: null, error: { message: 'keys must be a JSON array' }, status: 400 };
      },
    });
    await deliverClaimed({ log: silentLogger, startBy: Date.now() - 1 }, refused.run);
    expect(refusedCalls).toEqual([2]);
  });

  it('claims what the run asks for, else the outbox defaults', async () => {
    const leases: unknown[] = [];
    const { run } = outbox([], {
      claim: async (lease) => {
        leases.push(lease);
        return ok([]);
      },
    });
    await deliverClaimed({ log: silentLogger }, run);
    await deliverClaimed({ log: silentLogger, maxRows: 3, leaseSeconds: 120 }, run);
    expect(leases).toEqual([
      { max_rows: 10, lease_seconds: 60 },
      { max_rows: 3, lease_seconds: 120 },
    ]);
  });

  it('a failed claim is the run’s failure, with its code and details, naming the claim function', async () => {
    // As an outbox's claim answers: supabase-js's failed answer through rpcResult, named.
    const error = postgrestError('', 'connection refused');
    const details = { status: 0, error };
    const { run, sent } = outbox([{ id: 1, lane: 'a', answer: 'ok' }], {
      claim: async () => rpcResult({ data: null, error, status: 0 }, 'claim_test_deliveries'),
    });
    expect(await deliverClaimed({ log: silentLogger }, run)).toEqual(
      fail('unavailable', 'claim_test_deliveries failed: connection refused', details),
    );
    expect(sent).toEqual([]);
  });

  it('an outcome that could not be recorded still counts as what the attempt did', async () => {
    const { run } = outbox([{ id: 1, lane: 'a', answer: 'ok' }], {
      finish: async () => ({ data: null, error: { message: 'timeout' }, status: 0 }),
    });
    expect(await deliverClaimed({ log: silentLogger, leaseSeconds: 1 }, run)).toMatchObject({
      value: { delivered: 1 },
    });
  });

  it('records an outcome that got no answer or a server error again, once it goes through', async () => {
    const answers = [
      { data: null, error: { message: 'fetch failed' }, status: 0 },
      { data: null, error: { message: 'Service Unavailable' }, status: 503 },
    ];
    const recorded: number[] = [];
    const { run, sent } = outbox([{ id: 1, lane: 'a', answer: 'ok' }], {
      finish: async (key) => {
        recorded.push(key.id);
        return (
          answers.shift() ?? {
            data: { status: 'delivered', next_attempt_at: null },
            error: null,
            status: 200,
          }
        );
      },
    });
    expect(await deliverClaimed({ log: silentLogger }, run)).toMatchObject({
      value: { delivered: 1 },
    });
    expect(sent).toEqual([1]);
    expect(recorded).toEqual([1, 1, 1]);
  });

  it('does not repeat an outcome the database refused: it would refuse it again', async () => {
    let calls = 0;
    const { run } = outbox([{ id: 1, lane: 'a', answer: 'fail' }], {
      finish: async () => {
        calls += 1;
        return { data: null, error: { message: 'invalid input syntax' }, status: 400 };
      },
    });
    await deliverClaimed({ log: silentLogger }, run);
    expect(calls).toBe(1);
  });

  it('stops repeating once the claim’s lease has run out, when another run may send it', async () => {
    let calls = 0;
    const { run } = outbox([{ id: 1, lane: 'a', answer: 'ok' }], {
      send: async () => {
        // The send itself took the whole lease.
        await new Promise((resolve) => setTimeout(resolve, 1100));
        return { error: null };
      },
      finish: async () => {
        calls += 1;
        return { data: null, error: { message: 'fetch failed' }, status: 0 };
      },
    });
    await deliverClaimed({ log: silentLogger, leaseSeconds: 1 }, run);
    expect(calls).toBe(1);
  });
});
