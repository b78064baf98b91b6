-- Operator changes to a source after it was added: stop or resume collecting from it,
-- replace its n8n API key, and re-encrypt stored keys under a new encryption key (which
-- reads them with n8n_source_credentials).

-- Enables or disables collection from a source. A disabled source is never claimed by
-- the collector; what it collected stays, and re-enabling resumes from where collection
-- stopped (the walk reaches back to the watermark). Re-enabling makes the source due now.
create or replace function public.set_n8n_source_enabled(source_id uuid, enabled boolean)
returns public.n8n_sources
language plpgsql
set search_path = ''
as $$
declare
  source public.n8n_sources;
begin
  update public.n8n_sources s set enabled = set_n8n_source_enabled.enabled
  where s.id = set_n8n_source_enabled.source_id
  returning s.* into source;
  if not found then
    raise exception 'n8n source % not found', set_n8n_source_enabled.source_id
      using errcode = 'PT404', hint = 'flowmeter sources list shows the ids';
  end if;
  if set_n8n_source_enabled.enabled then
    update public.collector_source_state st set next_attempt_at = now()
    where st.source_id = set_n8n_source_enabled.source_id and st.next_attempt_at > now();
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
    raise exception 'n8n source % not found', set_n8n_source_key.source_id
      using errcode = 'PT404', hint = 'flowmeter sources list shows the ids';
  end if;
  if set_n8n_source_key.expected_ciphertext is null then
    update public.collector_source_state st set next_attempt_at = now()
    where st.source_id = set_n8n_source_key.source_id and st.next_attempt_at > now();
  end if;
  return source;
end;
$$;

revoke execute on function
  public.set_n8n_source_enabled(uuid, boolean),
  public.set_n8n_source_key(uuid, text, text)
  from public, anon, authenticated;
grant execute on function
  public.set_n8n_source_enabled(uuid, boolean),
  public.set_n8n_source_key(uuid, text, text)
  to service_role;
