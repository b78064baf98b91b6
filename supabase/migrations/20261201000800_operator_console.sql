-- Operator console: what a signed-in operator reads and does in the browser, with their own
-- JWT, through supabase-js (`supabase.rpc(...)`), and the audit of what they did.
--
-- An operator is an authenticated user whose app_metadata carries the operator mark
-- (private.is_operator); operators never hold the service role. Every function here is
-- granted to authenticated and calls private.require_operator() before it reads or writes
-- anything, so a tenant user or any other signed-in user gets 42501 (HTTP 403) and anon,
-- which may not execute them, gets 401.
--
-- They are security definer: the tables they read are hidden from authenticated by
-- row-level security (an operator is a member of no tenant) or not granted to it at all
-- (collector state, channels, deliveries, the ledger's errors), and the health snapshot is
-- the service-only operator_status(). Each says so in its comment. They reuse the tenant
-- usage API (private.tenant_usage_summary_rows, tenant_usage_history, tenant_usage_daily,
-- tenant_alerts) and operator_status(), so the console shows what the tenant and
-- `flowmeter status` show, computed once.
--
-- Actions (enable/disable a source, acknowledge gaps, re-send a failed delivery) write one
-- row to operator_actions in the same transaction: who (the JWT's sub and email), when,
-- what, on which object. Nobody but the service role reads that table.

-- Audit -------------------------------------------------------------------------------

create table public.operator_actions (
  id bigint generated always as identity primary key,
  at timestamptz not null default now(),
  -- The operator's JWT: sub (the Supabase Auth user id) and email, as signed in.
  actor_sub text not null,
  actor_email text,
  action text not null
    constraint operator_actions_action_known check (action in (
      'source_disabled', 'source_enabled', 'gaps_acknowledged', 'alert_delivery_resent'
    )),
  object_type text not null
    constraint operator_actions_object_type_known check (object_type in ('n8n_source', 'alert_delivery')),
  object_id text not null,
  tenant_id uuid references public.tenants (id) on delete set null,
  detail jsonb not null default '{}'::jsonb
);
comment on table public.operator_actions is 'What operators did in the console: who, when, what, on which object. Written only by the operator action functions.';

create index operator_actions_tenant_id_idx on public.operator_actions (tenant_id);

alter table public.operator_actions enable row level security;
revoke all on table public.operator_actions from public, anon, authenticated;
grant select on table public.operator_actions to service_role;

create or replace function private.record_operator_action(
  action text,
  object_type text,
  object_id text,
  tenant_id uuid,
  detail jsonb default '{}'::jsonb
)
returns void
language sql
set search_path = ''
as $$
  insert into public.operator_actions (actor_sub, actor_email, action, object_type, object_id, tenant_id, detail)
  values ((select auth.jwt()) ->> 'sub', (select auth.jwt()) ->> 'email',
          record_operator_action.action, record_operator_action.object_type,
          record_operator_action.object_id, record_operator_action.tenant_id,
          coalesce(record_operator_action.detail, '{}'::jsonb));
$$;
revoke all on function private.record_operator_action(text, text, text, uuid, jsonb) from public, anon, authenticated;

-- Every tenant's current period, with the columns the console sorts and filters on --------

create or replace function private.operator_tenant_rows(for_tenants uuid[] default null)
returns table (
  tenant_id uuid,
  tenant_name text,
  external_ref text,
  plan_id text,
  plan_name text,
  limit_policy text,
  subscription_status text,
  period_start timestamptz,
  period_end timestamptz,
  used bigint,
  quota bigint,
  remaining bigint,
  percent numeric,
  level text,
  overage_units bigint,
  estimated_overage_amount numeric,
  currency text,
  reserved bigint,
  executions bigint,
  failed bigint,
  recurring_amount numeric,
  created_at timestamptz
)
language sql stable
set search_path = ''
as $$
  select s.tenant_id, s.tenant_name, t.external_ref, s.plan_id, s.plan_name, s.limit_policy,
         s.subscription_status, s.period_start, s.period_end, s.used, s.quota, s.remaining,
         s.percent, s.level, s.overage_units, s.estimated_overage_amount, s.currency,
         s.reserved, s.executions, s.failed, p.recurring_amount, t.created_at
  from private.tenant_usage_summary_rows(operator_tenant_rows.for_tenants) s
  join public.tenants t on t.id = s.tenant_id
  join public.plans p on p.id = s.plan_id;
$$;
revoke all on function private.operator_tenant_rows(uuid[]) from public, anon, authenticated;

-- Overview ----------------------------------------------------------------------------

create or replace function public.operator_overview(
  top_rows int default 10,
  max_near_limit int default 50,
  plan_ids text[] default null
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  result jsonb;
begin
  perform private.require_operator();
  if coalesce(top_rows, 0) not between 1 and 100 or coalesce(max_near_limit, 0) not between 1 and 500 then
    raise exception 'top_rows must be 1 to 100 and max_near_limit 1 to 500 (got %, %)', top_rows, max_near_limit
      using errcode = '22023';
  end if;
  with tenant_rows as (
    select * from private.operator_tenant_rows() r
    where operator_overview.plan_ids is null or r.plan_id = any (operator_overview.plan_ids)
  ),
  -- Each tenant's days so far in its current period against as many days from the start
  -- of its previous period.
  periods as (
    select r.tenant_id,
           (r.period_start at time zone 'UTC')::date as current_first,
           (prev.period_start at time zone 'UTC')::date as previous_first,
           (now() at time zone 'UTC')::date - (r.period_start at time zone 'UTC')::date as elapsed
    from tenant_rows r
    join public.tenants t on t.id = r.tenant_id
    cross join lateral private.billing_period(
      t.current_period_start, t.current_period_end, r.period_start - interval '1 microsecond'
    ) prev
  ),
  trend as (
    select
      coalesce(sum(d.executions) filter (where d.day >= p.current_first), 0) as current_executions,
      coalesce(sum(d.billable) filter (where d.day >= p.current_first), 0) as current_billable,
      coalesce(sum(d.executions) filter (where d.day < p.current_first), 0) as previous_executions,
      coalesce(sum(d.billable) filter (where d.day < p.current_first), 0) as previous_billable
    from periods p
    join public.usage_daily d on d.tenant_id = p.tenant_id
      and ((d.day >= p.current_first and d.day <= p.current_first + p.elapsed)
           or (d.day >= p.previous_first and d.day <= p.previous_first + p.elapsed
               and d.day < p.current_first))
  ),
  currencies as (
    select r.currency,
           -- Subscriptions Stripe is charging: active, and past_due until it gives up.
           sum(r.recurring_amount) filter (where r.subscription_status in ('active', 'past_due')) as recurring,
           count(*) filter (where r.subscription_status in ('active', 'past_due')
                              and r.recurring_amount is not null) as priced_tenants,
           count(*) filter (where r.subscription_status in ('active', 'past_due')
                              and r.recurring_amount is null) as unpriced_tenants,
           sum(r.estimated_overage_amount) as overage,
           sum(r.overage_units) filter (where r.estimated_overage_amount > 0) as overage_units
    from tenant_rows r
    group by r.currency
  )
  select jsonb_build_object(
    'generated_at', now(),
    'tenants', (select count(*) from tenant_rows),
    'tenants_by_plan', coalesce((
      select jsonb_agg(jsonb_build_object('plan_id', p.id, 'plan_name', p.name, 'tenants', x.n) order by p.id)
      from public.plans p
      cross join lateral (select count(*) as n from tenant_rows r where r.plan_id = p.id) x
      where operator_overview.plan_ids is null or p.id = any (operator_overview.plan_ids)
    ), '[]'::jsonb),
    'tenants_by_status', coalesce((
      select jsonb_agg(jsonb_build_object('subscription_status', s.subscription_status, 'tenants', s.n)
                       order by s.subscription_status)
      from (select r.subscription_status, count(*) as n from tenant_rows r group by 1) s
    ), '[]'::jsonb),
    'executions', (
      select jsonb_build_object(
        'total', coalesce(sum(r.executions), 0),
        'billable', coalesce(sum(r.used), 0),
        'reserved', coalesce(sum(r.reserved), 0)
      ) from tenant_rows r
    ),
    'trend', (
      select jsonb_build_object(
        'executions', t.current_executions,
        'billable', t.current_billable,
        'previous_executions', t.previous_executions,
        'previous_billable', t.previous_billable,
        'billable_change_percent', case when t.previous_billable = 0 then null
          else round((t.current_billable - t.previous_billable) * 100.0 / t.previous_billable, 1) end
      ) from trend t
    ),
    'revenue', coalesce((
      select jsonb_agg(jsonb_build_object(
        'currency', c.currency,
        'recurring_amount', coalesce(c.recurring, 0),
        'priced_tenants', c.priced_tenants,
        'unpriced_tenants', c.unpriced_tenants,
        'estimated_overage_amount', coalesce(c.overage, 0),
        'overage_units', coalesce(c.overage_units, 0)
      ) order by c.currency)
      from currencies c
    ), '[]'::jsonb),
    'top_by_usage', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.used desc, x.tenant_id)
      from (
        select r.tenant_id, r.tenant_name, r.plan_id, r.used, r.quota, r.percent, r.level
        from tenant_rows r where r.used > 0
        order by r.used desc, r.tenant_id limit top_rows
      ) x
    ), '[]'::jsonb),
    'top_by_quota_share', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.percent desc, x.tenant_id)
      from (
        select r.tenant_id, r.tenant_name, r.plan_id, r.used, r.quota, r.percent, r.level
        from tenant_rows r where r.percent > 0
        order by r.percent desc, r.tenant_id limit top_rows
      ) x
    ), '[]'::jsonb),
    'near_limit', jsonb_build_object(
      'total', (select count(*) from tenant_rows r where r.level <> 'normal'),
      'tenants', coalesce((
        select jsonb_agg(to_jsonb(x) order by x.percent desc, x.tenant_id)
        from (
          select r.tenant_id, r.tenant_name, r.plan_id, r.limit_policy, r.used, r.quota,
                 r.percent, r.level, r.reserved
          from tenant_rows r where r.level <> 'normal'
          order by r.percent desc, r.tenant_id limit max_near_limit
        ) x
      ), '[]'::jsonb)
    )
  ) into result;
  return result;
