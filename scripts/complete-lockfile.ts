/**
 * Adds lockfile entries for platform-specific optional dependencies that npm could not
 * resolve (e.g. a registry mirror that carries only linux-x64 builds of @supabase/cli-*).
 *
 * npm records only the optional packages it can fetch metadata for, and `npm ci` then
 * rejects the lockfile as out of sync with package.json. The entries added here carry the
 * version, os, cpu and libc that the package name encodes, so npm ci skips them on other
 * platforms and fetches them by version where they apply. npm install keeps them.
 *
 * Run after adding or upgrading a dependency: node scripts/complete-lockfile.ts
 */
import { readFileSync, writeFileSync } from 'node:fs';

interface LockEntry {
  version?: string;
  optionalDependencies?: Record<string, string>;
  [key: string]: unknown;
}

const PLATFORM =
  /-(android|darwin|linux|win32|windows|freebsd|netbsd|openbsd|sunos|aix)-([a-z0-9]+)(?:-(musl|gnu|msvc))?$/;

const file = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(file, 'utf8')) as { packages: Record<string, LockEntry> };
const added: string[] = [];

for (const [path, entry] of Object.entries(lock.packages)) {
  for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
    const match = PLATFORM.exec(name);
    const key = `${path ? `${path}/` : ''}node_modules/${name}`;
    const hoisted = `node_modules/${name}`;
    if (!match || lock.packages[key] || lock.packages[hoisted]) continue;
    const [, platform, cpu, libc] = match;
    const version = /^\d+\.\d+\.\d+(-[\w.]+)?$/.test(range) ? range : entry.version;
    lock.packages[hoisted] = {
      version,
      cpu: [cpu as string],
      os: [platform === 'windows' ? 'win32' : (platform as string)],
      ...(libc ? { libc: [libc] } : {}),
      optional: true,
    };
    added.push(`${name}@${version}`);
  }
}

lock.packages = Object.fromEntries(
  Object.entries(lock.packages).sort(([a], [b]) =>
    a === '' ? -1 : b === '' ? 1 : a.localeCompare(b),
  ),
);
writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`);
console.log(
  added.length ? `added ${added.length} entries:\n  ${added.join('\n  ')}` : 'lockfile complete',
);
