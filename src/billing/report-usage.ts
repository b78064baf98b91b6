import CircuitBreaker from 'opossum';
import pLimit from 'p-limit';
import pThrottle from 'p-throttle';
import type Stripe from 'stripe';
import type { Db } from '../db/client.ts';
import type { Database } from '../db/database.types.ts';
import { fail, ok, type Result } from '../domain/result.ts';
import type { Logger } from '../observability/logger.ts';

export type MeterReport = Database['public']['Tables']['meter_reports']['Row'];

export interface ReporterSettings {
  /** Stop starting new sends this long after the run began. */
  budgetMs: number;
  /** Stripe meter events per second at most (live mode ~1,000; test mode far lower). */
  ratePerSecond: number;
  concurrency: number;
  maxRows: number;
  /** Stripe finalizes an invoice this long after its period ends (default 1 h). */
  finalizationGraceMinutes: number;
}

export interface ReporterSummary {
  dryRun: boolean;
  claimed: number;
  sent: number;
  failed: number;
  late: number;
  /** Not attempted: the budget ran out or the circuit breaker was open. */
  deferred: number;
  wouldSend: Array<
    Pick<
      MeterReport,
      'identifier' | 'stripe_customer_id' | 'event_name' | 'value' | 'event_timestamp'
    >
  >;
}

/** Stripe accepts meter event timestamps at most 35 days old. */
const MAX_EVENT_AGE_MS = 35 * 86400_000 - 3600_000;

/** Stripe has already recorded this identifier: an earlier attempt reached it. */
function isDuplicateIdentifier(error: unknown): boolean {
  const e = error as { statusCode?: number; code?: string; message?: string };
  return (
    e.statusCode === 400 &&
    (e.code === 'resource_already_exists' ||
      /identifier.*(already|duplicate)/i.test(e.message ?? ''))
  );
}

/** A 4xx other than 429 will fail the same way on retry until someone fixes the data. */
const isPermanent = (error: unknown) => {
  const status = (error as { statusCode?: number }).statusCode;
  return status !== undefined && status >= 400 && status < 500 && status !== 429;
};

export interface RunReporterInput {
  db: Db;
  /** null: dry run — compute and log what would be sent, send nothing. */
  stripe: Stripe | null;
  settings: ReporterSettings;
  log: Logger;
  /** Only these tenants (an operator's targeted run); all by default. */
  tenantIds?: string[];
  now?: () => number;
  /** Progress for a person watching: how many reports were claimed, then each one recorded. */
  onProgress?: (event: { type: 'claimed'; reports: number } | { type: 'recorded' }) => void;
}

/**
 * One reporter run. Claims every unreported delta into the ledger (one transaction, before
 * anything is sent), then sends pending reports as Billing Meter events — identifier and
 * value from the ledger, so a retry re-sends exactly the same event — within Stripe's rate
 * limit, behind a circuit breaker, until the budget. One tenant's failure never stops the
 * others; what is not sent stays pending for the next run.
 */
export async function runReporter(
  input: RunReporterInput,
): Promise<Result<ReporterSummary, 'unavailable'>> {
  const { db, stripe, settings, log } = input;
  const now = input.now ?? Date.now;
  const deadline = now() + settings.budgetMs;

  const { data: reports, error } = await db.rpc('claim_meter_deltas', {
    max_rows: settings.maxRows,
    finalization_grace_minutes: settings.finalizationGraceMinutes,
    ...(input.tenantIds ? { tenant_ids: input.tenantIds } : {}),
  });
  if (error) return fail('unavailable', `claim_meter_deltas failed: ${error.message}`);
  const pending = reports ?? [];
  input.onProgress?.({ type: 'claimed', reports: pending.length });
  const summary: ReporterSummary = {
    dryRun: stripe === null,
    claimed: pending.length,
    sent: 0,
    failed: 0,
    late: 0,
    deferred: 0,
    wouldSend: [],
  };

  if (!stripe) {
    summary.wouldSend = pending.map((r) => ({
      identifier: r.identifier,
      stripe_customer_id: r.stripe_customer_id,
      event_name: r.event_name,
      value: r.value,
      event_timestamp: r.event_timestamp,
    }));
    summary.deferred = pending.length;
    log.info(
      { reports: summary.wouldSend },
      'dry run (no STRIPE_SECRET_KEY): these meter events would be sent',
    );
    return ok(summary);
  }

  const record = async (
    report: MeterReport,
    outcome: 'sent' | 'late' | 'failed',
    message?: string,
  ) => {
    const { error: recordError } = await db.rpc('record_meter_report', {
      id: report.id,
      outcome,
      ...(message ? { error: message } : {}),
    });
    if (recordError)
      log.error(
        { report: report.identifier, error: recordError.message },
        'could not record the outcome',
      );
    summary[outcome === 'failed' ? 'failed' : outcome] += 1;
    input.onProgress?.({ type: 'recorded' });
  };

  const send = (report: MeterReport) =>
    stripe.billing.meterEvents.create(
      {
        event_name: report.event_name,
        identifier: report.identifier,
        timestamp: Math.floor(Date.parse(report.event_timestamp) / 1000),
        payload: { stripe_customer_id: report.stripe_customer_id, value: String(report.value) },
      },
      { idempotencyKey: report.identifier },
    );
  // Evenly spaced (strict) at 95 % of the limit: network jitter can bunch requests, and a
  // window over Stripe's limit costs a 429 that stripe-node does not retry.
  const throttled = pThrottle({
    limit: Math.max(1, Math.floor(settings.ratePerSecond * 0.95)),
    interval: 1000,
    strict: true,
  })(send);
  // Stripe down: stop calling it for the rest of the run rather than burn the budget on
  // timeouts. Permanent (4xx) errors are the data's fault and do not trip it.
  const breaker = new CircuitBreaker(throttled, {
    timeout: false,
    errorThresholdPercentage: 50,
    volumeThreshold: 5,
    resetTimeout: 30_000,
    errorFilter: (e: unknown) => isPermanent(e) || isDuplicateIdentifier(e),
  });
  const limit = pLimit(settings.concurrency);

  await Promise.all(
    pending.map((report) =>
      limit(async () => {
        if (now() >= deadline || breaker.opened) {
          summary.deferred += 1;
          return;
        }
        if (now() - Date.parse(report.event_timestamp) > MAX_EVENT_AGE_MS) {
          await record(report, 'late', 'older than Stripe accepts meter events (35 days)');
          return;
        }
        try {
          await breaker.fire(report);
          await record(report, 'sent');
        } catch (sendError) {
          if (isDuplicateIdentifier(sendError)) {
            await record(report, 'sent');
            return;
          }
          if (breaker.opened && (sendError as { code?: string }).code === 'EOPENBREAKER') {
            summary.deferred += 1;
            return;
          }
          const message = sendError instanceof Error ? sendError.message : String(sendError);
          log.warn(
            { report: report.identifier, tenant_id: report.tenant_id, error: message },
            'meter event not sent',
          );
          await record(report, 'failed', message);
        }
      }),
    ),
  );
  breaker.shutdown();
  log.info({ ...summary, wouldSend: undefined }, 'reporter run finished');
  return ok(summary);
}
