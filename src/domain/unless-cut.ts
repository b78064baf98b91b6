/** What unlessCut answers when the cut came first. */
export const CUT = Symbol('cut');

/**
 * `work`'s outcome, or CUT once `cut` aborts first: a run that must end before the platform
 * stops it stops waiting for a call still in flight. The call's later outcome, a failure
 * included, is dropped; without a signal this is `work` itself.
 */
export function unlessCut<T>(
  work: Promise<T>,
  cut: AbortSignal | undefined,
): Promise<T | typeof CUT> {
  if (!cut) return work;
  work.catch(() => {});
  return Promise.race([
    work,
    new Promise<typeof CUT>((resolve) => {
      if (cut.aborted) resolve(CUT);
      else cut.addEventListener('abort', () => resolve(CUT), { once: true });
    }),
  ]);
}
