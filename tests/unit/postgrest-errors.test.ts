import { describe, expect, it } from 'vitest';
import {
  PostgrestError,
  postgrestError,
  statusForSqlState,
} from '../../src/local/postgrest/errors.ts';

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
  ])('maps %s to %i, signed in or not', (sqlState, status) => {
    expect(statusForSqlState(sqlState, false)).toBe(status);
    expect(statusForSqlState(sqlState, true)).toBe(status);
  });

  it.each(['P0002', 'P0003', 'P0004', 'P0000'])(
    'maps other PL/pgSQL errors (%s) to 500',
    (sqlState) => {
      expect(statusForSqlState(sqlState, false)).toBe(500);
    },
  );

  it('maps insufficient privilege (42501) to 401 when anonymous, 403 when authenticated', () => {
    expect(statusForSqlState('42501', false)).toBe(401);
    expect(statusForSqlState('42501', true)).toBe(403);
  });

  it.each(['08000', '08003', '08006', '08P01'])('maps connection errors (%s) to 503', (s) => {
    expect(statusForSqlState(s, false)).toBe(503);
  });

  it.each(['28000', '28P01'])('maps invalid authorization (%s) to 403', (s) => {
    expect(statusForSqlState(s, false)).toBe(403);
    expect(statusForSqlState(s, true)).toBe(403);
  });

  it.each(['40001', '40P01', '57014', '57P01', 'XX000', 'XX001'])('maps %s to 500', (s) => {
    expect(statusForSqlState(s, false)).toBe(500);
  });

  it.each(['53000', '53100', '53200', '53300'])('maps resource errors (%s) to 503', (s) => {
    expect(statusForSqlState(s, false)).toBe(503);
  });

  it('maps too many connections for a role (53400) to 500, not 503', () => {
    expect(statusForSqlState('53400', false)).toBe(500);
  });

  it.each(['22P02', '22001', '23502', '23514', '42703', '42601'])(
    'maps other SQLSTATEs (%s) to 400',
    (s) => {
      expect(statusForSqlState(s, false)).toBe(400);
    },
  );

  it.each(['54000', '54001', '54011', '54023'])(
    'maps program limits the request reached (%s) to 400, not 500',
    (s) => {
      expect(statusForSqlState(s, false)).toBe(400);
    },
  );

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
