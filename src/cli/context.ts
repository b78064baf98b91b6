/*
 * What every command shares: exit codes, the injected terminal, the environment (completed
 * from `.flowmeter/local.env` next to `npm start`) and the one way to call the database,
 * which turns its failures into messages that say what to do.
 */

import { text } from 'node:stream/consumers';
import type { PostgrestError } from '@supabase/supabase-js';
import { findTenants, type ListedTenant } from '../accounts/tenant-ref.ts';
import { type ConfigError, parseEnv, supabaseEnvSchema } from '../config/env.ts';
import { createServiceClient, type Db } from '../db/client.ts';
import { classifyRpcFailure } from '../db/rpc-failure.ts';
import { isRpcFailure, type RpcFailureDetails, rpcResult } from '../db/rpc-result.ts';
import type { ErrorCode, Result } from '../domain/result.ts';
import { environmentWithLocalStack } from '../local/local-env.ts';

/**
 * 0 success; 1 the work ran but something failed; 2 bad arguments or configuration,
 * nothing done; 3 a service could not be reached.
 */
export const EXIT = { ok: 0, failed: 1, usage: 2, unavailable: 3 } as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export interface CliIo {
  out: (text: string) => void;
  err: (text: string) => void;
  /** Where `out` writes, for output streamed as it is produced (`export usage`). */
  stdout: NodeJS.WritableStream;
  env: NodeJS.ProcessEnv;
  /** Where progress bars are drawn; a bar only when it is a terminal, plain lines on `err` otherwise. */
  stderr?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Everything on standard input (`--api-key -`). */
  readStdin?: () => Promise<string>;
}

/** An expected failure: its message is for the operator, its code the process's exit code. */
export class CliError extends Error {
  readonly exitCode: ExitCode;

