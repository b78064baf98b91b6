import { describe, expect, it } from 'vitest';
import { answerBeforeCut, CUT, unlessCut } from '../../src/domain/unless-cut.ts';

describe('unlessCut', () => {
  it('answers the work when it settles before the cut, its failure included', async () => {
    const cut = new AbortController();
    expect(await unlessCut(Promise.resolve(7), cut.signal)).toBe(7);
    await expect(unlessCut(Promise.reject(new Error('refused')), cut.signal)).rejects.toThrow(
      'refused',
    );
  });

  it('answers CUT once the signal aborts first, and drops the later failure', async () => {
    const cut = new AbortController();
    let fail: (error: Error) => void = () => {};
    const work = new Promise<number>((_, reject) => {
      fail = reject;
    });
    const answer = unlessCut(work, cut.signal);
    cut.abort();
    expect(await answer).toBe(CUT);
    // Would be an unhandled rejection (a failed test run) if unlessCut let it through.
    fail(new Error('answered too late'));
    await new Promise((resolve) => setImmediate(resolve));
  });

  it('answers CUT at once when the signal has already aborted', async () => {
    expect(await unlessCut(new Promise(() => {}), AbortSignal.abort())).toBe(CUT);
  });

  it('is the work itself without a signal', () => {
    const work = Promise.resolve(1);
    expect(unlessCut(work, undefined)).toBe(work);
  });

  it('answerBeforeCut: the answer in time, else a failure with the message given', async () => {
    expect(
      await answerBeforeCut(Promise.resolve('sent'), new AbortController().signal, 'late'),
    ).toBe('sent');
    await expect(
      answerBeforeCut(new Promise(() => {}), AbortSignal.abort(), 'no answer'),
    ).rejects.toThrow(/^no answer$/);
  });
});
