import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { projectRoot } from './project.ts';

/**
 * Which migration files a kept local database (npm start's .flowmeter/db) was built from.
 * Until the first release migration files are edited in place, and the Supabase CLI applies
 * only files it has not applied yet, so a database kept from before such an edit would go on
 * with the old functions and tables in silence, failing later in ways that name nothing.
 * The stack records each file's hash beside the database after applying them, and a start
 * whose files differ from those recorded stops and says how to start afresh.
 */
type Recorded = Record<string, string>;

const migrationsDir = join(projectRoot, 'supabase', 'migrations');

/** Where the record of `dataDir` lives: beside it, so deleting the folder keeps nothing stale. */
const recordFile = (dataDir: string) => join(dirname(dataDir), 'migrations-applied.json');

async function currentMigrations(): Promise<Recorded> {
  const names = (await readdir(migrationsDir)).filter((name) => name.endsWith('.sql')).sort();
  const hashes: Recorded = {};
  for (const name of names) {
    hashes[name] = createHash('sha256')
      .update(await readFile(join(migrationsDir, name)))
      .digest('hex');
  }
  return hashes;
}

/** Files applied to the database that have since changed or gone. */
export function changedSince(recorded: Recorded, current: Recorded): string[] {
  return Object.keys(recorded)
    .filter((name) => current[name] !== recorded[name])
    .sort();
}

/** Whether `dataDir` holds a database already (PostgreSQL writes PG_VERSION at initdb). */
export const databaseExists = (dataDir: string) => existsSync(join(dataDir, 'PG_VERSION'));

/**
 * Refuses, with what to do, a kept database built from migration files that have changed
 * since. A database without a record (made before records were kept) is taken as it is.
 */
export async function checkKeptDatabase(dataDir: string, freshFlag: string): Promise<void> {
  let recorded: Recorded;
  try {
    recorded = JSON.parse(await readFile(recordFile(dataDir), 'utf8')) as Recorded;
  } catch {
    return;
  }
  const changed = changedSince(recorded, await currentMigrations());
  if (changed.length === 0) return;
  const shown =
    changed.slice(0, 3).join(', ') + (changed.length > 3 ? `, … (${changed.length})` : '');
  throw new Error(
    `the database in ${dataDir} was built from migrations that have changed since (${shown}); they are edited in place until the first release, and an applied file is not applied again, so it would run the old schema. Start afresh with \`npm start -- ${freshFlag}\` (deletes ${dataDir}: its tenants, usage and sign-ins)`,
  );
}

/** Records the files the kept database has now been built from. */
export async function recordAppliedMigrations(dataDir: string): Promise<void> {
  await writeFile(recordFile(dataDir), `${JSON.stringify(await currentMigrations(), null, 2)}\n`);
}
