import { execFileSync, spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { nodeProblem, REQUIRED_NODE } from '../../bin/check-node.js';

describe('the Node version check that runs before any TypeScript is loaded', () => {
  it('refuses a Node older than 22.18 in one line that says what to install', () => {
    for (const old of ['v20.20.2', 'v22.17.1', 'v18.0.0']) {
      const problem = nodeProblem(old);
      expect(problem).toContain(`Node ${REQUIRED_NODE} or newer`);
      expect(problem).toContain(old);
      expect(problem).toContain('nvm install 22');
      expect(problem).not.toContain('\n');
    }
  });

  it('accepts 22.18 and anything newer', () => {
    for (const recent of ['v22.18.0', 'v22.23.3', 'v23.0.0', 'v24.1.0']) {
      expect(nodeProblem(recent)).toBeNull();
    }
  });

  it('lets the CLI start on this Node, and says nothing', () => {
    expect(spawnSync(process.execPath, ['bin/check-node.js'], { encoding: 'utf8' })).toMatchObject({
      status: 0,
      stdout: '',
      stderr: '',
    });
    expect(
      execFileSync(process.execPath, ['bin/flowmeter.js', '--help'], { encoding: 'utf8' }),
    ).toContain('Usage: flowmeter');
  });
});
