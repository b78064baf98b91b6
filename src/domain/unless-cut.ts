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

/**
 * `work`'s answer; once `cut` aborts first, a failure with `unanswered` as its message (the
 * outcome is unknown: what the call asked for may have been done), and the late answer is
 * dropped. A caller records it as it records any lost answer.
 */
export async function answerBeforeCut<T>(
  work: Promise<T>,
  cut: AbortSignal | undefined,
  unanswered: string,
): Promise<T> {
  const answer = await unlessCut(work, cut);
  if (answer === CUT) throw new Error(unanswered);
  return answer;
}