end;
$$;
comment on function public.operator_overview(int, int, text[]) is
$$security definer: reads every tenant's plan, counters and daily totals, which row-level security hides from an operator's authenticated role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). The whole system (or the tenants on plan_ids) in one JSON object, each tenant in its current billing period:
tenants; tenants_by_plan [{plan_id, plan_name, tenants}] (every plan, or each of plan_ids, 0 included); tenants_by_status [{subscription_status, tenants}];
executions {total, billable, reserved} = sums of the tenants' current-period counters;
trend {executions, billable} = daily totals from each tenant's period start to today, {previous_executions, previous_billable} = the same number of days from the start of its previous period, billable_change_percent (null without previous usage);
revenue per currency [{currency, recurring_amount = Σ plans.recurring_amount of active and past_due tenants, priced_tenants, unpriced_tenants (active or past_due on a plan without a known price), estimated_overage_amount, overage_units}], amounts in the currency's minor unit;
top_by_usage and top_by_quota_share: at most top_rows (default 10) tenants [{tenant_id, tenant_name, plan_id, used, quota, percent, level}];
near_limit {total, tenants}: tenants at warning, limit or overage level, highest share first, at most max_near_limit (default 50).$$;

-- Tenants table -----------------------------------------------------------------------

create or replace function public.operator_tenants(
  search text default null,
  plan_ids text[] default null,
  levels text[] default null,
  statuses text[] default null,
  sort text default 'name',
  descending boolean default false,
  max_rows int default 50,
  after jsonb default null
)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  page_size int := coalesce(max_rows, 50);
  after_num numeric;
  after_text text;
  after_id uuid;
  pattern text;
  usage_needed boolean;
  result jsonb;
