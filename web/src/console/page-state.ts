import { html, nothing, type PropertyDeclarations } from 'lit';
import type { OperatorDb, OperatorResult } from '../../../src/operator-client/index.ts';
import type { UsageLevel } from '../../../src/usage-client/index.ts';
import { operatorErrorMessage } from '../errors.ts';
import { formatter } from '../format.ts';
import { LightElement } from '../light-element.ts';
import { LEVEL_LABEL } from '../widget/usage-view.ts';
import { announceStaleReply, latestReplyOnly } from './latest-reply.ts';

/** What a console page holds: loading, a failure worded for a person, or the answer. */
export type Loaded<T> =
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | { kind: 'ready'; value: T };

/**
 * Sent (bubbling) when the database refuses the session the operator RPCs (403): the mark
 * was taken away, or the token no longer carries it. The dashboard then removes the whole
 * console, since none of what it shows may be shown to this account any more.
 */
export const OPERATOR_REFUSED_EVENT = 'flowmeter-operator-refused';

/**
 * Runs one operator call for a page. A session that has ended asks the dashboard, from the
 * page (`host`), to return to the sign-in form, as the tenant pages do; a refusal asks it
 * to take the console away.
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
  if (failure.notOperator) host.dispatchEvent(new Event(OPERATOR_REFUSED_EVENT, { bubbles: true }));
  return { kind: 'error', message: failure.message };
}

export function renderLoaded<T>(loaded: Loaded<T>, ready: (value: T) => unknown) {
  if (loaded.kind === 'loading') return html`<p class="muted" role="status">Loading…</p>`;
  if (loaded.kind === 'error') {
    return html`<div class="card"><p class="error" role="alert">${loaded.message}</p></div>`;
  }
  return ready(loaded.value);
}

/**
 * A console page that shows one operator call's answer. `refresh()` calls it again; a
 * failure after a success keeps the last answer on screen and says, above it, that it was
 * not refreshed and what time it is from, so a page that reloads by itself neither blanks
 * out over one failed call nor passes old figures off as current. A refusal is no such
 * failure: the dashboard takes the whole console away (see `load`). Only the latest call's
 * reply is shown: the page may have moved on (to another tenant) meanwhile.
 */
export abstract class ConsolePage<T> extends LightElement {
  static override properties: PropertyDeclarations = {
    client: { attribute: false },
    loaded: { state: true },
    refreshedAt: { state: true },
    refreshError: { state: true },
  };

  declare client: OperatorDb;
  declare loaded: Loaded<T>;
  declare refreshedAt: Date | undefined;
  /** Why the latest reload failed, while the page shows an earlier answer. */
  declare refreshError: string | undefined;
  protected format = formatter();
  #latest = latestReplyOnly(announceStaleReply(this));

  constructor() {
    super();
    this.loaded = { kind: 'loading' };
  }

  protected abstract read(): Promise<OperatorResult<T>>;

  async refresh(): Promise<void> {
    const next = await this.#latest(() => load(this, () => this.read()));
    if (!next) return;
    if (next.kind === 'error' && this.loaded.kind === 'ready') {
      this.refreshError = next.message;
      return;
    }
    if (next.kind === 'ready') this.refreshedAt = new Date();
    this.refreshError = undefined;
    this.loaded = next;
  }

  /** Nothing shown and nothing said about it, as before the page's first call. */
  protected forget(): void {
    this.loaded = { kind: 'loading' };
    this.refreshedAt = undefined;
    this.refreshError = undefined;
  }

  /** The answer, under a warning when it is older than a reload that failed. */
  protected renderAnswer(ready: (value: T) => unknown) {
    return html`${
      this.refreshError && this.loaded.kind === 'ready' && this.refreshedAt
        ? html`<p class="banner error" role="alert">Not refreshed: ${this.refreshError} These figures are from
            <time datetime=${this.refreshedAt.toISOString()}>${this.format.time(this.refreshedAt)}</time>.</p>`
        : nothing
    }${renderLoaded(this.loaded, ready)}`;
  }
}

export const levelBadge = (level: UsageLevel) =>
  html`<span class="badge level-${level}" data-level=${level}>${LEVEL_LABEL[level]}</span>`;
