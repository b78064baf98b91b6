-- Helpers of the service-only admin functions (alert channels, n8n sources, webhook
-- endpoints): the answer for an unknown id, and turning a row on or off by its id.

-- An unknown id: PT404 (HTTP 404), naming what was looked for and, in the hint, where the
-- ids are.
create or replace function private.raise_not_found(what text, id text, hint text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  raise exception '% % not found', raise_not_found.what, raise_not_found.id
    using errcode = 'PT404', hint = raise_not_found.hint;
end;
$$;

-- Sets enabled on the row whose id is id, of the table named by a null of its row type
-- (rows), and returns the row as it now is. An unknown id is not found: what and hint say
-- what was looked for and where the ids are (raise_not_found).
create or replace function private.set_enabled(
  rows anyelement,
  id anycompatible,
  enabled boolean,
  what text,
  hint text
)
returns anyelement
language plpgsql
set search_path = ''
as $$
declare
  changed alias for $0;
  matched int;
begin
  execute format('update %s r set enabled = $1 where r.id = $2 returning r.*',
                 pg_catalog.pg_typeof(set_enabled.rows))
  into changed using set_enabled.enabled, set_enabled.id;
  get diagnostics matched = row_count;
  if matched = 0 then
    perform private.raise_not_found(set_enabled.what, set_enabled.id::text, set_enabled.hint);
  end if;
  return changed;
end;
$$;

select private.grant_to_service_role_only(
  'private.raise_not_found(text, text, text)',
  'private.set_enabled(anyelement, anycompatible, boolean, text, text)'
);
