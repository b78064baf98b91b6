import type { Db } from '../db/client.ts';
import type { Json } from '../db/database.types.ts';
import type { Logger } from './logger.ts';

/**
 * Runs one scheduled function's work as a recorded run: a scheduled_runs row before, its
 * outcome and summary after, and the row's id as run_id on every log line. A failure is
 * recorded and rethrown (Netlify then logs it as the function's error).
 */
export async function recordedRun<T extends object>(
  input: { db: Db; functionName: string; log: Logger },
  work: (log: Logger) => Promise<T>,
): Promise<T> {
  const { db, functionName } = input;
  const { data: runId, error } = await db.rpc('start_scheduled_run', {
    function_name: functionName,
  });
  if (error || !runId) input.log.error({ error: error?.message }, 'could not record the run start');
  const log = input.log.child({ fn: functionName, ...(runId ? { run_id: runId } : {}) });
  const finish = async (ok: boolean, summary: object | null, message?: string) => {
    if (!runId) return;
    const { error: finishError } = await db.rpc('finish_scheduled_run', {
      id: runId,
      ok,
      ...(summary ? { summary: summary as Json } : {}),
      ...(message ? { error: message } : {}),
    });
    if (finishError) log.error({ error: finishError.message }, 'could not record the run end');
  };
  try {
    const result = await work(log);
    await finish(true, result);
    log.info({ summary: result }, `${functionName} finished`);
    return result;
  } catch (failure) {
    const message = failure instanceof Error ? failure.message : String(failure);
    await finish(false, null, message);
    log.error({ error: message }, `${functionName} failed`);
    throw failure;
  }
}
