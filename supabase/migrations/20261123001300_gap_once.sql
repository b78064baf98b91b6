-- A pruning gap is recorded once.
--
-- The walk's floor lags one walk behind the high-water mark (to catch ids that commit
-- late), so the walk after the one that found a gap reaches the end of n8n's list above
-- the same floor and reports the same range again. Ingests of one source are serialised
-- by its lease row, so skipping a range already recorded is enough.
create or replace function private.skip_repeated_gap()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.kind = 'pruned' and exists (
    select 1 from public.collection_gaps g
    where g.source_id = new.source_id and g.kind = 'pruned'
      and g.from_id = new.from_id and g.to_id = new.to_id
  ) then
    return null;
  end if;
  return new;
end;
$$;
revoke all on function private.skip_repeated_gap() from public;

create trigger collection_gaps_skip_repeated before insert on public.collection_gaps
  for each row execute function private.skip_repeated_gap();
