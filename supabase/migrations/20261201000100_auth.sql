-- Tenant members and operators: the service-only functions behind `flowmeter members` and
-- `flowmeter operators`, and the one reading of the operator claim that operator RPCs use.
--
-- Users themselves belong to Supabase Auth: they are created, invited, changed and deleted
-- only through its Admin API (supabase-js auth.admin). These functions link them to
-- tenants and read the few fields of auth.users a person needs to recognise them.

-- Member roles say what a member may do: viewers read their tenant's usage; admin and
-- owner are kept for the tenant-side management to come. "member" named no permission.
alter table public.tenant_members drop constraint tenant_members_role_known;
update public.tenant_members set role = 'viewer' where role = 'member';
alter table public.tenant_members alter column role set default 'viewer';
alter table public.tenant_members add constraint tenant_members_role_known
  check (role in ('owner', 'admin', 'viewer'));

create or replace function public.add_tenant_member(
  tenant_id uuid,
  user_id uuid,
  role text default 'viewer'
)
returns public.tenant_members
language sql
set search_path = ''
as $$
  insert into public.tenant_members as m (tenant_id, user_id, role)
  values (add_tenant_member.tenant_id, add_tenant_member.user_id, add_tenant_member.role)
  on conflict on constraint tenant_members_pkey do update set role = excluded.role
  returning m.*;
$$;

-- True when the membership existed and is gone.
create or replace function public.remove_tenant_member(tenant_id uuid, user_id uuid)
returns boolean
language sql
set search_path = ''
as $$
  with removed as (
    delete from public.tenant_members m
    where m.tenant_id = remove_tenant_member.tenant_id and m.user_id = remove_tenant_member.user_id
    returning 1
  )
  select exists (select 1 from removed);
$$;

create or replace function public.list_tenant_members(tenant_ids uuid[] default null)
returns table (
  tenant_id uuid,
  tenant_name text,
  tenant_external_ref text,
  user_id uuid,
  email text,
  role text,
  created_at timestamptz,
  last_sign_in_at timestamptz
)
language sql
stable
security definer
set search_path = ''
as $$
  select m.tenant_id, t.name, t.external_ref, m.user_id, u.email::text, m.role, m.created_at,
         u.last_sign_in_at
  from public.tenant_members m
  join public.tenants t on t.id = m.tenant_id
  join auth.users u on u.id = m.user_id
  where list_tenant_members.tenant_ids is null or m.tenant_id = any (list_tenant_members.tenant_ids)
  order by t.name, t.id, u.email;
$$;
comment on function public.list_tenant_members(uuid[]) is
  'security definer: reads members'' e-mail addresses from auth.users, which belongs to Supabase Auth and is granted to no API role; returns the address and last sign-in only. Service role only.';

-- Supabase Auth keeps addresses in lower case; the lookup ignores case as sign-in does.
create or replace function public.auth_user_id(email text)
returns uuid
language sql
stable
security definer
set search_path = ''
as $$
  select u.id from auth.users u where lower(u.email) = lower(auth_user_id.email);
$$;
comment on function public.auth_user_id(text) is
  'security definer: finds a Supabase Auth user by e-mail address in auth.users, which is granted to no API role (the Admin API can only page through every user). Service role only.';

-- Operators ---------------------------------------------------------------------------

-- app_metadata is written only with the service role (Auth Admin API); user_metadata is
-- the user's own to edit, so it never decides anything.
create or replace function public.list_operators()
returns table (user_id uuid, email text, created_at timestamptz, last_sign_in_at timestamptz)
language sql
stable
security definer
set search_path = ''
as $$
  select u.id, u.email::text, u.created_at, u.last_sign_in_at
  from auth.users u
  where u.raw_app_meta_data ->> 'flowmeter_role' = 'operator'
  order by u.email;
$$;
comment on function public.list_operators() is
  'security definer: reads the operator mark in auth.users.raw_app_meta_data, which belongs to Supabase Auth and is granted to no API role. Service role only.';

-- The one reading of the operator claim: the signed-in user's token says operator in its
-- app_metadata. Operator RPCs are granted to authenticated and call require_operator()
-- first (or filter on is_operator()).
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

revoke execute on function
  public.add_tenant_member(uuid, uuid, text),
  public.remove_tenant_member(uuid, uuid),
  public.list_tenant_members(uuid[]),
  public.auth_user_id(text),
  public.list_operators(),
  private.is_operator(),
  private.require_operator()
  from public, anon, authenticated;
grant execute on function
  public.add_tenant_member(uuid, uuid, text),
  public.remove_tenant_member(uuid, uuid),
  public.list_tenant_members(uuid[]),
  public.auth_user_id(text),
  public.list_operators()
  to service_role;
grant execute on function private.is_operator(), private.require_operator()
  to authenticated, service_role;