begin
  perform private.require_operator();
  if sort is null or sort not in ('name', 'external_ref', 'plan', 'subscription_status', 'used', 'quota',
                                  'percent', 'level', 'executions', 'reserved', 'estimated_overage_amount',
                                  'created_at') then
    raise exception 'sort must be one of name, external_ref, plan, subscription_status, used, quota, percent, level, executions, reserved, estimated_overage_amount, created_at (got %)',
      coalesce(quote_literal(sort), 'null') using errcode = '22023';
  end if;
  if page_size < 1 or page_size > 500 then
    raise exception 'max_rows must be 1 to 500 (got %)', page_size using errcode = '22023';
  end if;
  if after is not null then
    begin
      after_num := (after ->> 'num')::numeric;
      after_text := after ->> 'text';
      after_id := (after ->> 'id')::uuid;
    exception when others then
      after_id := null;
    end;
    if after_id is null or after_num is null or after_text is null then
      raise exception 'after must be the "next" object of the previous page'
        using errcode = '22023';
    end if;
  end if;
  if length(search) > 200 then
    raise exception 'search is at most 200 characters (got %)', length(search) using errcode = '22023';
  end if;
  if nullif(btrim(search), '') is not null then
    pattern := '%' || replace(replace(replace(btrim(search), '\', '\\'), '%', '\%'), '_', '\_') || '%';
  end if;

  usage_needed := sort in ('used', 'quota', 'percent', 'level', 'executions', 'reserved',
                           'estimated_overage_amount') or levels is not null;

  -- Sorting or filtering on usage ranks every tenant's current period (one pass over all
  -- of them); otherwise the page is chosen from the tenants table alone and only its rows
  -- are summarised, which keeps the default view cheap however many tenants there are.
  -- Every sort key is one number and one text (the one the column does not use is
  -- constant), so one row comparison with the id as the last tie-breaker pages any column
  -- in either direction. Nulls get a place: no external reference sorts first, an
  -- unlimited quota last (as 10^19), an unlimited plan's share below 0 %.
  with candidates as (
    select r.tenant_id, r.tenant_name, r.external_ref, r.plan_id, r.plan_name, r.subscription_status,
           r.created_at, r.used, r.quota, r.percent, r.level, r.executions, r.reserved,
           r.estimated_overage_amount
    from private.operator_tenant_rows() r
    where usage_needed and (levels is null or r.level = any (levels))
    union all
    select t.id, t.name, t.external_ref, t.plan_id, p.name, t.subscription_status, t.created_at,
           null, null, null, null, null, null, null
    from public.tenants t
    join public.plans p on p.id = t.plan_id
    where not usage_needed
  ),
  keyed as (
    select c.tenant_id,
           case sort
             when 'used' then c.used::numeric
             when 'quota' then coalesce(c.quota::numeric, 1e19)
             when 'percent' then coalesce(c.percent, -1)
             when 'level' then array_position(array['normal', 'warning', 'limit', 'overage'], c.level)::numeric
             when 'executions' then c.executions::numeric
             when 'reserved' then c.reserved::numeric
             when 'estimated_overage_amount' then c.estimated_overage_amount
             when 'created_at' then extract(epoch from c.created_at)
             else 0::numeric
           end as k_num,
           case sort
             when 'name' then c.tenant_name
             when 'external_ref' then coalesce(c.external_ref, '')
             when 'plan' then c.plan_name
             when 'subscription_status' then c.subscription_status
             else ''
           end as k_text
    from candidates c
    where (pattern is null or c.tenant_name ilike pattern or c.external_ref ilike pattern)
      and (plan_ids is null or c.plan_id = any (plan_ids))
      and (statuses is null or c.subscription_status = any (statuses))
  ),
  page as (
    select k.*, row_number() over (
      order by case when descending then k.k_num end desc, case when descending then k.k_text end desc,
               case when descending then k.tenant_id end desc, k.k_num, k.k_text, k.tenant_id
    ) as n
    from (
      select k.* from keyed k
      where after_id is null
         or (not descending and (k.k_num, k.k_text, k.tenant_id) > (after_num, after_text, after_id))
         or (descending and (k.k_num, k.k_text, k.tenant_id) < (after_num, after_text, after_id))
      order by case when descending then k.k_num end desc, case when descending then k.k_text end desc,
               case when descending then k.tenant_id end desc, k.k_num, k.k_text, k.tenant_id
      limit page_size + 1
    ) k
  )
  select jsonb_build_object(
    'total', (select count(*) from keyed),
    'rows', coalesce((
      select jsonb_agg(to_jsonb(r) order by x.n)
      from page x
      join private.operator_tenant_rows(
        (select array_agg(y.tenant_id) from page y where y.n <= page_size)
      ) r on r.tenant_id = x.tenant_id
      where x.n <= page_size
    ), '[]'::jsonb),
    'next', (
      select jsonb_build_object('num', x.k_num, 'text', x.k_text, 'id', x.tenant_id)
      from page x
      where x.n = page_size and exists (select 1 from page y where y.n > page_size)
    )
  ) into result;
  return result;
end;
$$;
comment on function public.operator_tenants(text, text[], text[], text[], text, boolean, int, jsonb) is
$$security definer: reads every tenant with its plan and counters, which row-level security hides from an operator's authenticated role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). One page of tenants in their current billing period: {total, rows, next}.
search: part of the name or external reference, case-insensitive, at most 200 characters; plan_ids, levels (normal | warning | limit | overage), statuses (subscription statuses): any of (null = all).
sort: name | external_ref | plan (its name) | subscription_status | used | quota | percent | level | executions | reserved | estimated_overage_amount | created_at, descending or not; ties by tenant id in the same direction.
Nulls: no external_ref sorts as '', an unlimited quota as 10^19, an unlimited plan's percent as -1.
Keyset pagination: at most max_rows (default 50, 1 to 500) rows; next is null on the last page, otherwise passed as `after` (with the same search, filters and sort) for the following page.
total = tenants matching search and filters. Each row: tenant_id, tenant_name, external_ref, plan_id, plan_name, limit_policy, subscription_status, period_start, period_end, used, quota, remaining, percent, level,
overage_units, estimated_overage_amount, currency, reserved, executions, failed, recurring_amount, created_at (as tenant_usage_summary, plus the plan's recurring_amount).$$;

-- Tenant detail -----------------------------------------------------------------------

create or replace function public.operator_tenant(tenant_id uuid, max_rows int default 50)
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  page_size int := coalesce(max_rows, 50);
  result jsonb;
begin
  perform private.require_operator();
  if page_size < 1 or page_size > 200 then
    raise exception 'max_rows must be 1 to 200 (got %)', page_size using errcode = '22023';
  end if;
  if not exists (select 1 from public.tenants t where t.id = operator_tenant.tenant_id) then
    raise exception 'tenant % not found', operator_tenant.tenant_id using errcode = 'PT404';
  end if;
  select jsonb_build_object(
    'summary', (
      select to_jsonb(s) || jsonb_build_object('external_ref', t.external_ref,
                                               'stripe_customer_id', t.stripe_customer_id,
                                               'stripe_subscription_id', t.stripe_subscription_id)
      from private.tenant_usage_summary_rows(array[operator_tenant.tenant_id]) s
      join public.tenants t on t.id = s.tenant_id
    ),
    'history', coalesce((
      select jsonb_agg(to_jsonb(h) order by h.period_start desc)
      from public.tenant_usage_history(operator_tenant.tenant_id, 12) h
    ), '[]'::jsonb),
    'daily', coalesce((
      select jsonb_agg(to_jsonb(d) order by d.day)
      from public.tenant_usage_daily(operator_tenant.tenant_id) d
    ), '[]'::jsonb),
    'sources', coalesce((
      select jsonb_agg(to_jsonb(x) order by x.name, x.id)
      from (
        select s.id, s.name, s.base_url, s.project_id, s.enabled, s.created_at, s.last_attempt_at,
               s.last_success_at, s.lag_seconds, s.consecutive_failures, s.last_error, s.last_error_at,
               s.next_attempt_at, s.open_executions, s.gaps,
               (select count(*) from public.collection_gaps g
                where g.source_id = s.id and g.acknowledged_at is null) as unacknowledged_gaps,
               coalesce((
                 select jsonb_agg(to_jsonb(g) - 'tenant_id' - 'source_id' order by g.detected_at desc, g.id desc)
                 from (
                   select g.* from public.collection_gaps g where g.source_id = s.id
                   order by g.detected_at desc, g.id desc limit page_size
                 ) g
               ), '[]'::jsonb) as recent_gaps
        from public.list_n8n_sources(array[operator_tenant.tenant_id]) s
      ) x
    ), '[]'::jsonb),
    'ledger', jsonb_build_object(
      'pending', (select count(*) from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id and m.status = 'pending'),
      'retrying', (select count(*) from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id and m.status = 'pending' and m.attempts > 0),
      'sent', (select count(*) from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id and m.status = 'sent'),
      'late', (select count(*) from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id and m.status = 'late'),
      'reports', coalesce((
        select jsonb_agg(to_jsonb(m) order by m.id desc)
        from (
          select m.id, m.period_start, m.period_end, m.event_name, m.reported_through, m.value,
                 m.identifier, m.event_timestamp, m.status, m.attempts, m.last_error, m.created_at, m.sent_at
          from public.meter_reports m where m.tenant_id = operator_tenant.tenant_id
          order by m.id desc limit page_size
        ) m
      ), '[]'::jsonb)
    ),
    'corrections', coalesce((
      select jsonb_agg(to_jsonb(c) order by c.id desc)
      from (
        select c.id, c.period_start, c.period_end, c.kind, c.delta, c.reason, c.requested_by, c.identifier, c.method,
               c.event_value, c.cancels_identifier, c.credit_amount, c.currency, c.stripe_object_id, c.status,
               c.attempts, c.last_error, c.created_at, c.sent_at
        from public.meter_corrections c where c.tenant_id = operator_tenant.tenant_id
        order by c.id desc limit page_size
      ) c
    ), '[]'::jsonb),
    'alerts', coalesce((
      select jsonb_agg(to_jsonb(a) || jsonb_build_object('deliveries', coalesce((
          -- The channel's kind, never its target: a Slack webhook URL lets whoever holds it post.
          select jsonb_agg(jsonb_build_object(
                   'channel_id', d.channel_id, 'channel_kind', ch.kind, 'global_channel', ch.tenant_id is null,
                   'status', d.status, 'attempts', d.attempts, 'next_attempt_at', d.next_attempt_at,
                   'last_error', d.last_error, 'delivered_at', d.delivered_at, 'created_at', d.created_at)
                 order by d.channel_id)
          from public.alert_deliveries d
          join public.alert_channels ch on ch.id = d.channel_id
          where d.alert_id = a.id
        ), '[]'::jsonb)) order by a.id desc)
      from public.tenant_alerts(operator_tenant.tenant_id, false, page_size) a
    ), '[]'::jsonb),
    'reservations', jsonb_build_object(
      'active', (select count(*) from public.usage_reservations r
                 where r.tenant_id = operator_tenant.tenant_id and r.released_at is null),
      'rows', coalesce((
        select jsonb_agg(to_jsonb(r) order by r.expires_at, r.id)
        from (
          select r.id, r.period_start, r.workflow_id, r.run_ref, r.created_at, r.expires_at
          from public.usage_reservations r
          where r.tenant_id = operator_tenant.tenant_id and r.released_at is null
          order by r.expires_at, r.id limit page_size
        ) r
      ), '[]'::jsonb)
    )
  ) into result;
  return result;
end;
$$;
comment on function public.operator_tenant(uuid, int) is
$$security definer: reads one tenant's usage, sources with their collector state, Stripe ledger, alert deliveries and reservations, which row-level security or missing grants hide from an operator's authenticated role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise); PT404 (HTTP 404) for an unknown tenant. One tenant in one JSON object:
summary = its tenant_usage_summary row plus external_ref, stripe_customer_id, stripe_subscription_id; history = tenant_usage_history (12 periods); daily = tenant_usage_daily (defaults) — what the tenant's own dashboard shows;
sources = list_n8n_sources rows (lag_seconds, consecutive_failures, last_error, open_executions, gaps) plus unacknowledged_gaps and recent_gaps;
ledger {pending, retrying (pending with failed attempts), sent, late, reports (newest first, with attempts and last_error)};
corrections = meter_corrections rows, newest first (kind, delta, reason, requested_by, method, what was cancelled or credited, status, attempts, last_error);
alerts = tenant_alerts rows each with deliveries [{channel_id, channel_kind, global_channel, status, attempts, next_attempt_at, last_error, delivered_at, created_at}] (never the channel's target);
reservations {active, rows (soonest to expire first)}. Lists hold at most max_rows (default 50, 1 to 200) items.$$;

-- Health ------------------------------------------------------------------------------

create or replace function public.operator_health()
returns jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  perform private.require_operator();
  return public.operator_status() || jsonb_build_object('collector', public.collector_health());
end;
$$;
comment on function public.operator_health() is
$$security definer: operator_status() and collector_health() read collector state, the Stripe ledger, alert deliveries and scheduled runs, which are service-only; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Exactly operator_status() with its defaults plus collector_health() under "collector", the snapshot `flowmeter status` and GET /api/v1/status read; the findings that need a person come from statusFindings (src/ops/status-findings.ts) in all three.$$;

-- Actions -----------------------------------------------------------------------------

create or replace function public.operator_set_source_enabled(source_id uuid, enabled boolean)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  source public.n8n_sources;
  was_enabled boolean;
begin
  perform private.require_operator();
  if operator_set_source_enabled.enabled is null then
    raise exception 'enabled must be true or false' using errcode = '22023';
  end if;
  select s.enabled into was_enabled from public.n8n_sources s
  where s.id = operator_set_source_enabled.source_id for update;
  source := public.set_n8n_source_enabled(operator_set_source_enabled.source_id, operator_set_source_enabled.enabled);
  perform private.record_operator_action(
    case when source.enabled then 'source_enabled' else 'source_disabled' end,
    'n8n_source', source.id::text, source.tenant_id,
    jsonb_build_object('was_enabled', was_enabled, 'base_url', source.base_url));
  return jsonb_build_object('id', source.id, 'tenant_id', source.tenant_id, 'name', source.name,
                            'base_url', source.base_url, 'enabled', source.enabled);
end;
$$;
comment on function public.operator_set_source_enabled(uuid, boolean) is
$$security definer: n8n_sources is written only by the service role and set_n8n_source_enabled is service-only; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Enables or disables collection from one source (as `flowmeter sources enable|disable`) and records it in operator_actions.
PT404 (HTTP 404) for an unknown source. Returns {id, tenant_id, name, base_url, enabled}.$$;

create or replace function public.operator_acknowledge_gaps(source_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  source public.n8n_sources;
  acknowledged bigint;
begin
  perform private.require_operator();
  select * into source from public.n8n_sources s where s.id = operator_acknowledge_gaps.source_id;
  if not found then
    raise exception 'n8n source % not found', operator_acknowledge_gaps.source_id using errcode = 'PT404';
  end if;
  acknowledged := public.acknowledge_collection_gaps(source_ids => array[source.id]);
  perform private.record_operator_action('gaps_acknowledged', 'n8n_source', source.id::text, source.tenant_id,
                                         jsonb_build_object('acknowledged', acknowledged));
  return jsonb_build_object('source_id', source.id, 'tenant_id', source.tenant_id, 'acknowledged', acknowledged);
end;
$$;
comment on function public.operator_acknowledge_gaps(uuid) is
$$security definer: collection_gaps is written only by the service role; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Marks every unacknowledged gap of one source as seen (acknowledged_at); gaps stay listed.
PT404 (HTTP 404) for an unknown source. Records the action in operator_actions even when nothing was left to acknowledge. Returns {source_id, tenant_id, acknowledged}.$$;

create or replace function public.operator_resend_alert_delivery(alert_id bigint, channel_id bigint)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  delivery public.alert_deliveries;
  alert_tenant uuid;
begin
  perform private.require_operator();
  select d.* into delivery from public.alert_deliveries d
  where d.alert_id = operator_resend_alert_delivery.alert_id and d.channel_id = operator_resend_alert_delivery.channel_id
  for update;
  if not found then
    raise exception 'alert delivery %/% not found', operator_resend_alert_delivery.alert_id,
      operator_resend_alert_delivery.channel_id using errcode = 'PT404';
  end if;
  if delivery.status <> 'failed' then
    raise exception 'only a failed delivery can be sent again (this one is %)', delivery.status
      using errcode = 'PT409';
  end if;
  -- A fresh set of attempts, due now; the stable delivery key still lets the provider drop a repeat.
  update public.alert_deliveries d
  set status = 'pending', attempts = 0, next_attempt_at = now(), lease_expires_at = null
  where d.alert_id = delivery.alert_id and d.channel_id = delivery.channel_id
  returning d.* into delivery;
  select a.tenant_id into alert_tenant from public.usage_alerts a where a.id = delivery.alert_id;
  perform private.record_operator_action('alert_delivery_resent', 'alert_delivery',
                                         delivery.alert_id || '/' || delivery.channel_id, alert_tenant,
                                         jsonb_build_object('last_error', delivery.last_error));
  return jsonb_build_object('alert_id', delivery.alert_id, 'channel_id', delivery.channel_id,
                            'tenant_id', alert_tenant, 'status', delivery.status,
                            'next_attempt_at', delivery.next_attempt_at);
end;
$$;
comment on function public.operator_resend_alert_delivery(bigint, bigint) is
$$security definer: alert_deliveries is service-only; require_operator() runs first.
Operators only (42501 / HTTP 403 otherwise). Makes a failed delivery (retrying or given up) pending and due now with a fresh set of attempts; deliver-alerts sends it on its next run.
PT404 (HTTP 404) for an unknown delivery, PT409 (HTTP 409) for one that is not failed. Records the action in operator_actions. Returns {alert_id, channel_id, tenant_id, status, next_attempt_at}.$$;

revoke execute on function
  private.operator_tenant_rows(uuid[]),
  public.operator_overview(int, int, text[]),
  public.operator_tenants(text, text[], text[], text[], text, boolean, int, jsonb),
  public.operator_tenant(uuid, int),
  public.operator_health(),
  public.operator_set_source_enabled(uuid, boolean),
  public.operator_acknowledge_gaps(uuid),
  public.operator_resend_alert_delivery(bigint, bigint)
  from public, anon, authenticated;
grant execute on function
  public.operator_overview(int, int, text[]),
  public.operator_tenants(text, text[], text[], text[], text, boolean, int, jsonb),
  public.operator_tenant(uuid, int),
  public.operator_health(),
  public.operator_set_source_enabled(uuid, boolean),
  public.operator_acknowledge_gaps(uuid),
  public.operator_resend_alert_delivery(bigint, bigint)
  to authenticated;
