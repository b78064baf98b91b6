#!/usr/bin/env node
// The operator CLI; Node >= 22.18 runs the TypeScript source directly.
import { processIo, runCli } from '../src/cli/main.ts';

process.exitCode = await runCli(process.argv.slice(2), processIo);
