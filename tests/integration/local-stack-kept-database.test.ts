import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/local/project.ts';
import { startLocalStack } from '../../src/local/stack.ts';

/**
 * npm start keeps its database (.flowmeter/db). Until the first release migration files are
 * edited in place and the Supabase CLI applies only files it has not applied, so a database
 * built before such an edit must be refused, saying how to start afresh, not run the old
 * schema. A stack of its own, on a data folder of its own.
 */
let dir: string | undefined;
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('a kept local database', () => {
  it('records the migrations it was built from, starts again while they are unchanged, and is refused once one changed', async () => {
    dir = await mkdtemp(join(tmpdir(), 'flowmeter-kept-'));
    const dataDir = join(dir, 'db');
    const record = join(dir, 'migrations-applied.json');
    await (await startLocalStack({ dataDir, freshFlag: '--fresh' })).stop();
    const recorded = JSON.parse(await readFile(record, 'utf8')) as Record<string, string>;
    const files = (await readdir(join(projectRoot, 'supabase', 'migrations'))).filter((f) =>
      f.endsWith('.sql'),
    );
    expect(Object.keys(recorded).sort()).toEqual(files.sort());

    // Unchanged: the kept database starts as it is.
    await (await startLocalStack({ dataDir, freshFlag: '--fresh' })).stop();

    // As if the foundation file had been edited since it was applied.
    const [first] = files.sort();
    await writeFile(record, JSON.stringify({ ...recorded, [first as string]: 'an older hash' }));
    await expect(startLocalStack({ dataDir, freshFlag: '--fresh' })).rejects.toThrow(
      new RegExp(
        `built from migrations that have changed since \\(${first}\\).*npm start -- --fresh\` \\(deletes ${dataDir}`,
      ),
    );
  });
});
