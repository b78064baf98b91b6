import { Writable } from 'node:stream';
import { runCli } from '../../src/cli/main.ts';
import { keyring } from './collector.ts';
import { stack } from './stack.ts';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** What a command streams to stdout (`export usage`), kept as text. */
export class CapturedStream extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: string, done: () => void) {
    this.text += chunk.toString();
    done();
  }
}

/** A terminal for progress bars: what cli-progress draws, kept as text. */
export class FakeTerminal extends CapturedStream {
  readonly isTTY = true;
  readonly columns = 120;
}

/**
 * The operator CLI in-process against the test stack, as an operator's shell would run it
 * with .env filled in: what it printed on stdout and stderr, and its exit code.
 */
export function runCliWith(
  args: string[],
  options: { env?: Record<string, string | undefined>; stdin?: string; stderr?: FakeTerminal } = {},
): Promise<CliRun> {
  const out: string[] = [];
  const err: string[] = [];
  const stdout = new CapturedStream();
  return runCli(args, {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    stdout,
    env: {
      SUPABASE_URL: stack.supabaseUrl,
      SUPABASE_SERVICE_ROLE_KEY: stack.serviceRoleKey,
      FLOWMETER_ENCRYPTION_KEYS: `k1:${keyring.keys.get('k1')?.toString('base64')}`,
      ...options.env,
    },
    readStdin: async () => options.stdin ?? '',
    ...(options.stderr ? { stderr: options.stderr } : {}),
  }).then((code) => ({ code, out: out.join('\n') + stdout.text, err: err.join('\n') }));
}

/** The CLI as most tests run it: the test stack's .env, with these variables on top. */
export const cli = (args: string[], env: Record<string, string | undefined> = {}) =>
  runCliWith(args, { env });

/** `flowmeter plans set` of a plan metering n8n_executions on `meterId`, 100 included. */
export const meteredPlanArgs = (planId: string, meterId: string) => [
  'plans',
  'set',
  planId,
  '--name',
  'Metered',
  '--included',
  '100',
  '--meter-event-name',
  'n8n_executions',
  '--meter-id',
  meterId,
];

/** `flowmeter tenants add` of a tenant on `planId` linked to a Stripe customer, as JSON. */
export const linkedTenantArgs = (name: string, planId: string, customer: string) => [
  'tenants',
  'add',
  name,
  '--plan',
  planId,
  '--stripe-customer',
  customer,
  '--json',
];
