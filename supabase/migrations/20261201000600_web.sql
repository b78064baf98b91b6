-- Tenant dashboard: the per-workflow breakdown also returns each workflow's total run time,
-- which the dashboard shows beside the average (the average times the count is not it:
-- the average is rounded and skips executions without a known duration).
--
-- Redefined whole, with the same arguments, rules and grants as in the tenant usage API
-- migration; only the total_duration_ms column is new. A function's result columns cannot
-- change in place, hence drop and create.

drop function public.tenant_workflow_breakdown(uuid, timestamptz, int, text);

create function public.tenant_workflow_breakdown(
  tenant_id uuid,
  period_start timestamptz default null,
  max_rows int default 50,
  after_workflow_id text default null
)
returns table (
  workflow_id text,
  executions bigint,
  billable bigint,
  success_rate numeric,
  avg_duration_ms numeric,
  p95_duration_ms numeric,
  total_duration_ms bigint
)
language plpgsql stable
security invoker
set search_path = ''
as $$
#variable_conflict use_column
declare
  t public.tenants;
  bounds record;
  page_size int := least(coalesce(tenant_workflow_breakdown.max_rows, 50), 500);
begin
  if page_size < 1 then
    raise exception 'max_rows must be at least 1 (got %)', tenant_workflow_breakdown.max_rows
      using errcode = '22023';
  end if;
  select * into t from public.tenants x where x.id = tenant_workflow_breakdown.tenant_id;
  if not found then
    return;
  end if;
  -- The period as counted: the counters row containing the instant (its bounds were the
  -- tenant's when its executions were counted), else the billing period computed now.
  select c.period_start, c.period_end into bounds
  from public.usage_counters c
  where c.tenant_id = t.id
    and c.period_start <= coalesce(tenant_workflow_breakdown.period_start, now())
    and c.period_end > coalesce(tenant_workflow_breakdown.period_start, now())
  order by c.period_start desc
  limit 1;
  if not found then
    select * into bounds from private.billing_period(
      t.current_period_start, t.current_period_end, coalesce(tenant_workflow_breakdown.period_start, now())
    );
  end if;

  return query
  select e.workflow_id,
         count(*),
         count(*) filter (where e.billable),
         round((count(*) filter (where e.status = 'success'))::numeric / count(*), 4),
         round(avg(e.duration_ms), 1),
         round((percentile_cont(0.95) within group (order by e.duration_ms))::numeric, 1),
         coalesce(sum(e.duration_ms), 0)::bigint
  from public.executions e
  where e.tenant_id = t.id
    and e.occurred_at >= bounds.period_start and e.occurred_at < bounds.period_end
    -- exactly the executions counted in this period's counters
    and e.period_start = bounds.period_start
    -- Under row-level security this bound filters rows rather than starting the index
    -- scan (text comparison is not leakproof, so it may not run before the policy): a page
    -- reads the tenant's executions of the period up to its last workflow.
    and (tenant_workflow_breakdown.after_workflow_id is null
         or e.workflow_id > tenant_workflow_breakdown.after_workflow_id)
  group by e.workflow_id
  order by e.workflow_id
  limit page_size;
end;
$$;
comment on function public.tenant_workflow_breakdown(uuid, timestamptz, int, text) is
$$Usage of one tenant per n8n workflow in one billing period, from the raw executions of that period only (index on tenant and time).
period_start: null = the current period; otherwise the period containing that instant (pass period_start from tenant_usage_history or tenant_usage_summary).
Keyset pagination by workflow_id: rows in workflow_id order, at most max_rows (default 50, capped at 500); the next page starts after_workflow_id = the last row's workflow_id.
Columns: workflow_id; executions = every finished execution; billable; success_rate = share of executions that succeeded (0 to 1, 4 decimals);
avg_duration_ms, p95_duration_ms (continuous 95th percentile) over executions with a known duration, 1 decimal, null when none;
total_duration_ms = the sum of the known durations, 0 when none.
Raw executions are kept for the retention period only (EXECUTION_RETENTION_MONTHS): older periods have no rows here, their totals remain in tenant_usage_history.
No rows when the caller is not a member of the tenant.$$;

revoke execute on function public.tenant_workflow_breakdown(uuid, timestamptz, int, text)
  from public, anon;
grant execute on function public.tenant_workflow_breakdown(uuid, timestamptz, int, text)
  to authenticated, service_role;
