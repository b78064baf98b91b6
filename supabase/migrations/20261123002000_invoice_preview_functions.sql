-- Invoice preview: Stripe's upcoming invoice beside flowmeter's estimate. The server asks
-- which tenants' cached previews are missing or older than the cache's lifetime
-- (invoice_preview_targets), claims each one's refresh so that concurrent refreshes ask
-- Stripe once (claim_invoice_preview_refresh, release_invoice_preview_claim), fetches those
-- from Stripe and records them (record_invoice_preview); tenant members read their own
-- tenant's cached preview (tenant_invoice_preview, under row-level security). A preview that disagrees with what
-- flowmeter reported beyond rounding is a reconciliation finding
-- (record_reconciliation_finding, invoice_preview_drift). Previews of periods past the
-- history retention go with prune_history (private.prune_invoice_previews).

-- Tenants with a live Stripe subscription whose preview of the current period is missing
-- or older than max_age_seconds, the stalest first (at most private.api_max_rows()), with what the comparison needs: the plan's pricing and
-- what the ledger holds for the period (sent, pending, when last sent).
create or replace function public.invoice_preview_targets(
  tenant_ids uuid[] default null,
  max_age_seconds int default 300
)
returns table (
  tenant_id uuid,
  stripe_customer_id text,
  stripe_subscription_id text,
  period_start timestamptz,
  period_end timestamptz,
  limit_policy text,
  trialing boolean,
  quota bigint,
  overage_unit_amount numeric,
  currency text,
  sent bigint,
  pending bigint,
  last_sent_at timestamptz
)
language sql stable
set search_path = ''
as $$
  select t.id, t.stripe_customer_id, t.stripe_subscription_id, bp.period_start, bp.period_end,
         p.limit_policy, t.subscription_status = 'trialing',
         private.plan_quota(p.limit_policy, t.subscription_status = 'trialing',
                            p.included_executions, p.trial_included_executions),
         coalesce(p.overage_unit_amount, 0), p.currency,
         coalesce(r.sent, 0), coalesce(r.pending, 0), r.last_sent_at
  from public.tenants t
  join public.plans p on p.id = t.plan_id
  cross join lateral private.billing_period(t.current_period_start, t.current_period_end, now()) bp
  left join public.invoice_previews v on v.tenant_id = t.id and v.period_start = bp.period_start
  left join lateral (
    select sum(m.value) filter (where m.status = 'sent')::bigint as sent,
           sum(m.value) filter (where m.status in ('pending', 'review'))::bigint as pending,
           max(m.sent_at) as last_sent_at
    from public.meter_reports m
    where m.tenant_id = t.id and m.period_start = bp.period_start
  ) r on true
  where t.stripe_customer_id is not null and t.stripe_subscription_id is not null
    and t.subscription_status in ('trialing', 'active', 'past_due', 'unpaid', 'paused')
    and (invoice_preview_targets.tenant_ids is null or t.id = any (invoice_preview_targets.tenant_ids))
    and (v.fetched_at is null
         or v.fetched_at <= now() - make_interval(secs => greatest(invoice_preview_targets.max_age_seconds, 0)))
  order by v.fetched_at nulls first, t.id
  -- The stalest first, as many as the API hands over: the rest come once these are fresh.
  limit private.api_max_rows();
$$;

-- One fetched preview, replacing the period's older one (never a newer one: two refreshes
-- may overlap).
create or replace function public.record_invoice_preview(
  tenant_id uuid,
  period_start timestamptz,
  period_end timestamptz,
  stripe_customer_id text,
  stripe_subscription_id text,
  status text,
  currency text default null,
  total bigint default null,
  amount_due bigint default null,
  subtotal bigint default null,
  usage_quantity bigint default null,
  usage_amount bigint default null,
  fetched_at timestamptz default now()
)
returns void
language sql
set search_path = ''
as $$
  insert into public.invoice_previews as v (
    tenant_id, period_start, period_end, stripe_customer_id, stripe_subscription_id, status,
    currency, total, amount_due, subtotal, usage_quantity, usage_amount, fetched_at
  )
  values (
    record_invoice_preview.tenant_id, record_invoice_preview.period_start, record_invoice_preview.period_end,
    record_invoice_preview.stripe_customer_id, record_invoice_preview.stripe_subscription_id,
    record_invoice_preview.status, lower(record_invoice_preview.currency), record_invoice_preview.total,
    record_invoice_preview.amount_due, record_invoice_preview.subtotal, record_invoice_preview.usage_quantity,
    record_invoice_preview.usage_amount, record_invoice_preview.fetched_at
  )
  on conflict on constraint invoice_previews_pkey do update set
    period_end = excluded.period_end,
    stripe_customer_id = excluded.stripe_customer_id,
    stripe_subscription_id = excluded.stripe_subscription_id,
    status = excluded.status,
    currency = excluded.currency,
    total = excluded.total,
    amount_due = excluded.amount_due,
    subtotal = excluded.subtotal,
    usage_quantity = excluded.usage_quantity,
    usage_amount = excluded.usage_amount,
    fetched_at = excluded.fetched_at
  where v.fetched_at <= excluded.fetched_at;
