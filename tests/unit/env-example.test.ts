import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/** The variables `.env.example` sets or shows commented out (`NAME=` or `# NAME=`). */
async function listed() {
  const text = await readFile('.env.example', 'utf8');
  return new Set([...text.matchAll(/^(?:# ?)?([A-Z][A-Z0-9_]+)=/gm)].map((m) => m[1]));
}

async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && /\.(ts|mts)$/.test(e.name))
    .map((e) => join(e.parentPath, e.name));
}

describe('.env.example', () => {
  it('lists every variable a configuration schema reads and every local-stack setting', async () => {
    const read = new Set<string>();
    for (const file of await sources('src/config')) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/^\s+([A-Z][A-Z0-9_]{2,}):/gm)) read.add(m[1] as string);
    }
    for (const file of await sources('src')) {
      const text = await readFile(file, 'utf8');
      for (const m of text.matchAll(/\bFLOWMETER_LOCAL_[A-Z0-9_]+\b/g)) read.add(m[0]);
    }
    // The scan finds the schemas' keys (a regression in it would make this test vacuous).
    expect(read).toContain('RECONCILE_CONCURRENCY');
    expect(read).toContain('SUPABASE_URL');
    const have = await listed();
    expect([...read].filter((name) => !have.has(name)).sort()).toEqual([]);
  });
});
