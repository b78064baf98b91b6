-- Supabase compatibility bootstrap for a plain PostgreSQL (local stack only).
--
-- Real Supabase projects already have all of this. It recreates the parts our migrations,
-- RLS policies and the advisors depend on: the API roles, the auth schema with
-- auth.users / auth.uid() / auth.jwt() / auth.role(), the extensions schema, and the
-- default privileges Supabase grants in public. Idempotent: safe to run on every start.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_admin') then
    create role supabase_admin nologin superuser createdb createrole replication bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'supabase_auth_admin') then
    create role supabase_auth_admin nologin noinherit createrole;
  end if;
end
$$;

grant anon, authenticated, service_role to authenticator;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';

create schema if not exists extensions;
create extension if not exists pgcrypto with schema extensions;
grant usage on schema extensions to postgres, anon, authenticated, service_role;

grant usage on schema public to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on tables to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to postgres, anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to postgres, anon, authenticated, service_role;

create schema if not exists auth authorization supabase_auth_admin;
grant usage on schema auth to anon, authenticated, service_role;

create table if not exists auth.users (
  instance_id uuid,
  id uuid primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255) unique,
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz default now(),
  updated_at timestamptz default now(),
  is_anonymous boolean not null default false
);
-- Columns a data folder from before the local Auth subset lacks.
alter table auth.users add column if not exists invited_at timestamptz;
alter table auth.users owner to supabase_auth_admin;

-- Sessions and rotating refresh tokens of the local Auth subset (src/local/auth), with
-- GoTrue's table and column names. Deleting a user ends its sessions and their tokens.
create table if not exists auth.sessions (
  id uuid primary key,
  user_id uuid not null references auth.users (id) on delete cascade,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  refreshed_at timestamptz,
  aal text not null default 'aal1',
  not_after timestamptz,
  user_agent text
);
create index if not exists sessions_user_id_idx on auth.sessions (user_id);
alter table auth.sessions owner to supabase_auth_admin;

create table if not exists auth.refresh_tokens (
  instance_id uuid,
  id bigserial primary key,
  -- In clear, as GoTrue keeps it: only supabase_auth_admin can read this schema's tables.
  token varchar(255) not null unique,
  user_id varchar(255) not null,
  revoked boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  parent varchar(255),
  session_id uuid not null references auth.sessions (id) on delete cascade
);
create index if not exists refresh_tokens_session_id_revoked_idx on auth.refresh_tokens (session_id, revoked);
alter table auth.refresh_tokens owner to supabase_auth_admin;

-- The claims PostgREST sets per request with set_config('request.jwt.claims', ..., true).
create or replace function auth.jwt() returns jsonb
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

-- One claim of the request's JWT: the per-claim setting older PostgREST versions set
-- first, then the claims object. Local only (real Supabase reads its claims in each auth
-- function), so migrations call auth.uid(), auth.role() and auth.email(), never this.
create or replace function auth.jwt_claim(claim text) returns text
language sql stable
set search_path = ''
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.' || jwt_claim.claim, true), ''),
    nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> jwt_claim.claim
  )
$$;

create or replace function auth.uid() returns uuid
language sql stable
set search_path = ''
as $$ select auth.jwt_claim('sub')::uuid $$;

create or replace function auth.role() returns text
language sql stable
set search_path = ''
as $$ select auth.jwt_claim('role') $$;

create or replace function auth.email() returns text
language sql stable
set search_path = ''
as $$ select auth.jwt_claim('email') $$;

alter function auth.jwt() owner to supabase_auth_admin;
alter function auth.jwt_claim(text) owner to supabase_auth_admin;
alter function auth.uid() owner to supabase_auth_admin;
alter function auth.role() owner to supabase_auth_admin;
alter function auth.email() owner to supabase_auth_admin;
grant execute on function auth.jwt(), auth.jwt_claim(text), auth.uid(), auth.role(), auth.email()
  to anon, authenticated, service_role;
