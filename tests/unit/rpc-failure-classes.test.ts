import { describe, expect, it } from 'vitest';
import { classifyRpcFailure, type RpcFailureKind } from '../../src/db/rpc-failure.ts';

/** What supabase-js hands back for a PostgREST error body with this code. */
const postgrest = (status: number, code: string) => ({
  status,
  error: { code, message: `failed with ${code}`, details: null, hint: null },
});

/** What supabase-js hands back for a body that is not PostgREST's (parsed as `{message}`). */
const bare = (status: number, message = '') => ({ status, error: { message } });

const kindOf = (response: Parameters<typeof classifyRpcFailure>[0]): RpcFailureKind =>
  classifyRpcFailure(response).kind;

describe('the database could not be reached: the only failures that may fail open', () => {
  it('no answer at all (fetch failed: refused, reset, aborted, timed out)', () => {
    expect(
      kindOf({
        status: 0,
        error: { code: '', message: 'TypeError: fetch failed' },
      }),
    ).toBe('unreachable');
    expect(kindOf({ status: 0, error: { code: '', message: 'AbortError: aborted' } })).toBe(
      'unreachable',
    );
  });

  it.each([502, 503, 504, 520, 521, 522, 523, 524])(
    'the gateway answers %i itself, without a PostgREST error body',
    (status) => {
      expect(kindOf(bare(status, '<html>upstream unavailable</html>'))).toBe('unreachable');
      expect(kindOf(bare(status))).toBe('unreachable');
      expect(kindOf({ status, error: { message: 'An invalid response was received' } })).toBe(
        'unreachable',
      );
    },
  );

  it.each([
    '08000',
    '08003',
    '08006',
    '08P01',
    '53000',
    '53100',
    '53200',
    '53300',
    '53400',
    '57P01',
    '57P02',
    '57P03',
  ])('PostgreSQL says it is unreachable, down or out of resources (%s)', (code) => {
    expect(kindOf(postgrest(503, code))).toBe('unreachable');
    expect(kindOf(postgrest(500, code))).toBe('unreachable');
  });

  it.each(['PGRST000', 'PGRST001', 'PGRST002', 'PGRST003'])(
    "PostgREST's connection group (%s): it cannot reach the database",
    (code) => {
      expect(kindOf(postgrest(503, code))).toBe('unreachable');
    },
  );
});

describe('the database refused the input: a 4xx, never an allow', () => {
  it.each([
    ['22P05', 'unsupported Unicode escape (NUL)'],
    ['22021', 'invalid byte sequence'],
    ['22P02', 'invalid text representation'],
    ['22001', 'value too long'],
    ['22003', 'numeric value out of range'],
    ['23505', 'unique violation'],
    ['23514', 'check violation'],
    ['23502', 'not null violation'],
    ['P0001', 'raise exception'],
  ])('%s (%s)', (code) => {
    expect(kindOf(postgrest(400, code))).toBe('refused_input');
    expect(kindOf(postgrest(409, code))).toBe('refused_input');
  });
});

describe('everything else is internal: a 500, never an allow', () => {
  it.each([
    ['42501', 'insufficient privilege', 403],
    ['42883', 'undefined function', 404],
    ['42P01', 'undefined table', 404],
    ['42601', 'syntax error', 400],
    ['40001', 'serialization failure', 500],
    ['40P01', 'deadlock', 500],
    ['57014', 'query canceled (statement timeout)', 500],
    ['XX000', 'internal error', 500],
    ['P0002', 'no data found', 500],
    ['PGRST102', 'invalid request body', 400],
    ['PGRST202', 'function not in the schema cache', 404],
    ['PGRST301', 'bad JWT', 401],
    ['PT402', 'custom status', 402],
    ['ZZ999', 'a code nobody knows', 400],
  ])('%s (%s)', (code, _, status) => {
    expect(kindOf(postgrest(status, code))).toBe('internal');
  });

  it('a PostgREST code decides even under a gateway status', () => {
    expect(kindOf(postgrest(503, '42501'))).toBe('internal');
    expect(kindOf(postgrest(502, '22P05'))).toBe('refused_input');
  });

  it.each([
    [500, 'a 500 without a PostgREST body'],
    [501, 'not implemented'],
    [401, 'the gateway refusing the service key'],
    [403, 'forbidden by the gateway'],
    [404, 'no such route'],
    [429, 'rate limited'],
    [200, 'a 2xx whose body is not JSON'],
  ])('HTTP %i without a code (%s)', (status) => {
    expect(kindOf(bare(status, 'whatever the body said'))).toBe('internal');
  });

  it('a code that is not a string is no code', () => {
    expect(kindOf({ status: 400, error: { code: 22, message: 'x' } })).toBe('internal');
    expect(kindOf({ status: 503, error: { code: null, message: 'x' } })).toBe('unreachable');
  });
});

describe('the failure carries what the operator needs', () => {
  it('keeps status, code and message', () => {
    expect(classifyRpcFailure(postgrest(400, '22P05'))).toEqual({
      kind: 'refused_input',
      status: 400,
      code: '22P05',
      message: 'failed with 22P05',
    });
    expect(classifyRpcFailure(bare(502))).toEqual({
      kind: 'unreachable',
      status: 502,
      code: null,
      message: 'HTTP 502 without an answer',
    });
  });
});
