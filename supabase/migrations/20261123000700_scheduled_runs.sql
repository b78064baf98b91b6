-- Scheduled runs: every run of every scheduled function, for the operator: when, how
-- long, what it did (collector runs also keep their own detail in collector_runs).
-- Written by start_scheduled_run and finish_scheduled_run (operator).

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

select private.restrict_to_service_role('public.scheduled_runs');

create index scheduled_runs_started_idx on public.scheduled_runs (started_at);

-- Scheduled runs as the operator should read them: a run that started over 2 minutes ago
-- and never finished was killed or timed out, so it failed, whatever it could not record.
-- Only scheduled functions record here, and Netlify ends those at 30 s (their work is cut
-- before, and the end recorded with retries, so a live run is never read as killed); the
-- background collection keeps its own runs (collector_runs, 15 minutes). A plain view:
-- inlined where used.
create view private.scheduled_run_outcomes with (security_invoker = true) as
select r.id, r.function_name, r.started_at, r.finished_at, r.summary,
       case when r.finished_at is null and r.started_at < now() - interval '2 minutes'
            then false else r.ok end as ok,
       case when r.finished_at is null and r.started_at < now() - interval '2 minutes'
            then 'did not finish: killed or timed out' else r.error end as error
from public.scheduled_runs r;
revoke all on private.scheduled_run_outcomes from public, anon, authenticated;
grant select on private.scheduled_run_outcomes to service_role;
