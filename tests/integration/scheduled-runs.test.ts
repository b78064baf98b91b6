import { describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/observability/logger.ts';
import { recordedRun } from '../../src/observability/scheduled-run.ts';
import { serviceClient, superuser, uniqueId } from '../support/stack.ts';

async function runsOf(functionName: string) {
  const { rows } = await superuser().query(
    'select ok, summary, error, finished_at is not null as finished from public.scheduled_runs where function_name = $1',
    [functionName],
  );
  return rows;
}

describe('recorded scheduled runs', () => {
  it('records a run, its summary and a run id for its log lines', async () => {
    const name = uniqueId('job').toLowerCase();
    const lines: object[] = [];
    const log = {
      ...silentLogger,
      child: (fields: object) => {
        lines.push(fields);
        return silentLogger;
      },
    };
    const result = await recordedRun(
      { db: serviceClient(), functionName: name, log },
      async () => ({ sent: 3 }),
    );
    expect(result).toEqual({ sent: 3 });
    expect(await runsOf(name)).toEqual([
      { ok: true, summary: { sent: 3 }, error: null, finished: true },
    ]);
    expect(lines[0]).toMatchObject({ fn: name, run_id: expect.stringMatching(/^[0-9a-f-]{36}$/) });
  });

  it('records a failed run with its error and rethrows', async () => {
    const name = uniqueId('job').toLowerCase();
    await expect(
      recordedRun({ db: serviceClient(), functionName: name, log: silentLogger }, async () => {
        throw new Error('Stripe is down');
      }),
    ).rejects.toThrow('Stripe is down');
    expect(await runsOf(name)).toEqual([
      { ok: false, summary: null, error: 'Stripe is down', finished: true },
    ]);
  });
});
