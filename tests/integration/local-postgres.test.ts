import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { startPostgres } from '../../src/local/postgres.ts';
import { freePort } from '../../src/local/stack.ts';

/** Whether a process of this pid still exists. */
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

it('stops a server that is gone already, as Ctrl-C to the whole process group leaves it, and removes its folder', async () => {
  const dataDir = join(await mkdtemp(join(tmpdir(), 'flowmeter-pg-')), 'db');
  const db = await startPostgres({
    dataDir,
    port: await freePort(),
    password: 'local-test',
    persistent: false,
  });
  // The postmaster's pid is the first line of its pid file; SIGINT is its fast shutdown.
  const pid = Number((await readFile(join(dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
  process.kill(pid, 'SIGINT');
  while (alive(pid)) await new Promise((resolve) => setTimeout(resolve, 20));

  await db.stop();
  expect(existsSync(dataDir)).toBe(false);
}, 120_000);
