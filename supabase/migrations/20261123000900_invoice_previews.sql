-- Invoice previews (invoice_preview_functions): Stripe's preview of a tenant's upcoming
-- invoice (POST /v1/invoices/create_preview), cached per tenant and billing period so the
-- dashboards can show it beside flowmeter's own estimate without calling Stripe on every
-- page view. Only the server fills it (the Stripe key never reaches a browser); tenant
-- members read their own tenant's rows.

create table public.invoice_previews (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  period_end timestamptz not null,
  stripe_customer_id text not null
    constraint invoice_previews_stripe_customer_id_format check (stripe_customer_id ~ '^cus_[A-Za-z0-9_]+$'),
  stripe_subscription_id text not null
    constraint invoice_previews_stripe_subscription_id_format check (stripe_subscription_id ~ '^sub_[A-Za-z0-9_]+$'),
  -- ok: Stripe previewed the invoice; none: Stripe has no upcoming invoice for the
  -- subscription (canceled, or nothing left to bill), the amounts are null.
  status text not null constraint invoice_previews_status_known check (status in ('ok', 'none')),
  currency text,
  -- Stripe's amounts in the currency's minor unit: total after discounts and tax, the
  -- amount due after credit, the subtotal before both.
  total bigint,
  amount_due bigint,
  subtotal bigint,
  -- The lines of metered prices: what Stripe will bill for the usage it holds.
  usage_quantity bigint,
  usage_amount bigint,
  fetched_at timestamptz not null default now(),
  primary key (tenant_id, period_start),
  constraint invoice_previews_amounts_when_ok check (
    status = 'none'
    or (currency is not null and total is not null and amount_due is not null and subtotal is not null
        and usage_quantity is not null and usage_amount is not null)
  )
);
comment on table public.invoice_previews is 'Stripe''s upcoming-invoice preview per tenant and billing period, cached for the dashboards; filled by the server only.';

select private.restrict_to_service_role('public.invoice_previews');
select private.grant_member_read('public.invoice_previews');

-- Who is asking Stripe for a tenant-period's preview right now, so that concurrent
-- refreshes (the daily reconciliation, the dashboards' endpoint, the CLI) ask it once: a
-- refresh claims the row before calling Stripe and releases it when it has recorded or
-- failed. The claim expires at claimed_until, so a refresh that died in between holds
-- nobody up for long.
create table public.invoice_preview_claims (
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_start timestamptz not null,
  claimed_until timestamptz not null,
  primary key (tenant_id, period_start)
);
comment on table public.invoice_preview_claims is 'Refreshes of an invoice preview under way, one per tenant and period, until claimed_until; server only.';

select private.restrict_to_service_role('public.invoice_preview_claims');
