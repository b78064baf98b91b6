import type { CollectorHealth } from '../../src/ops/collector-health.ts';
import type { OperatorStatus } from '../../src/ops/operator-status.ts';

/**
 * operator_status() as it answers for an installation with nothing for a person to do
 * (no scheduled function has run yet): tests change the part they are about.
 */
export const healthyStatus: OperatorStatus = {
  generated_at: '2026-12-01T10:00:00+00:00',
  sources: {
    total: 2,
    enabled: 2,
    failing: 0,
    never_collected: 0,
    stalled: 0,
    max_lag_seconds: 600,
    worst: [],
  },
  meter_reports: {
    pending: 0,
    pending_value: 0,
    retrying: 0,
    oldest_pending_at: null,
    unattempted: 0,
    oldest_unattempted_at: null,
    late: 0,
    late_value: 0,
    late_unknown: 0,
    late_unknown_value: 0,
    review: 0,
    last_error: null,
    failing_threshold: 3,
    failing: 0,
    auth_failing: false,
    auth_error: null,
    unlinked: { tenants: 0, executions: 0, example_tenant_id: null, example_tenant_name: null },
    corrections: {
      pending: 0,
      unattempted: 0,
      oldest_unattempted_at: null,
      failing: 0,
      review: 0,
      late: 0,
      last_error: null,
    },
  },
  stripe_events: {
    rejected: 0,
    last_rejected_at: null,
    last_rejected_id: null,
    last_reason: null,
    customers_without_tenant: 0,
    last_customer_without_tenant: null,
  },
  reconciliation: { unrepaired: 0, last_found_at: null, last_kind: null, last_detail: null },
  alert_deliveries: {
    pending: 0,
    sending: 0,
    retrying: 0,
    given_up: 0,
    oldest_at: null,
    unattempted: 0,
    oldest_unattempted_at: null,
    last_error: null,
  },
  webhook_deliveries: {
    retrying: 0,
    given_up: 0,
    unattempted: 0,
    oldest_unattempted_at: null,
    failing_endpoints: [],
  },
  scheduled_functions: [],
  collector_runs: [],
};

/** collector_health() as it answers when every collector run ended well. */
export const healthyCollector: CollectorHealth = {
  latest_scheduled_run: {
    id: 'r1',
    started_at: '2026-12-01T12:00:00Z',
    finished_at: '2026-12-01T12:00:09Z',
    killed: false,
    sources_ok: 3,
    sources_failed: 0,
    sources_lease_lost: 0,
    pages: 4,
    executions_ingested: 100,
    database_unreachable: false,
    failure: null,
    first_error: null,
    sources_handoff_refused: 0,
    handoff_error: null,
  },
  failed_background_runs: { count: 0, latest: [] },
  killed_runs: [],
  dead_leases: [],
  deferred_sources: { count: 0, longest: [] },
  unacknowledged_gaps: {
    gaps: 0,
    executions: 0,
    by_kind: {},
    sources: 0,
    oldest_detected_at: null,
  },
};
