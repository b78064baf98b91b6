import { describe, expect, it } from 'vitest';
import { PostgrestError } from '../../src/local/postgrest/errors.ts';
import {
  type Routine,
  type RoutineParam,
  resolveRoutine,
  type SchemaCache,
} from '../../src/local/postgrest/schema-cache.ts';

const param = (name: string, type = 'text', hasDefault = false): RoutineParam => ({
  name,
  type,
  hasDefault,
});

const routine = (name: string, params: RoutineParam[], schema = 'public'): Routine => ({
  schema,
  name,
  params,
  shape: 'scalar',
  volatile: true,
});

function buildCache(...routines: Routine[]): SchemaCache {
  const cache: SchemaCache = new Map();
  for (const r of routines) {
    const key = `${r.schema}.${r.name}`;
    cache.set(key, [...(cache.get(key) ?? []), r]);
  }
  return cache;
}

/** Runs `fn`, expecting a PostgrestError, and returns it. */
function catchPostgrestError(fn: () => unknown): PostgrestError {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(PostgrestError);
    return error as PostgrestError;
  }
  throw new Error('expected a PostgrestError');
}

describe('resolveRoutine', () => {
  const fn = routine('fn', [param('a', 'integer'), param('b', 'text')]);
  const withDefaults = routine('with_defaults', [
    param('required', 'uuid'),
    param('optional', 'integer', true),
    param('also_optional', 'text[]', true),
  ]);
  const noArgs = routine('no_args', []);
  const elsewhere = routine('only_private', [], 'private');
  const cache = buildCache(fn, withDefaults, noArgs, elsewhere);

  it('returns the routine whose parameters match the argument names exactly', () => {
    expect(resolveRoutine(cache, 'public', 'fn', ['a', 'b'])).toBe(fn);
  });

  it('does not depend on the order of the argument names', () => {
    expect(resolveRoutine(cache, 'public', 'fn', ['b', 'a'])).toBe(fn);
  });

  it('resolves a function without parameters when no arguments are given', () => {
    expect(resolveRoutine(cache, 'public', 'no_args', [])).toBe(noArgs);
  });

  it('lets arguments with defaults be omitted', () => {
    expect(resolveRoutine(cache, 'public', 'with_defaults', ['required'])).toBe(withDefaults);
    expect(resolveRoutine(cache, 'public', 'with_defaults', ['required', 'optional'])).toBe(
      withDefaults,
    );
    expect(
      resolveRoutine(cache, 'public', 'with_defaults', ['also_optional', 'required', 'optional']),
    ).toBe(withDefaults);
  });

  it('rejects an unknown argument name with 404 PGRST202', () => {
    const error = catchPostgrestError(() => resolveRoutine(cache, 'public', 'fn', ['a', 'b', 'c']));
    expect(error.status).toBe(404);
    expect(error.body.code).toBe('PGRST202');
    expect(error.body.message).toBe(
      'Could not find the function public.fn(a, b, c) in the schema cache',
    );
  });

  it('names the function and its sorted argument names in the PGRST202 message', () => {
    const error = catchPostgrestError(() => resolveRoutine(cache, 'public', 'fn', ['b', 'x']));
    expect(error.body.message).toBe(
      'Could not find the function public.fn(b, x) in the schema cache',
    );
  });

  it('reports an unknown function as 404 PGRST202 with PostgREST message', () => {
    const error = catchPostgrestError(() => resolveRoutine(cache, 'public', 'fn2', ['a', 'b']));
    expect(error.status).toBe(404);
    expect(error.body).toMatchObject({
      code: 'PGRST202',
      message: 'Could not find the function public.fn2(a, b) in the schema cache',
      hint: null,
    });
    expect(error.message).toBe(error.body.message);
  });

  it('rejects an argument the function does not have, naming the arguments given', () => {
    const onlyA = buildCache(routine('fn', [param('a', 'integer')]));
    const error = catchPostgrestError(() => resolveRoutine(onlyA, 'public', 'fn', ['a', 'b']));
    expect(error.status).toBe(404);
    expect(error.body.code).toBe('PGRST202');
    expect(error.body.message).toBe(
      'Could not find the function public.fn(a, b) in the schema cache',
    );
    expect(error.body.details).toBe(
      'Searched for the function public.fn with parameters a, b or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.',
    );
    expect(error.body.hint).toBe('Perhaps you meant to call the function public.fn(a)');
  });

  it('rejects a call missing a required argument with 404 PGRST202', () => {
    const error = catchPostgrestError(() => resolveRoutine(cache, 'public', 'fn', ['a']));
    expect(error.status).toBe(404);
    expect(error.body.code).toBe('PGRST202');
    expect(error.body.message).toBe('Could not find the function public.fn(a) in the schema cache');
    expect(error.body.hint).toBe('Perhaps you meant to call the function public.fn(a, b)');

    const withoutRequired = catchPostgrestError(() =>
      resolveRoutine(cache, 'public', 'with_defaults', ['optional']),
    );
    expect(withoutRequired.status).toBe(404);
    expect(withoutRequired.body.code).toBe('PGRST202');
  });

  it('describes a call without arguments in the details', () => {
    const error = catchPostgrestError(() => resolveRoutine(cache, 'public', 'fn', []));
    expect(error.body.message).toBe('Could not find the function public.fn() in the schema cache');
    expect(error.body.details).toContain('without parameters');
  });

  it('only looks in the requested schema', () => {
    const error = catchPostgrestError(() => resolveRoutine(cache, 'public', 'only_private', []));
    expect(error.status).toBe(404);
    expect(error.body.code).toBe('PGRST202');
    expect(resolveRoutine(cache, 'private', 'only_private', [])).toBe(elsewhere);
  });

  it('rejects two overloads that both match with 300 PGRST203', () => {
    const byId = routine('pick', [param('id', 'integer')]);
    const byIdAndLimit = routine('pick', [param('id', 'uuid'), param('lim', 'integer', true)]);
    const overloaded = buildCache(byId, byIdAndLimit);
    const error = catchPostgrestError(() => resolveRoutine(overloaded, 'public', 'pick', ['id']));
    expect(error.status).toBe(300);
    expect(error.body.code).toBe('PGRST203');
    expect(error.body.message).toBe(
      'Could not choose the best candidate function between: public.pick(id => integer), public.pick(id => uuid, lim => integer)',
    );
    expect(error.body.hint).toMatch(/overloading/);
  });

  it('picks the one overload that fits when the arguments disambiguate', () => {
    const byId = routine('pick', [param('id', 'integer')]);
    const byIdAndLimit = routine('pick', [param('id', 'uuid'), param('lim', 'integer', true)]);
    const overloaded = buildCache(byId, byIdAndLimit);
    expect(resolveRoutine(overloaded, 'public', 'pick', ['id', 'lim'])).toBe(byIdAndLimit);
  });
});
