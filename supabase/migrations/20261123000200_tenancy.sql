-- Tenancy: plans, tenants, tenant members and n8n sources.
--
-- Written through the admin API (plans, tenants, members), the source admin functions
-- (n8n sources) and the Stripe subscription sync (a tenant's plan, status and period).
-- Enforcement reads a plan's trial quota and grace days; meter reports read its Billing
-- Meter.

-- Plans -------------------------------------------------------------------------------

create table public.plans (
  id text primary key
    constraint plans_id_format check (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
  name text not null
    constraint plans_name_length check (length(name) between 1 and 200),
  -- Executions included per billing period; null only for unlimited plans.
  included_executions bigint
    constraint plans_included_executions_nonnegative check (included_executions >= 0),
  -- hard_limit: block at 100 %; overage: allow and bill each execution above the quota;
  -- unlimited: never block, never bill usage.
  limit_policy text not null default 'hard_limit'
    constraint plans_limit_policy_known check (limit_policy in ('hard_limit', 'overage', 'unlimited')),
  -- Price of one execution above the quota, in the currency's minor unit (cents),
  -- fractional like Stripe's unit_amount_decimal.
  overage_unit_amount numeric(20, 6)
    constraint plans_overage_unit_amount_nonnegative check (overage_unit_amount >= 0),
  currency text not null default 'usd'
    constraint plans_currency_format check (currency ~ '^[a-z]{3}$'),
  -- n8n's own billable rule by default: production modes, finished statuses.
  billable_modes text[] not null default array['cli', 'retry', 'trigger', 'webhook', 'evaluation'],
  billable_statuses text[] not null default array['success', 'error', 'crashed'],
  -- Percentages of included_executions that raise an alert.
  alert_thresholds smallint[] not null default array[80, 100]::smallint[]
    constraint plans_alert_thresholds_range check (
      array_position(alert_thresholds, null) is null
      and 0 < all (alert_thresholds) and 1000 >= all (alert_thresholds)
    ),
  active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Quota while the subscription is trialing; null = the plan's own quota. Trials never
  -- bill overage: they block at this quota whatever the plan's policy.
  trial_included_executions bigint
    constraint plans_trial_included_executions_nonnegative check (trial_included_executions >= 0),
  -- How long a past_due, unpaid or canceled subscription keeps running before runs are blocked.
  grace_days int not null default 3
    constraint plans_grace_days_range check (grace_days between 0 and 90),
  -- The Billing Meter's event_name that this plan's usage is reported under; null = the
  -- plan's usage is not reported (e.g. a flat plan). The price attached to the meter is
  -- graduated: its first tier is included_executions at 0.
  stripe_meter_event_name text
    constraint plans_stripe_meter_event_name_format check (stripe_meter_event_name ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  -- The meter's id (mtr_…), for reconciling with Stripe's event summaries.
  stripe_meter_id text
    constraint plans_stripe_meter_id_format check (stripe_meter_id ~ '^mtr_[A-Za-z0-9_]+$'),
  -- What the plan's subscription charges per billing period, in the currency's minor unit
  -- (the Stripe price's unit_amount_decimal); null when not known. The operator console
  -- sums it into recurring revenue.
  recurring_amount numeric(20, 6)
    constraint plans_recurring_amount_nonnegative check (recurring_amount >= 0),
  constraint plans_quota_matches_policy check (
    (limit_policy = 'unlimited') = (included_executions is null)
  ),
  constraint plans_overage_priced check (
    limit_policy <> 'overage' or overage_unit_amount is not null
  )
);
comment on table public.plans is 'Commercial plans: quota per billing period, what happens at the limit, how usage is priced.';

create trigger plans_touch_updated_at before update on public.plans
  for each row execute function private.touch_updated_at();

-- Tenants -----------------------------------------------------------------------------

create table public.tenants (
  id uuid primary key default gen_random_uuid(),
  -- The operator's own identifier for the tenant (account id in its product).
  external_ref text unique
    constraint tenants_external_ref_length check (length(external_ref) between 1 and 200)
    -- Only what the enforce endpoint can name (src/enforcement/schema.ts has the exact rule,
    -- with its messages, for the CLI and the endpoint): it trims what it is given and refuses
    -- control and format characters and every space but the plain one, so a reference with
    -- those stored through the API directly could never be enforced.
    constraint tenants_external_ref_enforceable check (
      external_ref !~ '[\u0001-\u001f\u007f-\u009f\u00a0\u00ad\u061c\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f\u3000\ue000-\uf8ff\ufeff\ufff9-\ufffb]'
      and external_ref !~ '^ | $'
    ),
  name text not null
    constraint tenants_name_length check (length(name) between 1 and 200),
  plan_id text not null references public.plans (id),
  -- Mirrors the Stripe subscription; 'none' until the tenant has one.
  subscription_status text not null default 'none'
    constraint tenants_subscription_status_known check (subscription_status in (
      'none', 'trialing', 'active', 'past_due', 'unpaid', 'canceled',
      'incomplete', 'incomplete_expired', 'paused'
    )),
  stripe_customer_id text unique
    constraint tenants_stripe_customer_id_format check (stripe_customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  stripe_subscription_id text unique
    constraint tenants_stripe_subscription_id_format check (stripe_subscription_id ~ '^sub_[A-Za-z0-9_]+$'),
  -- Billing period from the Stripe subscription; without one the UTC calendar month applies.
  current_period_start timestamptz,
  current_period_end timestamptz,
  trial_ends_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  -- Since when the subscription has been past_due, unpaid or canceled without a break
  -- (tenants_track_delinquency), null otherwise: it runs on for the plan's grace days from
  -- then. Stripe's dunning moves an unpaid subscription on from past_due to unpaid or
  -- canceled; that is the same delinquency, not a new one.
  delinquent_since timestamptz,
  stripe_synced_at timestamptz,
  constraint tenants_period_bounds_paired check (
    (current_period_start is null) = (current_period_end is null)
  ),
  constraint tenants_period_bounds_ordered check (current_period_end > current_period_start),
  constraint tenants_delinquent_since_when_delinquent check (
    (delinquent_since is not null) = (subscription_status in ('past_due', 'unpaid', 'canceled'))
  )
);
comment on table public.tenants is 'Customers of the operator; each has one plan and at most one Stripe subscription.';
comment on column public.tenants.external_ref is 'The operator''s own identifier for this tenant; the enforcement API accepts it instead of id.';
comment on column public.tenants.stripe_synced_at is 'The created time of the Stripe event whose subscription state this row holds (of its subscription in stripe_subscriptions).';

create index tenants_plan_id_idx on public.tenants (plan_id);

create trigger tenants_touch_updated_at before update on public.tenants
  for each row execute function private.touch_updated_at();

-- The delinquency clock starts when the subscription enters past_due, unpaid or canceled
-- from any other status (or a tenant is created in one, unless a time is given), runs on
-- while it moves among them, and stops when it leaves them.
create or replace function private.track_delinquency()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.subscription_status not in ('past_due', 'unpaid', 'canceled') then
    new.delinquent_since := null;
  elsif tg_op = 'INSERT' then
    new.delinquent_since := coalesce(new.delinquent_since, now());
  elsif old.subscription_status not in ('past_due', 'unpaid', 'canceled') then
    new.delinquent_since := now();
  end if;
  return new;
end;
$$;
revoke all on function private.track_delinquency() from public;

create trigger tenants_track_delinquency before insert or update of subscription_status on public.tenants
  for each row execute function private.track_delinquency();

-- Tenant members ----------------------------------------------------------------------

create table public.tenant_members (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  -- viewer reads the tenant's usage; admin and owner are kept for tenant-side management.
  role text not null default 'viewer'
    constraint tenant_members_role_known check (role in ('owner', 'admin', 'viewer')),
  created_at timestamptz not null default now(),
  primary key (tenant_id, user_id)
);
comment on table public.tenant_members is 'Which Supabase Auth users belong to which tenant; the basis of every RLS policy.';

-- Policies look memberships up by user.
create index tenant_members_user_id_idx on public.tenant_members (user_id);

-- n8n sources -------------------------------------------------------------------------

create table public.n8n_sources (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null
    constraint n8n_sources_name_length check (length(name) between 1 and 200),
  -- Instance root, e.g. https://acme.app.n8n.cloud (no trailing slash, no /api/v1).
  base_url text not null
    constraint n8n_sources_base_url_format check (base_url ~ '^https?://[^/\s?#]+(/[^\s?#]*[^/\s?#])?$'),
  -- The API key is the only credential sent to n8n; a URL is shown in lists, logs and
  -- error messages, where a password must never be.
  -- The n8n API key, encrypted by the application (AES-256-GCM, see src/crypto); the
  -- database never sees the plaintext or the key.
  api_key_ciphertext text not null
    constraint n8n_sources_api_key_ciphertext_format check (api_key_ciphertext ~ '^fm1\.'),
  -- Restrict collection to one n8n project (Enterprise); null = every execution the key can list.
  project_id text
    constraint n8n_sources_project_id_length check (length(project_id) between 1 and 200),
  enabled boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint n8n_sources_unique_target unique nulls not distinct (tenant_id, base_url, project_id),
  -- What executions reference: a source together with its tenant.
  constraint n8n_sources_id_tenant_key unique (id, tenant_id),
  -- The API key is the only credential sent to n8n; a URL is shown in lists, logs and error
  -- messages, where a password must never be.
  constraint n8n_sources_base_url_no_credentials check (base_url !~ '^https?://[^/]*@')
);
comment on table public.n8n_sources is 'n8n instances (or projects) whose executions are metered for a tenant.';

create trigger n8n_sources_touch_updated_at before update on public.n8n_sources
  for each row execute function private.touch_updated_at();

-- Privileges and row-level security ---------------------------------------------------

select private.restrict_to_service_role('public.plans', 'public.tenants', 'public.tenant_members', 'public.n8n_sources');
grant select on table public.plans, public.tenants, public.tenant_members to authenticated;
-- The tenant usage API says nothing of sources: members read only the ids they see on
-- their executions. URLs, names, projects and the key ciphertext are the operator's.
select private.grant_member_read('public.n8n_sources', 'id', 'tenant_id');

create policy tenant_members_select_own on public.tenant_members
  for select to authenticated
  using (user_id = (select auth.uid()));

create policy tenants_select_member on public.tenants
  for select to authenticated
  using (id in (select m.tenant_id from public.tenant_members m where m.user_id = (select auth.uid())));

create policy plans_select_member on public.plans
  for select to authenticated
  using (id in (
    select t.plan_id
    from public.tenants t
    join public.tenant_members m on m.tenant_id = t.id
    where m.user_id = (select auth.uid())
  ));

