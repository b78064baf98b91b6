import { fail, ok, type Result } from '../domain/result.ts';
import { createN8nClient, N8nApiError, type N8nExecution } from '../n8n/client.ts';

export interface SourceConnection {
  baseUrl: string;
  apiKey: string;
  projectId?: string | null;
}

export type ProbeResult = Result<{ latestExecution: N8nExecution | null }, 'upstream_failed'>;

/** What to change for each way n8n can refuse; the client's message says what happened. */
const PROBE_HINTS: Partial<Record<N8nApiError['kind'], string>> = {
  unauthorized: 'create an API key in n8n (Settings → n8n API) and pass it with --api-key',
  forbidden: 'give the key the execution:list and execution:read scopes',
  network: 'check the URL and that this machine can reach it',
  timeout: 'check the URL, or raise N8N_REQUEST_TIMEOUT_MS',
  bad_request: 'check the URL: it is the instance root, like https://acme.app.n8n.cloud',
};

/**
 * One `GET /api/v1/executions?limit=1` with the collector's client: what collection will
 * do. n8n's refusal is a failure value saying what to change.
 */
export async function probeSource(input: {
  source: SourceConnection;
  timeoutMs: number;
}): Promise<ProbeResult> {
  const { source } = input;
  const client = createN8nClient({
    baseUrl: source.baseUrl,
    apiKey: source.apiKey,
    timeoutMs: input.timeoutMs,
    // An operator waiting at the prompt wants an answer, not a minute of backoff.
    retries: 1,
  });
  try {
    const page = await client.listExecutions({
      limit: 1,
      ...(source.projectId ? { projectId: source.projectId } : {}),
    });
    return ok({ latestExecution: page.data[0] ?? null });
  } catch (error) {
    if (!(error instanceof N8nApiError)) throw error;
    const hint = PROBE_HINTS[error.kind];
    return fail('upstream_failed', hint ? `${error.message}; ${hint}` : error.message);
  }
}

/**
 * With `test`, the probe that must pass before anything is written; its failure says what
 * was left `unchanged`. The latest execution when tested, null otherwise.
 */
async function probeFirst(input: {
  test: boolean;
  source: SourceConnection;
  timeoutMs: number;
  unchanged: string;
}): Promise<Result<N8nExecution | null, 'upstream_failed'>> {
  if (!input.test) return ok(null);
  const probed = await probeSource(input);
  if (!probed.ok) return fail('upstream_failed', `${probed.error.message}. ${input.unchanged}`);
  return ok(probed.value.latestExecution);
}

/**
 * A write of a source's key that n8n must accept first: probes with `test` as probeFirst
 * does, then `write`s, and shows the written source without its sealed key, beside the
 * latest execution.
 */
export async function writeAfterProbe<Row extends { api_key_ciphertext: string }>(input: {
  test: boolean;
  source: SourceConnection;
  timeoutMs: number;
  unchanged: string;
  write: () => Promise<Result<Row>>;
}): Promise<
  Result<{ source: Omit<Row, 'api_key_ciphertext'>; latestExecution: N8nExecution | null }>
> {
  const probed = await probeFirst(input);
  if (!probed.ok) return probed;
  const written = await input.write();
  if (!written.ok) return written;
  const { api_key_ciphertext: _sealed, ...source } = written.value;
  return ok({ source, latestExecution: probed.value });
}
