// Plain JavaScript on purpose: it must run, and say what to do, on a Node too old to load
// the TypeScript sources (which would fail with ERR_UNKNOWN_FILE_EXTENSION).
import process from 'node:process';
import { pathToFileURL } from 'node:url';

export const REQUIRED_NODE = '22.18.0';

/**
 * Why this Node cannot run flowmeter, in one line, or null when it can.
 * @param {string} version as `process.version` gives it, e.g. "v20.20.2"
 * @returns {string | null}
 */
export function nodeProblem(version) {
  const have = version.replace(/^v/, '').split('.').map(Number);
  const need = REQUIRED_NODE.split('.').map(Number);
  for (const [i, part] of need.entries()) {
    if ((have[i] ?? 0) > part) return null;
    if ((have[i] ?? 0) < part) {
      return `flowmeter needs Node ${REQUIRED_NODE} or newer (it runs TypeScript directly); this is Node ${version}. Install Node 22 (nvm install 22, or https://nodejs.org) and run this again.`;
    }
  }
  return null;
}

/** Exits with one line on stderr when this Node is too old; returns when it is recent enough. */
export function requireNode() {
  const problem = nodeProblem(process.version);
  if (problem) {
    process.stderr.write(`${problem}\n`);
    process.exit(1);
  }
}

// Run as a script (`node bin/check-node.js && …` in package.json), it checks and exits.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) requireNode();
