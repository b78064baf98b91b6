-- Every run of every scheduled function, for the operator: when, how long, what it did.
-- (Collector runs also keep their own detail in collector_runs.)

create table public.scheduled_runs (
  id uuid primary key default gen_random_uuid(),
  function_name text not null
    constraint scheduled_runs_function_name_format check (function_name ~ '^[a-z0-9-]{1,100}$'),
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  ok boolean,
  summary jsonb,
  error text
);
comment on table public.scheduled_runs is 'One row per scheduled function run: started, finished, ok or the error, and its summary.';
create index scheduled_runs_function_started_idx on public.scheduled_runs (function_name, started_at desc);

alter table public.scheduled_runs enable row level security;
revoke all on table public.scheduled_runs from public, anon, authenticated;
grant all on table public.scheduled_runs to service_role;

create or replace function public.start_scheduled_run(function_name text)
returns uuid
language sql
set search_path = ''
as $$
  insert into public.scheduled_runs (function_name) values (start_scheduled_run.function_name) returning id;
$$;

create or replace function public.finish_scheduled_run(id uuid, ok boolean, summary jsonb default null, error text default null)
returns public.scheduled_runs
language sql
set search_path = ''
as $$
  update public.scheduled_runs r set
    finished_at = now(),
    ok = finish_scheduled_run.ok,
    summary = finish_scheduled_run.summary,
    error = left(finish_scheduled_run.error, 2000)
  where r.id = finish_scheduled_run.id and r.finished_at is null
  returning r.*;
$$;

revoke execute on function public.start_scheduled_run(text), public.finish_scheduled_run(uuid, boolean, jsonb, text)
  from public, anon, authenticated;
grant execute on function public.start_scheduled_run(text), public.finish_scheduled_run(uuid, boolean, jsonb, text)
  to service_role;
