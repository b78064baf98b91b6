import { html } from 'lit';
import type { OperatorResult } from '../../../src/operator-client/index.ts';
import { operatorErrorMessage } from '../errors.ts';

/** What a console page holds: loading, a failure worded for a person, or the answer. */
export type Loaded<T> =
  | { kind: 'loading' }
  | { kind: 'error'; message: string; notOperator: boolean }
  | { kind: 'ready'; value: T };

export async function load<T>(call: () => Promise<OperatorResult<T>>): Promise<Loaded<T>> {
  try {
    const { data, error } = await call();
    if (error) return { kind: 'error', ...operatorErrorMessage(error) };
    return { kind: 'ready', value: data };
  } catch (error) {
    return { kind: 'error', ...operatorErrorMessage(error as Error) };
  }
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
