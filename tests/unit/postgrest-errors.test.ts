import { describe, expect, it } from 'vitest';
import {
  PostgrestError,
  postgrestError,
  statusForSqlState,
} from '../../src/local/postgrest/errors.ts';

/** Each kind of failure with its SQLSTATEs and the status an anonymous request gets for it. */
const WHEN_ANONYMOUS: Array<[kind: string, sqlStates: string[], status: number]> = [
  ['other PL/pgSQL errors', ['P0002', 'P0003', 'P0004', 'P0000'], 500],
  ['connection errors', ['08000', '08003', '08006', '08P01'], 503],
  [
    'serialization failures, cancellations and internal errors',
    ['40001', '40P01', '57014', '57P01', 'XX000', 'XX001'],
    500,
  ],
  ['resource errors', ['53000', '53100', '53200', '53300'], 503],
  ['too many connections for a role (not 503)', ['53400'], 500],
  ['other SQLSTATEs', ['22P02', '22001', '23502', '23514', '42703', '42601'], 400],
  ['program limits the request reached (not 500)', ['54000', '54001', '54011', '54023'], 400],
];

describe('statusForSqlState', () => {
  it.each([
    ['P0001', 400],
    ['23505', 409],
    ['23503', 409],
    ['42883', 404],
    ['42P01', 404],
    ['25006', 405],
    // PTxyz lets the function choose the status xyz.
    ['PT402', 402],
    ['PT418', 418],
    ['PT201', 201],
    ['PT503', 503],
    // Invalid authorization.
    ['28000', 403],
    ['28P01', 403],
  ])('maps %s to %i, signed in or not', (sqlState, status) => {
    expect(statusForSqlState(sqlState, false)).toBe(status);
    expect(statusForSqlState(sqlState, true)).toBe(status);
  });

  it.each(
    WHEN_ANONYMOUS.flatMap(([kind, sqlStates, status]) =>
      sqlStates.map((sqlState) => [kind, sqlState, status] as const),
    ),
  )('%s: maps %s to %i', (_, sqlState, status) => {
    expect(statusForSqlState(sqlState, false)).toBe(status);
  });

  it('maps insufficient privilege (42501) to 401 when anonymous, 403 when authenticated', () => {
    expect(statusForSqlState('42501', false)).toBe(401);
    expect(statusForSqlState('42501', true)).toBe(403);
  });

  it('treats 42501 only by its exact code, not other 42xxx codes', () => {
    expect(statusForSqlState('42502', true)).toBe(400);
  });
});

describe('postgrestError', () => {
  it('builds a PostgrestError with PostgREST-shaped body', () => {
    const error = postgrestError(404, 'PGRST202', 'not found', 'd', 'h', { 'x-test': '1' });
    expect(error).toBeInstanceOf(PostgrestError);
    expect(error).toBeInstanceOf(Error);
    expect(error.status).toBe(404);
    expect(error.message).toBe('not found');
    expect(error.body).toEqual({ code: 'PGRST202', message: 'not found', details: 'd', hint: 'h' });
    expect(error.headers).toEqual({ 'x-test': '1' });
  });

  it('defaults details and hint to null and headers to none', () => {
    const error = postgrestError(400, 'PGRST102', 'bad');
    expect(error.body).toEqual({ code: 'PGRST102', message: 'bad', details: null, hint: null });
    expect(error.headers).toEqual({});
  });
});
