import type { Pool } from 'pg';
import { postgrestError } from './errors.ts';

/** How a function's result is rendered: PostgREST's shapes for each return kind. */
export type ReturnShape = 'void' | 'scalar' | 'composite' | 'set';

export interface RoutineParam {
  name: string;
  /** SQL type as format_type() prints it, used to cast the JSON argument. */
  type: string;
  hasDefault: boolean;
}

export interface Routine {
  schema: string;
  name: string;
  params: RoutineParam[];
  shape: ReturnShape;
  volatile: boolean;
}

/** Every function of the exposed schemas, by schema and name (overloads in a list). */
export type SchemaCache = Map<string, Routine[]>;

const cacheKey = (schema: string, name: string) => `${schema}.${name}`;

const loadSql = `
  select n.nspname as schema,
         p.proname as name,
         coalesce(p.proargnames, '{}') as arg_names,
         coalesce(p.proargmodes::text[], '{}') as arg_modes,
         array(select format_type(t, null) from unnest(p.proallargtypes) t) as all_arg_types,
         array(select format_type(t, null) from unnest(p.proargtypes::oid[]) t) as in_arg_types,
         p.pronargdefaults as n_defaults,
         p.proretset as returns_set,
         p.prorettype = 'void'::regtype as returns_void,
         rt.typtype = 'c' or (p.prorettype = 'record'::regtype and not p.proretset) as returns_composite,
         p.provolatile = 'v' as volatile
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  join pg_catalog.pg_type rt on rt.oid = p.prorettype
  where n.nspname = any($1) and p.prokind = 'f'
`;

interface ProcRow {
  schema: string;
  name: string;
  arg_names: string[];
  arg_modes: string[];
  all_arg_types: string[];
  in_arg_types: string[];
  n_defaults: number;
  returns_set: boolean;
  returns_void: boolean;
  returns_composite: boolean;
  volatile: boolean;
}

function toRoutine(row: ProcRow): Routine {
  // proargnames/proargmodes cover all arguments (in and out); proargtypes only the inputs.
  const inputs: { name: string; type: string }[] = [];
  if (row.arg_modes.length === 0) {
    row.in_arg_types.forEach((type, i) => {
      inputs.push({ name: row.arg_names[i] ?? '', type });
    });
  } else {
    row.arg_modes.forEach((mode, i) => {
      if (mode === 'i' || mode === 'b' || mode === 'v') {
        inputs.push({ name: row.arg_names[i] ?? '', type: row.all_arg_types[i] ?? 'text' });
      }
    });
  }
  const firstDefault = inputs.length - row.n_defaults;
  const shape: ReturnShape = row.returns_void
    ? 'void'
    : row.returns_set
      ? 'set'
      : row.returns_composite
        ? 'composite'
        : 'scalar';
  return {
    schema: row.schema,
    name: row.name,
    params: inputs.map((p, i) => ({ ...p, hasDefault: i >= firstDefault })),
    shape,
    volatile: row.volatile,
  };
}

export async function loadSchemaCache(
  pool: Pool,
  schemas: readonly string[],
): Promise<SchemaCache> {
  const { rows } = await pool.query<ProcRow>(loadSql, [schemas]);
  const cache: SchemaCache = new Map();
  for (const row of rows) {
    const key = cacheKey(row.schema, row.name);
    const list = cache.get(key) ?? [];
    list.push(toRoutine(row));
    cache.set(key, list);
  }
  return cache;
}

/**
 * Picks the overload whose parameter names the request's argument names fit: every key
 * is a parameter and every parameter without a default is given. PGRST202 when none does,
 * PGRST203 when several do, with PostgREST's messages.
 */
export function resolveRoutine(
  cache: SchemaCache,
  schema: string,
  name: string,
  argNames: readonly string[],
): Routine {
  const overloads = cache.get(cacheKey(schema, name)) ?? [];
  const given = new Set(argNames);
  const matches = overloads.filter(
    (r) =>
      argNames.every((a) => r.params.some((p) => p.name === a)) &&
      r.params.every((p) => p.hasDefault || given.has(p.name)),
  );
  const [only, ...others] = matches;
  if (only && others.length === 0) return only;
  const argList = [...argNames].sort().join(', ');
  if (matches.length > 1) {
    throw postgrestError(
      300,
      'PGRST203',
      `Could not choose the best candidate function between: ${matches
        .map(
          (r) =>
            `${r.schema}.${r.name}(${r.params.map((p) => `${p.name} => ${p.type}`).join(', ')})`,
        )
        .join(', ')}`,
      null,
      'Try renaming the parameters or the function itself in the database so function overloading can be resolved',
    );
  }
  throw postgrestError(
    404,
    'PGRST202',
    `Could not find the function ${schema}.${name}(${argList}) in the schema cache`,
    `Searched for the function ${schema}.${name}${argNames.length ? ` with parameters ${argList}` : ' without parameters'} or with a single unnamed json/jsonb parameter, but no matches were found in the schema cache.`,
    overloads.length
      ? `Perhaps you meant to call the function ${schema}.${name}(${overloads[0]?.params.map((p) => p.name).join(', ')})`
      : null,
  );
}
