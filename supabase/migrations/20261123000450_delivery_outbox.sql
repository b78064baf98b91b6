-- Delivery outboxes: the one lease-and-backoff mechanism behind alert deliveries
-- (alert_deliveries) and webhook deliveries (webhook_deliveries).
--
-- A delivery table holds one row per message and destination, keyed by its primary key,
-- with the columns of private.delivery_outbox, which these functions move. A sender claims
-- due rows under a lease (concurrent senders skip each other's rows), sends them and
-- records each outcome; a failure is retried after a delay until the last allowed attempt,
-- and a claim whose sender vanished is claimed again when its lease runs out; an operator
-- can give failed deliveries a fresh set of attempts. What differs between the outboxes
-- (which table, how many attempts, the delays, what makes a row sendable, how an
-- operator's run is scoped) is a parameter; the rules are written once, here. The table is
-- named by a null of its row type, which is also the type of the rows these functions
-- return.

-- The columns, checks and indexes every delivery table takes with
-- `like private.delivery_outbox including all`; it holds no rows itself.
create table private.delivery_outbox (
  status text not null default 'pending'
    constraint delivery_outbox_status_known check (status in ('pending', 'sending', 'delivered', 'failed')),
  -- Attempts started (counted when claimed, so a sender that dies mid-send counts too).
  attempts int not null default 0,
  lease_expires_at timestamptz,
  -- null once delivered or given up.
  next_attempt_at timestamptz default now(),
  last_attempt_at timestamptz,
  last_error text,
  delivered_at timestamptz,
  created_at timestamptz not null default now()
);
comment on table private.delivery_outbox is 'The shape every delivery table takes (like … including all); never written.';
revoke all on table private.delivery_outbox from public, anon, authenticated, service_role;

-- What a claim looks for: due (re)tries, and sends whose sender vanished.
create index delivery_outbox_due_idx on private.delivery_outbox (next_attempt_at)
  where status in ('pending', 'failed');
create index delivery_outbox_leased_idx on private.delivery_outbox (lease_expires_at)
  where status = 'sending';

-- The primary key's columns of a delivery table, in key order.
create or replace function private.delivery_key_columns(deliveries regclass)
returns text[]
language sql stable
set search_path = ''
as $$
  select array_agg(a.attname::text order by k.position)
  from pg_catalog.pg_index i
  cross join lateral unnest(i.indkey) with ordinality k(attnum, position)
  join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = k.attnum
  where i.indrelid = delivery_key_columns.deliveries and i.indisprimary;
$$;

-- Claims up to max_rows due deliveries for lease_seconds: new ones, failed ones whose
-- backoff is over, and sends whose sender's lease ran out without an outcome (the sender
-- crashed during or after the send: sending again is the at-least-once promise), oldest
-- due first. A delivery whose last allowed attempt never reported is given up here.
-- sendable: a predicate on the delivery d (its channel or endpoint is enabled); in_scope: a
-- predicate on d and $1, applied when scope ($1) is not null (an operator's targeted run).
create or replace function private.claim_deliveries(
  deliveries anyelement,
  max_attempts int,
  max_rows int,
  lease_seconds int,
  sendable text,
  in_scope text,
  scope anycompatiblearray
)
returns setof anyelement
language plpgsql
set search_path = ''
as $$
declare
  keys text[] := private.delivery_key_columns(pg_catalog.pg_typeof(claim_deliveries.deliveries)::text::regclass);
begin
  return query execute format(
    $claim$
      with abandoned as (
        update %1$s d
        set status = 'failed', lease_expires_at = null, next_attempt_at = null,
            last_error = 'gave up: the last attempt never reported an outcome'
        where d.status = 'sending' and d.lease_expires_at <= now() and d.attempts >= $2
          and ($1 is null or (%3$s))
      ),
      due as (
        select %4$s
        from %1$s d
        where d.attempts < $2
          and (
            (d.status in ('pending', 'failed') and d.next_attempt_at <= now())
            or (d.status = 'sending' and d.lease_expires_at <= now())
          )
          and (%2$s)
          and ($1 is null or (%3$s))
        order by d.next_attempt_at, d.created_at, %4$s
        limit greatest(least($3, private.api_max_rows()), 0)
        for update of d skip locked
      )
      update %1$s d
      set status = 'sending',
          attempts = d.attempts + 1,
          last_attempt_at = now(),
          lease_expires_at = now() + make_interval(secs => $4)
      from due
      where (%4$s) = (%5$s)
      returning d.*
    $claim$,
    pg_catalog.pg_typeof(claim_deliveries.deliveries),
    claim_deliveries.sendable,
    claim_deliveries.in_scope,
    (select string_agg(format('d.%I', k), ', ') from unnest(keys) k),
    (select string_agg(format('due.%I', k), ', ') from unnest(keys) k))
  using claim_deliveries.scope, claim_deliveries.max_attempts,
        claim_deliveries.max_rows, claim_deliveries.lease_seconds;
end;
$$;

-- Records one attempt's outcome for the delivery whose primary key columns are key's (a
-- JSON object, with the lease_expires_at its claim gave it). Delivered is final (whichever
-- sender reports it); a failure counts only for a delivery still being sent under that
-- claim's lease, so one recorded again after its first answer was lost cannot fail another
-- sender's later claim (which would make it due again while that sender still sends).
-- After the nth failed attempt the next one is due retry_after_seconds[n] later, each wait
-- spread by ±jitter (a fraction) so that the retries of many deliveries that failed
-- together do not arrive together; after the last wait's attempt the delivery is given up. also: further columns of the delivery table the
-- outcome records (a JSON object). Returns the delivery as it now is, or null when nothing
-- changed (already delivered, or the lease was lost and another sender has it).
create or replace function private.finish_delivery(
  deliveries anyelement,
  key jsonb,
  delivered boolean,
  error text,
  retry_after_seconds int[],
  jitter numeric,
  also jsonb default '{}'
)
returns anyelement
language plpgsql
set search_path = ''
as $$
declare
  finished alias for $0;
begin
  execute format(
    $finish$
      update %1$s d
      set status = case when $1 then 'delivered' else 'failed' end,
          delivered_at = case when $1 then now() end,
          lease_expires_at = null,
          next_attempt_at = case
            when $1 or d.attempts > cardinality($3) then null
            else now() + make_interval(secs => ($3)[d.attempts] * (1 - $4 + random() * 2 * $4))
          end,
          last_error = case when $1 then null else left(coalesce($2, 'unknown error'), 2000) end
          %2$s
      from jsonb_populate_record(null::%1$s, $5) k
      where %3$s
        and (($1 and d.status <> 'delivered')
             or (not $1 and d.status = 'sending' and d.lease_expires_at = k.lease_expires_at))
      returning d.*
    $finish$,
    pg_catalog.pg_typeof(finish_delivery.deliveries),
    (select coalesce(string_agg(format(', %1$I = k.%1$I', c), ''), '') from jsonb_object_keys(finish_delivery.also) c),
    (select string_agg(format('d.%1$I = k.%1$I', c), ' and ')
     from unnest(private.delivery_key_columns(pg_catalog.pg_typeof(finish_delivery.deliveries)::text::regclass)) c))
  into finished
  using finish_delivery.delivered, finish_delivery.error, finish_delivery.retry_after_seconds,
        finish_delivery.jitter, finish_delivery.key || finish_delivery.also;
  return finished;
end;
$$;

-- Hands back deliveries a sender claimed and did not attempt (its time to start sends ran
-- out first): the attempt their claim counted is taken back and they are due now, as if
-- never claimed, so a send never made can never use up the last attempt. keys: a JSON array
-- of objects, each a delivery's primary key columns and the lease_expires_at its claim gave
-- it; only those still held under that very lease change, so a repeated call (its first
-- answer lost) cannot hand back a later claim of another sender. Returns how many did.
create or replace function private.return_deliveries(deliveries anyelement, keys jsonb)
returns int
language plpgsql
set search_path = ''
as $$
declare
  returned int;
  key_columns text[] := private.delivery_key_columns(pg_catalog.pg_typeof(return_deliveries.deliveries)::text::regclass);
begin
  if pg_catalog.jsonb_typeof(return_deliveries.keys) is distinct from 'array'
     or exists (
       select 1 from pg_catalog.jsonb_array_elements(return_deliveries.keys) e
       where pg_catalog.jsonb_typeof(e) <> 'object'
          or pg_catalog.jsonb_typeof(e -> 'lease_expires_at') is distinct from 'string'
          or not (e ?& key_columns)
     ) then
    raise exception 'keys must be a JSON array of the claimed deliveries, each its % and lease_expires_at',
      pg_catalog.array_to_string(key_columns, ', ')
      using errcode = '22023';
  end if;
  execute format(
    $return$
      update %1$s d
      set status = case when d.attempts > 1 then 'failed' else 'pending' end,
          attempts = d.attempts - 1,
          lease_expires_at = null,
          next_attempt_at = now()
      from jsonb_populate_recordset(null::%1$s, $1) k
      where %2$s and d.status = 'sending' and d.lease_expires_at > now()
        and d.lease_expires_at = k.lease_expires_at
    $return$,
    pg_catalog.pg_typeof(return_deliveries.deliveries),
    (select string_agg(format('d.%1$I = k.%1$I', c), ' and ') from unnest(key_columns) c))
  using return_deliveries.keys;
  get diagnostics returned = row_count;
  return returned;
end;
$$;

-- Gives failed deliveries (retrying or given up) a fresh set of attempts, due now, and
-- returns them: what an operator asks for once the destination is fixed. which: a predicate
-- on the delivery d and $1 (scope) that picks the failed deliveries to send again.
create or replace function private.resend_deliveries(
  deliveries anyelement,
  which text,
  scope anycompatiblearray
)
returns setof anyelement
language plpgsql
set search_path = ''
as $$
begin
  return query execute format(
    $resend$
      update %1$s d
      set status = 'pending', attempts = 0, next_attempt_at = now(), lease_expires_at = null
      where d.status = 'failed' and (%2$s)
      returning d.*
    $resend$,
    pg_catalog.pg_typeof(resend_deliveries.deliveries),
    resend_deliveries.which)
  using resend_deliveries.scope;
end;
$$;

select private.grant_to_service_role_only(
  'private.delivery_key_columns(regclass)',
  'private.claim_deliveries(anyelement, int, int, int, text, text, anycompatiblearray)',
  'private.finish_delivery(anyelement, jsonb, boolean, text, int[], numeric, jsonb)',
  'private.return_deliveries(anyelement, jsonb)',
  'private.resend_deliveries(anyelement, text, anycompatiblearray)'
);
