import type { PostgrestError } from '@supabase/supabase-js';
import { describe, expect, it } from 'vitest';
import { authFailure, databaseFailure } from '../../src/accounts/supabase-failure.ts';
import { CliError, EXIT, openDatabase } from '../../src/cli/context.ts';
import { rpcResult } from '../../src/db/rpc-result.ts';
import { postgrestError } from '../support/rpc-stub.ts';

/** Answers every caller must read as "the database could not be reached". */
const unreachable: [string, number, PostgrestError][] = [
  ['no answer at all', 0, postgrestError('', 'TypeError: fetch failed')],
  ["Cloudflare's 522 without a PostgREST body", 522, postgrestError('', '')],
  ['PostgreSQL shutting down (57P01) under a 500', 500, postgrestError('57P01')],
  ['PostgREST without a pool connection (PGRST003)', 504, postgrestError('PGRST003')],
];

/** A gateway status with a PostgREST body: the code says the database answered. */
const answeredUnderGatewayStatus = postgrestError('42501', 'permission denied');

const database = openDatabase({
  SUPABASE_URL: 'http://127.0.0.1:9',
  SUPABASE_SERVICE_ROLE_KEY: 'service-role-key',
});

const exitCodeOf = (call: () => unknown) => {
  try {
    call();
  } catch (error) {
    if (error instanceof CliError) return error.exitCode;
    throw error;
  }
  throw new Error('the call did not fail');
};

describe('every caller sorts an unreachable database the way classifyRpcFailure does', () => {
  it.each(unreachable)('rpcResult: %s is unavailable', (_, status, error) => {
    const result = rpcResult({ data: null, error, status });
    expect(result.ok ? null : result.error.code).toBe('unavailable');
  });

  it('rpcResult: a PostgREST code under a gateway status is not an outage', () => {
    const result = rpcResult({ data: null, error: answeredUnderGatewayStatus, status: 503 });
    expect(result.ok ? null : result.error.code).toBe('internal');
  });

  it.each(unreachable)('account operations: %s is unavailable', (_, status, error) => {
    const result = databaseFailure(error, status, 'listing the members');
    expect(result.ok ? null : result.error.code).toBe('unavailable');
    expect(result.ok ? null : result.error.message).toMatch(
      /^could not reach Supabase while listing the members/,
    );
  });

  it('account operations: a PostgREST code under a gateway status is not an outage', () => {
    const result = databaseFailure(answeredUnderGatewayStatus, 503, 'listing the members');
    expect(result.ok ? null : result.error.code).toBe('internal');
  });

  it.each([0, 503, 522])('auth calls: status %i is unavailable', (status) => {
    const result = authFailure({ status, message: 'no answer' }, 'inviting a@example.com');
    expect(result.ok ? null : result.error.code).toBe('unavailable');
  });

  it.each(unreachable)('the CLI: %s exits with the unavailable code', (_, status, error) => {
    expect(exitCodeOf(() => database.unwrap({ data: null, error, status }))).toBe(EXIT.unavailable);
  });

  it('the CLI: a PostgREST code under a gateway status is a failure, not an outage', () => {
    expect(
      exitCodeOf(() =>
        database.unwrap({ data: null, error: answeredUnderGatewayStatus, status: 503 }),
      ),
    ).toBe(EXIT.failed);
  });
});
