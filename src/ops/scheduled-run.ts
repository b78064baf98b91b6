import {
  parseEnv,
  recordingReserveMs,
  SCHEDULED_FUNCTION_LIMIT_MS,
  serverEnvSchema,
} from '../config/env.ts';
import { createServiceClient, type Db } from '../db/client.ts';
import type { Json } from '../db/database.types.ts';
import { fail, type Result } from '../domain/result.ts';
import { retryUnanswered } from '../domain/retry-unanswered.ts';
import { type HttpErrorCode, resultResponse } from '../http/responses.ts';
import type { Logger } from '../observability/logger.ts';
import { createLogger } from '../observability/pino-logger.ts';

/** Attempts after the first to record a run's outcome, under two seconds in all. */
const FINISH_RETRIES = 3;

/**
 * The `recordBy` of a scheduled function invoked at `invokedAt` (epoch ms) whose database
 * calls are cut after `dbTimeoutMs`: one deadline before Netlify stops it at 30 s.
 */
export const scheduledRecordBy = (invokedAt: number, dbTimeoutMs: number): number =>
  invokedAt + SCHEDULED_FUNCTION_LIMIT_MS - dbTimeoutMs;

/**
 * The last instant a scheduled function invoked at `invokedAt` may start a send that takes up
 * to `sendTimeoutMs` (Slack, e-mail, a webhook receiver) and still record it and its run,
 * one database deadline each, before Netlify stops it at 30 s.
 */
export const sendStartBy = (invokedAt: number, dbTimeoutMs: number, sendTimeoutMs: number) =>
  invokedAt + SCHEDULED_FUNCTION_LIMIT_MS - recordingReserveMs(dbTimeoutMs) - sendTimeoutMs;

/**
 * Runs one scheduled function's work as a recorded run: a scheduled_runs row before, its
 * outcome and summary after (retried), and the row's id as run_id on every log line. A
 * failure the work returns is recorded and returned; one it throws is recorded and rethrown
 * (Netlify then logs it as the function's error).
 *
 * `recordBy` (epoch ms) is the last moment an attempt to record the outcome may start: one
 * database deadline before the platform stops the function, so the last attempt can still
 * finish. No retry starts after it; without it the retries are bounded by their count only.
 */
export async function recordedRun<T extends object, C extends string>(
  input: { db: Db; functionName: string; log: Logger; recordBy?: number },
  work: (log: Logger) => Promise<Result<T, C>>,
): Promise<Result<T, C>> {
  const { db, functionName } = input;
  const { data: runId, error } = await db.rpc('start_scheduled_run', {
    function_name: functionName,
  });
  if (error || !runId) input.log.error({ error: error?.message }, 'could not record the run start');
  const log = input.log.child({ fn: functionName, ...(runId ? { run_id: runId } : {}) });
  // Retried: a run whose outcome is not recorded reads as killed after 2 minutes, a false
  // alarm for one lost request. Recording twice is harmless (only an unfinished run is
  // updated), so a retry after a lost answer changes nothing.
  const finish = async (ok: boolean, summary: object | null, message?: string) => {
    if (!runId) return;
    const { error: finishError } = await retryUnanswered(
      () =>
        db.rpc('finish_scheduled_run', {
          id: runId,
          ok,
          ...(summary ? { summary: summary as Json } : {}),
          ...(message ? { error: message } : {}),
        }),
      {
        retries: FINISH_RETRIES,
        ...(input.recordBy === undefined ? {} : { withinMs: input.recordBy - Date.now() }),
      },
    );
    if (finishError) log.error({ error: finishError.message }, 'could not record the run end');
  };
  try {
    const result = await work(log);
    if (result.ok) {
      await finish(true, result.value);
      log.info({ summary: result.value }, `${functionName} finished`);
    } else {
      await finish(false, null, result.error.message);
      log.error({ error: result.error.message }, `${functionName} failed`);
    }
    return result;
  } catch (failure) {
    const message = failure instanceof Error ? failure.message : String(failure);
    await finish(false, null, message);
    log.error({ error: message }, `${functionName} failed`);
    throw failure;
  }
}

/** What a scheduled function's setup gives the recorded run (scheduledFunction). */
export interface ScheduledWork<T extends object, C extends HttpErrorCode> {
  /** The client that records the run: its calls are cut at the configuration's DB_TIMEOUT_MS. */
  db: Db;
  log: Logger;
  work: (log: Logger) => Promise<Result<T, C>>;
}

/**
 * Records a run that failed before it began because its configuration does not parse (a
 * variable set wrong on deploy), when the database's part of the environment does: without
 * it the function would only log, never run, and status would not name it. Nothing is
 * recorded when that part is wrong too; the run is then only in Netlify's log.
 */
async function recordUnloadableRun(
  functionName: string,
  invokedAt: number,
  problem: unknown,
  env: Record<string, string | undefined>,
): Promise<void> {
  let base: ReturnType<typeof serverEnvSchema.parse>;
  try {
    base = parseEnv(serverEnvSchema, env);
  } catch {
    return;
  }
  const message = problem instanceof Error ? problem.message : String(problem);
  await recordedRun(
    {
      db: createServiceClient(base),
      functionName,
      log: createLogger(base.LOG_LEVEL),
      recordBy: scheduledRecordBy(invokedAt, base.DB_TIMEOUT_MS),
    },
    async () => fail('internal', message),
  );
}

/**
 * A Netlify scheduled function: its configuration loaded by `load` (one that does not parse
 * is recorded as a failed run where the database's settings allow, then thrown, which
 * Netlify logs as the function's error), then `setup` (given it and the invocation's start,
 * epoch ms) builds the work, which runs as a recorded run whose last attempt to record its
 * outcome starts one DB_TIMEOUT_MS before the 30 s; the outcome is the response.
 */
export const scheduledFunction =
  <Config extends { DB_TIMEOUT_MS: number }, T extends object, C extends HttpErrorCode>(
    functionName: string,
    load: () => Config,
    setup: (config: Config, invokedAt: number) => ScheduledWork<T, C>,
    env: Record<string, string | undefined> = process.env,
  ) =>
  async (): Promise<Response> => {
    const invokedAt = Date.now();
    let config: Config;
    try {
      config = load();
    } catch (problem) {
      await recordUnloadableRun(functionName, invokedAt, problem, env);
      throw problem;
    }
    const { db, log, work } = setup(config, invokedAt);
    const recordBy = scheduledRecordBy(invokedAt, config.DB_TIMEOUT_MS);
    return resultResponse(await recordedRun({ db, functionName, log, recordBy }, work));
  };
