#!/usr/bin/env node
// The operator CLI. The version check comes first: the TypeScript source it then imports
// needs Node >= 22.18, and an older Node would fail on it with a stack trace.
import { requireNode } from './check-node.js';

requireNode();
const { exitQuietlyOnBrokenPipe, processIo, runCli } = await import('../src/cli/main.ts');
exitQuietlyOnBrokenPipe();
process.exitCode = await runCli(process.argv.slice(2), processIo);
