import pRetry from 'p-retry';

/** A call's answer as supabase-js gives it: its error, and the HTTP status (0: none came). */
export interface CallAnswer {
  error: { message: string } | null;
  status: number;
}

/**
 * Repeats a call that got no answer or a server error (status 0 or 5xx), a few times and
 * for at most `withinMs`: for calls that change nothing once one of them has gone through,
 * such as recording an outcome that is recorded once. A refusal (4xx) is final. Resolves
 * with the last answer, failed or not.
 */
export async function retryUnanswered<A extends CallAnswer>(
  call: () => PromiseLike<A>,
  options: { retries: number; withinMs?: number },
): Promise<A> {
  let last: A | undefined;
  try {
    await pRetry(
      async () => {
        last = await call();
        const { error, status } = last;
        if (error && (status === 0 || status >= 500)) throw new Error(error.message);
      },
      {
        retries: options.retries,
        minTimeout: 200,
        maxTimeout: 1000,
        ...(options.withinMs === undefined ? {} : { maxRetryTime: Math.max(0, options.withinMs) }),
      },
    );
  } catch (error) {
    if (!last) throw error;
  }
  return last as A;
}
