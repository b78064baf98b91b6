-- Foundation: default privileges, the private schema, and the helpers every table and
-- capability uses (updated_at stamps, billing periods, the operator claim).
--
-- Layout: each table has its final shape in one file with its indexes, row-level
-- security, policies and triggers (tenancy, collection, usage, alerts, billing, scheduled
-- runs); each capability's functions are in one file of their own (ingest, enforcement,
-- Stripe subscriptions, meter reports, alerts, tenant usage API, admin API, source admin,
-- operator). A function is defined once.
--
-- Security model (holds for every migration):
--   * every table in public has row-level security; members of a tenant read that
--     tenant's rows, nobody but service_role (bypassrls) writes;
--   * anon and authenticated get only the privileges granted here explicitly: Supabase's
--     default privileges grant ALL in public to both, so each table revokes first, and
--     their sequences (identity columns) get no privilege at all (below);
--   * functions are security invoker with search_path = '' and qualified names; the
--     service-only ones have EXECUTE revoked from public, anon and authenticated
--     (private.grant_to_service_role_only, below).

-- Functions created from now on are not executable by the API roles unless granted.
alter default privileges in schema public revoke execute on functions from public, anon, authenticated;
alter default privileges revoke execute on functions from public;
-- Sequences (every identity column's) are advanced by the inserts of service_role alone:
-- the API roles, who insert nothing, get no USAGE, SELECT or UPDATE on them (setval).
alter default privileges in schema public revoke all on sequences from anon, authenticated;

-- Internal helpers live outside the schemas PostgREST exposes.
create schema if not exists private;
revoke all on schema private from public;

grant usage on schema private to service_role;
-- The tenant usage API calls the pure helpers granted to authenticated (billing_period,
-- plan_quota, usage_standing) under the caller's role.
grant usage on schema private to authenticated;

-- Service-only functions: EXECUTE revoked from public, anon and authenticated (revoked
-- explicitly, whatever the defaults), granted to service_role. Each capability lists its
-- service-only functions once, here, rather than in a revoke list and a grant list that
-- must be kept equal.
create or replace function private.grant_to_service_role_only(variadic functions regprocedure[])
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format('revoke execute on function %s from public, anon, authenticated',
                 array_to_string(grant_to_service_role_only.functions, ', '));
  execute format('grant execute on function %s to service_role',
                 array_to_string(grant_to_service_role_only.functions, ', '));
end;
$$;
revoke execute on function private.grant_to_service_role_only(regprocedure[]) from public, anon, authenticated;

-- Functions signed-in users call: EXECUTE revoked from public and anon (who get 401 from
-- the API), granted to authenticated and service_role. Each capability lists its
-- functions once. The service-only grant plus authenticated, so the two cannot drift.
create or replace function private.grant_to_authenticated(variadic functions regprocedure[])
returns void
language plpgsql
set search_path = ''
as $$
begin
  perform private.grant_to_service_role_only(variadic grant_to_authenticated.functions);
  execute format('grant execute on function %s to authenticated',
                 array_to_string(grant_to_authenticated.functions, ', '));
end;
$$;
revoke execute on function private.grant_to_authenticated(regprocedure[]) from public, anon, authenticated;

-- Table privileges --------------------------------------------------------------------

-- How every table file (tenancy first, then collection, usage, billing and the rest)
-- closes, defined once. Each table is service-only: row-level security on, Supabase's default
-- grants to the API roles revoked (see the security model in foundation), everything
-- granted to service_role.
create or replace function private.restrict_to_service_role(variadic tables regclass[])
returns void
language plpgsql
set search_path = ''
as $$
begin
  -- alter table takes one table at a time, revoke and grant a list.
  execute (select string_agg(format('alter table %s enable row level security', t), '; ')
           from unnest(restrict_to_service_role.tables) t);
  execute format('revoke all on table %s from public, anon, authenticated',
                 array_to_string(restrict_to_service_role.tables, ', '));
  execute format('grant all on table %s to service_role', array_to_string(restrict_to_service_role.tables, ', '));
end;
$$;
revoke all on function private.restrict_to_service_role(regclass[]) from public;

-- Then, for a table of tenant rows that members may read: SELECT (on `columns` only, when
-- given) to authenticated, and the policy <table>_select_member that shows a member the
-- rows of its own tenants.
create or replace function private.grant_member_read(tbl regclass, variadic columns text[] default null)
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format('grant select %s on table %s to authenticated',
                 (select '(' || string_agg(format('%I', c), ', ') || ')' from unnest(grant_member_read.columns) c),
                 grant_member_read.tbl);
  execute format(
    'create policy %I on %s for select to authenticated '
    'using (tenant_id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())))',
    (select c.relname || '_select_member' from pg_catalog.pg_class c where c.oid = grant_member_read.tbl),
    grant_member_read.tbl);
end;
$$;
revoke all on function private.grant_member_read(regclass, text[]) from public;

create or replace function private.touch_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;
revoke all on function private.touch_updated_at() from public;

-- Billing periods ---------------------------------------------------------------------

-- The tenant billing period that contains `at`: the Stripe subscription's current bounds
-- when they contain it, monthly steps from their start otherwise (Stripe keeps the anchor
-- day, clamping to the month's end), the UTC calendar month without a subscription.
-- Month arithmetic is done on UTC timestamps explicitly rather than with a `set timezone`
-- clause: setting a GUC on every call costs more than the call, and this is on the
-- enforcement hot path.
create or replace function private.billing_period(
  current_start timestamptz,
  current_end timestamptz,
  at timestamptz,
  out period_start timestamptz,
  out period_end timestamptz
)
language plpgsql immutable
set search_path = ''
as $$
declare
  months int;
  start_utc timestamp := current_start at time zone 'UTC';
  at_utc timestamp := at at time zone 'UTC';
begin
  if current_start is null then
    period_start := date_trunc('month', at_utc) at time zone 'UTC';
    period_end := (date_trunc('month', at_utc) + interval '1 month') at time zone 'UTC';
    return;
  end if;
  if at >= current_start and at < current_end then
    period_start := current_start;
    period_end := current_end;
    return;
  end if;
  months := (extract(year from at_utc) - extract(year from start_utc))::int * 12
    + (extract(month from at_utc) - extract(month from start_utc))::int;
  if start_utc + make_interval(months => months) > at_utc then
    months := months - 1;
  elsif start_utc + make_interval(months => months + 1) <= at_utc then
    months := months + 1;
  end if;
  period_start := (start_utc + make_interval(months => months)) at time zone 'UTC';
  period_end := (start_utc + make_interval(months => months + 1)) at time zone 'UTC';
  if at < current_start then
    period_end := least(period_end, current_start);
  else
    period_start := greatest(period_start, current_end);
  end if;
end;
$$;

-- The operator claim ------------------------------------------------------------------

-- Operators are Supabase Auth users whose app_metadata (written only with the service
-- role, through the Auth Admin API) says so; user_metadata is the user's own to edit and
-- never decides anything. This is the one reading of the claim, from the signed-in
-- user's token: operator RPCs are granted to authenticated and call require_operator()
-- first. Those are security definer, so they call these as their owner: no API role needs
-- to execute them itself.
create or replace function private.is_operator()
returns boolean
language sql
stable
set search_path = ''
as $$
  select coalesce((select auth.jwt()) -> 'app_metadata' ->> 'flowmeter_role' = 'operator', false);
$$;

-- 42501 answers 403 to a signed-in non-operator and 401 to anon through PostgREST.
create or replace function private.require_operator()
returns void
language plpgsql
stable
set search_path = ''
as $$
begin
  if not private.is_operator() then
    raise exception 'only operators may do this'
      using errcode = '42501',
            hint = 'Sign in as an operator: `flowmeter operators add --email <address>` makes one.';
  end if;
end;
$$;
select private.grant_to_service_role_only('private.is_operator()', 'private.require_operator()');

-- The most rows one call returns through the API. A Supabase project's PostgREST answers at
-- most its "Max rows" (db-max-rows, 1,000 unless raised) of a set-returning function and
-- drops the rest without an error, so a function that claims or pages rows never takes more
-- than this: what a caller is not handed is never claimed, and a page never computes rows
-- nobody receives. The local stack's RPC endpoint applies the same limit.
create or replace function private.api_max_rows()
returns int
language sql
immutable
set search_path = ''
as $$
  select 1000;
$$;

-- billing_period and api_max_rows are pure (immutable, read nothing), so callers may
-- execute them.
select private.grant_to_authenticated(
  'private.billing_period(timestamptz, timestamptz, timestamptz)',
  'private.api_max_rows()'
);
