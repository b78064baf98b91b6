import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { renderDatabaseTypes, typesFile } from '../../src/local/gen-types.ts';
import { type LocalStack, startLocalStack } from '../../src/local/stack.ts';
import { applyMigrations, runAdvisors } from '../../src/local/supabase-cli.ts';

/**
 * The migrations alone, on a fresh database of their own (other test files add test
 * objects to the shared one): Supabase's advisors, the generated types, re-running.
 */
let stack: LocalStack;

beforeAll(async () => {
  stack = await startLocalStack();
});
afterAll(async () => {
  await stack?.stop();
});

describe('migrations', () => {
  it('leave no ERROR or WARN from supabase db advisors', async () => {
    const findings = await runAdvisors(stack.databaseUrl);
    const serious = findings
      .filter((f) => f.level === 'ERROR' || f.level === 'WARN')
      .map((f) => `${f.level} ${f.name}: ${f.detail}`);
    expect(serious).toEqual([]);
  });

  it('match the committed database types (run `npm run db:types` after changing SQL)', async () => {
    const committed = await readFile(typesFile, 'utf8');
    expect(await renderDatabaseTypes(stack.databaseUrl)).toBe(committed);
  });

  it('apply once: running them again changes nothing', async () => {
    const output = await applyMigrations(stack.databaseUrl);
    expect(output).toMatch(/up to date/i);
    expect(output).not.toMatch(/Applying migration/);
  });
});
