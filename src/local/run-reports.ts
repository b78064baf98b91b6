import type { styleText } from 'node:util';
import type { RunSummary } from '../collector/run-collection.ts';
import type { Db } from '../db/client.ts';
import { plural } from '../domain/words.ts';
import { type OperatorStatus, operatorStatusSchema } from '../ops/operator-status.ts';

type Color = Parameters<typeof styleText>[0];
type FunctionRun = OperatorStatus['scheduled_functions'][number];

/**
 * A scheduled function's latest run, read through operator_status as `flowmeter status`
 * reads it: locally the Netlify CLI answers a scheduled invocation with its own text, not
 * the function's body, so the run's recorded summary says what it did.
 */
export async function latestRun(db: Db, name: string): Promise<FunctionRun | undefined> {
  const { data, error } = await db.rpc('operator_status', { max_sources: 1, max_runs: 1 });
  if (error) throw new Error(`operator_status failed: ${error.message}`);
  return operatorStatusSchema.parse(data).scheduled_functions.find((f) => f.function_name === name);
}

interface ReporterRun {
  dryRun: boolean;
  sent: number;
  failed: number;
  late: number;
  wouldSend: Array<{ stripe_customer_id: string; value: number }>;
}

/** One console line for a finished run, and its colour (dim: nothing worth reading). */
export function describeRun(name: string, run: FunctionRun | undefined): [string, Color] {
  if (!run?.last_finished_at) return ['no run recorded', 'red'];
  if (run.last_ok === false) return [`failed: ${run.last_error}`, 'red'];
  const summary = run.last_summary;
  switch (name) {
    case 'collect-usage': {
      const r = summary as RunSummary;
      const errors = r.errors.map((e) => e.error).join('; ');
      return [
        `${plural(r.sourcesOk, 'source')} ok, ${r.sourcesFailed} failed: +${plural(r.executionsIngested, 'execution')} (${r.billableCounted} billable) in ${plural(r.pages, 'page')}${errors ? ` — ${errors}` : ''}`,
        r.sourcesFailed > 0 ? 'red' : 'green',
      ];
    }
    case 'report-usage': {
      const r = summary as ReporterRun;
      if (r.dryRun) {
        if (r.wouldSend.length === 0) return ['nothing new to report to Stripe', 'dim'];
        const line = r.wouldSend.map((e) => `${e.stripe_customer_id} +${e.value}`).join(', ');
        return [`dry run, no STRIPE_SECRET_KEY: would send meter events ${line}`, 'yellow'];
      }
      if (r.sent + r.failed + r.late === 0) return ['nothing new to report to Stripe', 'dim'];
      return [
        `meter events: ${r.sent} sent, ${r.failed} failed, ${r.late} late`,
        r.failed + r.late > 0 ? 'red' : 'green',
      ];
    }
    case 'deliver-alerts': {
      const r = summary as { delivered: number; failed: number; gaveUp: number };
      return [
        `${plural(r.delivered, 'alert delivery', 'alert deliveries')} sent, ${r.failed} failing, ${r.gaveUp} given up`,
        r.failed + r.gaveUp > 0 ? 'red' : 'dim',
      ];
    }
    case 'reconcile-usage': {
      const r = summary as { counterFindings: number; stripeFindings: number };
      const findings = r.counterFindings + r.stripeFindings;
      return [`${plural(findings, 'reconciliation finding')}`, findings ? 'red' : 'green'];
    }
    default:
      return ['done', 'dim'];
  }
}