  constructor(exitCode: ExitCode, message: string) {
    super(message);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** The one place a service's failure code becomes the process's exit code. */
const EXIT_FOR: Record<ErrorCode, ExitCode> = {
  invalid_request: EXIT.usage,
  unauthorized: EXIT.usage,
  not_found: EXIT.usage,
  unknown_tenant: EXIT.usage,
  conflict: EXIT.usage,
  upstream_failed: EXIT.failed,
  unavailable: EXIT.unavailable,
  internal: EXIT.failed,
};

/** A service's value; its failure ends the command with its message and mapped exit code. */
export function valueOrExit<T>(result: Result<T>): T {
  if (result.ok) return result.value;
  throw new CliError(EXIT_FOR[result.error.code], result.error.message);
}

type Env = Record<string, string | undefined>;

interface SupabaseConfig {
  SUPABASE_URL: string;
  SUPABASE_SERVICE_ROLE_KEY: string;
}

/** What every command is given: the terminal, its exit code, and the way to its configuration. */
export interface CommandContext {
  io: CliIo;
  /** Set by a command whose work ran but did not all succeed; thrown errors need no call. */
  exit: (code: ExitCode) => void;
  /**
   * The environment parsed by one of the config loaders (a ConfigError names each bad
   * variable), and the database its Supabase variables name.
   */
  open<C extends SupabaseConfig>(load: (env: Env) => C): Promise<{ config: C; database: Database }>;
  /** The database from the environment's Supabase variables: what most commands need, and only it. */
  openSupabase(): Promise<Database>;
}

export const loadSupabaseConfig = (env: Env) => parseEnv(supabaseEnvSchema, env);

export function commandContext(io: CliIo, exit: (code: ExitCode) => void): CommandContext {
  const open = async <C extends SupabaseConfig>(load: (env: Env) => C) => {
    const { env } = await environmentWithLocalStack(io.env);
    const config = load(env);
    return { config, database: openDatabase(config) };
  };
  return {
    io,
    exit,
    open,
    openSupabase: async () => (await open(loadSupabaseConfig)).database,
  };
}

/** What a ConfigError should add when the Supabase variables are missing altogether. */
export function configHint(error: ConfigError): string | undefined {
  return error.problems.some((p) => p.startsWith('SUPABASE_') && p.includes('is required'))
    ? 'Next to the local stack, run `npm start` first: the CLI then reads .flowmeter/local.env.'
    : undefined;
}

export interface CallHints {
  /** Added to a "not found" answer: how to find the right id. */
  notFound?: string;
  /** Added to a "conflict" answer: what already exists and what to do. */
  conflict?: string;
  /** The command's flag for each function argument, so a refusal names what the operator typed. */
  flags?: Record<string, string>;
}

export interface Database {
  db: Db;
  /** The data of a successful call; a failed one throws a CliError with the right exit code. */
  unwrap<T>(
    response: { data: T | null; error: PostgrestError | null; status: number },
    hints?: CallHints,
  ): T;
  /** A service's value; its failure throws a CliError with the right exit code, as unwrap. */
  valueOrExit<T>(result: Result<T>, hints?: CallHints): T;
  /** One tenant by id or external reference; an unknown one is a usage error saying how to list them. */
  tenant(ref: string): Promise<TenantRow>;
  /** The ids `--tenant` names, or undefined (every tenant) without it; unknown ones fail, as above. */
  tenantIds(refs: string[] | undefined): Promise<string[] | undefined>;
}

/** A failed database call as the operator should read it: what to check, or what was refused. */
function databaseError(
  supabaseUrl: string,
  { status, error }: RpcFailureDetails,
  hints: CallHints,
): CliError {
  if (classifyRpcFailure({ status, error }).kind === 'unreachable') {
    const cause = /Caused by: (.*)/.exec(error.details)?.[1] ?? error.message;
    return new CliError(
      EXIT.unavailable,
      `could not reach the database at ${supabaseUrl} (${status === 0 ? cause : `HTTP ${status}`}). Is it running (\`npm start\` locally), and is SUPABASE_URL right?`,
    );
  }
  // The command's hint, where it has one, says more than the function's generic one.
  const explain = (commandHint?: string) =>
    Object.entries(hints.flags ?? {}).reduce(
      (text, [argument, flag]) => text.replaceAll(new RegExp(`\\b${argument}\\b`, 'g'), flag),
      [error.message, error.details, commandHint ?? error.hint]
        .filter(Boolean)
        .map((part) => part.replace(/\.$/, ''))
        .join(': '),
    );
  if (status === 401 || status === 403) {
    return new CliError(
      EXIT.usage,
      `the database refused the key (${status}: ${error.message}): SUPABASE_SERVICE_ROLE_KEY must be the project's service_role key; see .env.example`,
    );
  }
  if (error.code === 'PGRST202') {
    return new CliError(
      EXIT.failed,
      `the database lacks a function the CLI needs (${error.message}): apply the migrations in supabase/migrations (supabase db push)`,
    );
  }
  if (status === 404) return new CliError(EXIT.usage, explain(hints.notFound));
  if (status === 409) return new CliError(EXIT.usage, explain(hints.conflict));
  // 400: a function refused its arguments (P0001, a check or format error); nothing changed.
  if (status === 400) return new CliError(EXIT.usage, explain());
  return new CliError(EXIT.failed, `the database failed (${status}): ${explain()}`);
}

export function openDatabase(config: SupabaseConfig): Database {
  const db = createServiceClient(config);
  const orExit = <T>(result: Result<T>, hints: CallHints = {}): T => {
    if (result.ok) return result.value;
    const { code, message, details } = result.error;
    if (isRpcFailure(details)) throw databaseError(config.SUPABASE_URL, details, hints);
    const hint = code === 'not_found' ? hints.notFound : code === 'conflict' ? hints.conflict : '';
    throw new CliError(EXIT_FOR[code], hint ? `${message}: ${hint}` : message);
  };
  const tenants = async (refs: string[]) => orExit(await findTenants(db, refs));
  return {
    db,
    valueOrExit: orExit,
    unwrap: (response, hints) => orExit(rpcResult(response), hints),
    tenant: async (ref) => {
      const [tenant] = await tenants([ref]);
      if (!tenant) throw new Error(`findTenants returned nothing for "${ref}"`);
      return tenant;
    },
    tenantIds: async (refs) => (refs ? (await tenants(refs)).map((t) => t.id) : undefined),
  };
}

export type TenantRow = ListedTenant;

/** The `tenant_ids` argument of the functions that take the --tenant filter: none, every tenant. */
export const tenantFilter = (tenantIds: string[] | undefined) =>
  tenantIds ? { tenant_ids: tenantIds } : {};

export async function listTenants(database: Database, refs?: string[]) {
  return database.unwrap(await database.db.rpc('list_tenants', refs ? { tenants: refs } : {}));
}

/** Everything on the process's standard input (a pipe, or typed and ended with Ctrl-D). */
export const readProcessStdin = () => text(process.stdin);

/**
 * A secret option's value, or with `-` what standard input holds, so it stays out of the
 * shell history (`--api-key -`, `--target -`). Trimmed, unless `verbatim`: a password keeps
 * its spaces, only the one line ending `echo` or a terminal adds is dropped.
 */
export async function valueOrStdin(
  io: CliIo,
  value: string,
  flag: string,
  what: string,
  { verbatim = false } = {},
): Promise<string> {
  if (value !== '-') return value;
  const input = await (io.readStdin ?? readProcessStdin)();
  const read = verbatim ? input.replace(/\r?\n$/, '') : input.trim();
  if (!read) {
    throw new CliError(EXIT.usage, `${flag} - read nothing from standard input: pipe ${what} in`);
  }
  return read;
}