$$;

-- Claims the refresh of a tenant-period's preview for lease_seconds, and answers the
-- claim's expiry (the caller's token to release it), or null when the caller must not ask
-- Stripe: another refresh holds an unexpired claim, or the cached preview has become
-- younger than max_age_seconds since the caller looked (a refresh finished meanwhile).
create or replace function public.claim_invoice_preview_refresh(
  tenant_id uuid,
  period_start timestamptz,
  max_age_seconds int default 300,
  lease_seconds int default 60
)
returns timestamptz
language sql
set search_path = ''
as $$
  insert into public.invoice_preview_claims as c (tenant_id, period_start, claimed_until)
  select claim_invoice_preview_refresh.tenant_id, claim_invoice_preview_refresh.period_start,
         now() + make_interval(secs => greatest(claim_invoice_preview_refresh.lease_seconds, 1))
  where not exists (
    select 1 from public.invoice_previews v
    where v.tenant_id = claim_invoice_preview_refresh.tenant_id
      and v.period_start = claim_invoice_preview_refresh.period_start
      and v.fetched_at > now() - make_interval(secs => greatest(claim_invoice_preview_refresh.max_age_seconds, 0))
  )
  on conflict on constraint invoice_preview_claims_pkey do update set claimed_until = excluded.claimed_until
  where c.claimed_until <= now()
  returning c.claimed_until;
$$;

-- Ends the caller's claim (the one that expires at claimed_until), once its refresh has
-- recorded or failed; a claim that expired and was taken by another refresh is theirs.
create or replace function public.release_invoice_preview_claim(
  tenant_id uuid,
  period_start timestamptz,
  claimed_until timestamptz
)
returns void
language sql
set search_path = ''
as $$
  delete from public.invoice_preview_claims c
  where c.tenant_id = release_invoice_preview_claim.tenant_id
    and c.period_start = release_invoice_preview_claim.period_start
    and c.claimed_until = release_invoice_preview_claim.claimed_until;
$$;

-- Up to `batch` cached previews of periods that ended before cutoff (prune_history's
-- retention), oldest first; how many went. Claims expired before cutoff go too: only a
-- refresh that died leaves one behind, so there are few.
create or replace function private.prune_invoice_previews(cutoff timestamptz, batch int)
returns bigint
language sql
set search_path = ''
as $$
  with doomed as (
    select v.tenant_id, v.period_start from public.invoice_previews v
    where v.period_end < prune_invoice_previews.cutoff
    order by v.period_end limit prune_invoice_previews.batch
  ), gone as (
    delete from public.invoice_previews v using doomed
    where v.tenant_id = doomed.tenant_id and v.period_start = doomed.period_start
    returning 1
  ), expired_claims as (
    delete from public.invoice_preview_claims c where c.claimed_until < prune_invoice_previews.cutoff
  )
  select count(*) from gone;
$$;

-- The cached preview of each tenant the caller is a member of (or only tenant_id), for its
-- current billing period; no row before the first fetch, or for a tenant without a
-- subscription.
create or replace function public.tenant_invoice_preview(tenant_id uuid default null)
returns table (
  tenant_id uuid,
  period_start timestamptz,
  period_end timestamptz,
  status text,
  currency text,
  total bigint,
  amount_due bigint,
  subtotal bigint,
  usage_quantity bigint,
  usage_amount bigint,
  fetched_at timestamptz
)
language sql stable
security invoker
set search_path = ''
as $$
  select v.tenant_id, v.period_start, v.period_end, v.status, v.currency, v.total, v.amount_due,
         v.subtotal, v.usage_quantity, v.usage_amount, v.fetched_at
  from public.tenants t
  cross join lateral private.billing_period(t.current_period_start, t.current_period_end, now()) bp
  join public.invoice_previews v on v.tenant_id = t.id and v.period_start = bp.period_start
  where tenant_invoice_preview.tenant_id is null or t.id = tenant_invoice_preview.tenant_id
  order by t.name, t.id;
$$;
comment on function public.tenant_invoice_preview(uuid) is
$$Stripe's preview of the upcoming invoice of each tenant the caller is a member of (or only tenant_id), for the current billing period, as last fetched by the server.
Columns: tenant_id, period_start, period_end; status = ok | none (Stripe has no upcoming invoice; amounts null); currency;
total (after discounts and tax), amount_due (after credit), subtotal, in the currency's minor unit;
usage_quantity, usage_amount = the metered lines (the usage Stripe holds and what it bills for it); fetched_at.
No row before the first fetch, for a tenant without a Stripe subscription, or when the caller is not a member of the tenant.$$;

select private.grant_to_service_role_only(
  'public.invoice_preview_targets(uuid[], int)',
  'public.record_invoice_preview(uuid, timestamptz, timestamptz, text, text, text, text, bigint, bigint, bigint, bigint, bigint, timestamptz)',
  'public.claim_invoice_preview_refresh(uuid, timestamptz, int, int)',
  'public.release_invoice_preview_claim(uuid, timestamptz, timestamptz)',
  'private.prune_invoice_previews(timestamptz, int)'
);
select private.grant_to_authenticated('public.tenant_invoice_preview(uuid)');
