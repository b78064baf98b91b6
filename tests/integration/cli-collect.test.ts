import { describe, expect, it } from 'vitest';
import { EXIT } from '../../src/cli/main.ts';
import { cli } from '../support/cli.ts';
import { countersOf, createSource, useN8nServer } from '../support/collector.ts';
import { recent } from '../support/fixtures.ts';
import { superuser } from '../support/stack.ts';

const server = useN8nServer();

const runCount = async () =>
  (
    await superuser().query(
      "select count(*)::int as n from public.collector_runs where trigger = 'manual'",
    )
  ).rows[0].n;

describe('flowmeter collect', () => {
  it('collects one source now, with progress on stderr, and exits 0', async () => {
    const source = await createSource(server);
    source.fake.addMany(30, (i) => ({ startedAt: recent(100 - i) }));
    const result = await cli(['collect', '--source', source.sourceId]);
    expect(result.code).toBe(EXIT.ok);
    expect(result.err).toMatch(/collecting 1 source/);
    expect(result.err).toMatch(/✓ .*30 new executions, 30 billable/);
    expect((await countersOf(source.tenantId)).billable).toBe(30);
  });

  it('prints a JSON summary on stdout with --json', async () => {
    const source = await createSource(server);
    source.fake.addMany(3, (i) => ({ startedAt: recent(10 - i) }));
    const result = await cli(['collect', '-s', source.sourceId, '--json']);
    expect(result.code).toBe(EXIT.ok);
    expect(JSON.parse(result.out)).toMatchObject({
      sourcesOk: 1,
      executionsIngested: 3,
      billableCounted: 3,
    });
  });

  it('exits 1 and names the error when a source fails', async () => {
    const source = await createSource(server);
    source.fake.failNext({ kind: 'status', status: 401, body: { message: 'Unauthorized' } }, 5);
    const result = await cli(['collect', '--source', source.sourceId]);
    expect(result.code).toBe(EXIT.failed);
    expect(result.err).toMatch(/✗ .*401/);
  });

  it('exits 2 for a bad argument, changing nothing', async () => {
    const before = await runCount();
    const result = await cli(['collect', '--source', 'not-a-uuid']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/"not-a-uuid" is not a source id/);
    expect(await runCount()).toBe(before);
  });

  it('exits 2 for an unknown command or option', async () => {
    expect((await cli(['colect'])).code).toBe(EXIT.usage);
    expect((await cli(['collect', '--everything'])).code).toBe(EXIT.usage);
  });

  it('exits 2 naming each missing variable when the environment is incomplete', async () => {
    const result = await cli(['collect'], {
      FLOWMETER_ENCRYPTION_KEYS: undefined,
      FLOWMETER_LOCAL_DIR: '/nonexistent',
    });
    expect(result.code).toBe(EXIT.usage);
    expect(result.err).toMatch(/FLOWMETER_ENCRYPTION_KEYS is required/);
  });

  it('exits 3 when the database cannot be reached', async () => {
    const result = await cli(['collect'], { SUPABASE_URL: 'http://127.0.0.1:9' });
    expect(result.code).toBe(EXIT.unavailable);
    expect(result.err).toMatch(/error: /);
  });
});
