import { needsAttention } from './attention.ts';
import { type CollectorHealth, collectorAttention } from './collector-health.ts';
import type { OperatorStatus } from './operator-status.ts';

/**
 * Everything in the status that needs a person, each with what to do: the one rule set that
 * `flowmeter status`, GET /api/v1/status and the operator console apply. Run-wide findings
 * are left out when the status is limited to some tenants.
 */
export function statusFindings(
  status: OperatorStatus,
  collector: CollectorHealth,
  options: { perTenant: boolean },
): string[] {
  return [...needsAttention(status), ...collectorAttention(collector, options)];
}
