import { html } from 'lit';
import type { OperatorResult } from '../../../src/operator-client/index.ts';
import { operatorErrorMessage } from '../errors.ts';

/** What a console page holds: loading, a failure worded for a person, or the answer. */
export type Loaded<T> =
  | { kind: 'loading' }
  | { kind: 'error'; message: string; notOperator: boolean }
  | { kind: 'ready'; value: T };

/**
 * Runs one operator call for a page. A session that has ended asks the dashboard, from the
 * page (`host`), to return to the sign-in form, as the tenant pages do.
 */
export async function load<T>(
  host: EventTarget,
  call: () => Promise<OperatorResult<T>>,
): Promise<Loaded<T>> {
  let failure: ReturnType<typeof operatorErrorMessage>;
  try {
    const { data, error } = await call();
    if (!error) return { kind: 'ready', value: data };
    failure = operatorErrorMessage(error);
  } catch (error) {
    failure = operatorErrorMessage(error as Error);
  }
  if (failure.expired) {
    host.dispatchEvent(new CustomEvent('sign-out', { bubbles: true, detail: failure.message }));
  }
  return { kind: 'error', message: failure.message, notOperator: failure.notOperator };
}

export function renderLoaded<T>(loaded: Loaded<T>, ready: (value: T) => unknown) {
  if (loaded.kind === 'loading') return html`<p class="muted" role="status">Loading…</p>`;
  if (loaded.kind === 'error') {
    return html`<div class="card ${loaded.notOperator ? 'not-operator' : ''}">
      ${loaded.notOperator ? html`<h2>Operators only</h2>` : ''}
      <p class="error" role="alert">${loaded.message}</p></div>`;
  }
  return ready(loaded.value);
}

export const LEVEL_LABEL: Record<string, string> = {
  normal: 'Normal',
  warning: 'Warning',
  limit: 'At the limit',
  overage: 'Over the limit',
};

export const levelBadge = (level: string) =>
  html`<span class="badge level-${level}" data-level=${level}>${LEVEL_LABEL[level] ?? level}</span>`;
