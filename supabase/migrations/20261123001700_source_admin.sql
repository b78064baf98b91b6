-- Source admin: adding n8n sources, listing them with their collection health, reading
-- their sealed keys, and changing a source after it was added: stop or resume collecting
-- from it, replace its n8n API key, re-encrypt stored keys under a new encryption key
-- (which reads them with n8n_source_credentials). Service-only.

-- The caller encrypts the API key (src/crypto); the database stores ciphertext only.
create or replace function public.add_n8n_source(
  tenant_id uuid,
  name text,
  base_url text,
  api_key_ciphertext text,
  project_id text default null
)
returns public.n8n_sources
language sql
set search_path = ''
as $$
  insert into public.n8n_sources (tenant_id, name, base_url, api_key_ciphertext, project_id)
  values (
    add_n8n_source.tenant_id, add_n8n_source.name, add_n8n_source.base_url,
    add_n8n_source.api_key_ciphertext, add_n8n_source.project_id
  )
  returning *;
$$;

-- n8n sources -------------------------------------------------------------------------

-- Sources with their collection health: lag (seconds since the last successful
-- collection; null when none succeeded yet), failures, open executions and gaps. Never
-- the key ciphertext.
create or replace function public.list_n8n_sources(
  tenant_ids uuid[] default null,
  source_ids uuid[] default null
)
returns table (
  id uuid,
  tenant_id uuid,
  tenant_name text,
  name text,
  base_url text,
  project_id text,
  enabled boolean,
  created_at timestamptz,
  last_attempt_at timestamptz,
  last_success_at timestamptz,
  lag_seconds bigint,
  consecutive_failures int,
  last_error text,
  last_error_at timestamptz,
  next_attempt_at timestamptz,
  open_executions bigint,
  gaps bigint
)
language sql stable
set search_path = ''
as $$
  select s.id, s.tenant_id, t.name, s.name, s.base_url, s.project_id, s.enabled, s.created_at,
         st.last_attempt_at, st.last_success_at,
         floor(extract(epoch from now() - st.last_success_at))::bigint,
         coalesce(st.consecutive_failures, 0), st.last_error, st.last_error_at, st.next_attempt_at,
         (select count(*) from public.open_executions o where o.source_id = s.id)
           + (select count(*) from public.execution_probes pr where pr.source_id = s.id),
         (select count(*) from public.collection_gaps g where g.source_id = s.id)
  from public.n8n_sources s
  join public.tenants t on t.id = s.tenant_id
  left join public.collector_source_state st on st.source_id = s.id
  where (list_n8n_sources.tenant_ids is null or s.tenant_id = any (list_n8n_sources.tenant_ids))
    and (list_n8n_sources.source_ids is null or s.id = any (list_n8n_sources.source_ids))
  order by t.name, s.base_url, s.id
  limit private.api_max_rows();
$$;

-- Where sources are and their sealed keys (the caller decrypts them with
-- FLOWMETER_ENCRYPTION_KEYS): these sources, or these tenants' (all by default). For testing
-- a connection, replacing a key, re-encrypting keys. No row for an unknown id. A keyset page
-- in id order, at most what the API hands over: the next page passes after_id = the last
-- row's id (re-encrypting every key walks them all).
create or replace function public.n8n_source_credentials(
  source_ids uuid[] default null,
  tenant_ids uuid[] default null,
  after_id uuid default null
)
returns table (id uuid, tenant_id uuid, base_url text, project_id text, api_key_ciphertext text)
language sql stable
set search_path = ''
as $$
  select s.id, s.tenant_id, s.base_url, s.project_id, s.api_key_ciphertext
  from public.n8n_sources s
  where (n8n_source_credentials.source_ids is null or s.id = any (n8n_source_credentials.source_ids))
    and (n8n_source_credentials.tenant_ids is null or s.tenant_id = any (n8n_source_credentials.tenant_ids))
    and s.id > coalesce(n8n_source_credentials.after_id, '00000000-0000-0000-0000-000000000000'::uuid)
  order by s.id
  limit private.api_max_rows();
$$;

-- A source an operator just fixed is due now instead of after its failure backoff.
create or replace function private.collect_source_now(source_id uuid)
returns void
language sql
set search_path = ''
as $$
  update public.collector_source_state st set next_attempt_at = now()
  where st.source_id = collect_source_now.source_id and st.next_attempt_at > now();
$$;

-- Enables or disables collection from a source. A disabled source is never claimed by
-- the collector; what it collected stays, and re-enabling resumes from where collection
-- stopped (the walk reaches back to the watermark). Re-enabling makes the source due now.
create or replace function public.set_n8n_source_enabled(source_id uuid, enabled boolean)
returns public.n8n_sources
language plpgsql
set search_path = ''
as $$
declare
  source public.n8n_sources := private.set_enabled(
    null::public.n8n_sources, set_n8n_source_enabled.source_id, set_n8n_source_enabled.enabled,
    'n8n source', 'flowmeter sources list shows the ids');
begin
  if set_n8n_source_enabled.enabled then
    perform private.collect_source_now(set_n8n_source_enabled.source_id);
  end if;
  return source;
end;
$$;

-- Replaces a source's stored API key ciphertext (encrypted by the application).
--
-- A new key (rotated in n8n, or fixing a rejected one) makes the source due now instead of
-- after its failure backoff. With expected_ciphertext it is a compare-and-set that leaves
-- the schedule alone: re-encrypting the same key under a new encryption key, which must
-- not overwrite a key an operator replaced meanwhile (PT409 when it was).
create or replace function public.set_n8n_source_key(
  source_id uuid,
  api_key_ciphertext text,
  expected_ciphertext text default null
)
returns public.n8n_sources
language plpgsql
set search_path = ''
as $$
declare
  source public.n8n_sources;
begin
  -- A concurrent write makes the update re-check its condition on the newest row version,
  -- so the compare-and-set holds without an explicit lock.
  update public.n8n_sources s set api_key_ciphertext = set_n8n_source_key.api_key_ciphertext
  where s.id = set_n8n_source_key.source_id
    and (set_n8n_source_key.expected_ciphertext is null
         or s.api_key_ciphertext = set_n8n_source_key.expected_ciphertext)
  returning s.* into source;
  if not found then
    if exists (select 1 from public.n8n_sources s where s.id = set_n8n_source_key.source_id) then
      raise exception 'the key of n8n source % changed meanwhile', set_n8n_source_key.source_id
        using errcode = 'PT409', hint = 'read it again';
    end if;
    perform private.raise_not_found('n8n source', set_n8n_source_key.source_id::text,
                                    'flowmeter sources list shows the ids');
  end if;
  if set_n8n_source_key.expected_ciphertext is null then
    perform private.collect_source_now(set_n8n_source_key.source_id);
  end if;
  return source;
end;
$$;

select private.grant_to_service_role_only(
  'private.collect_source_now(uuid)',
  'public.add_n8n_source(uuid, text, text, text, text)',
  'public.list_n8n_sources(uuid[], uuid[])',
  'public.n8n_source_credentials(uuid[], uuid[], uuid)',
  'public.set_n8n_source_enabled(uuid, boolean)',
  'public.set_n8n_source_key(uuid, text, text)'
);
