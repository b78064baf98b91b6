import { html, nothing, type ReactiveController, type ReactiveControllerHost } from 'lit';
import type { Formatter } from './format.ts';

/** How often the tenant dashboard and the console pages reload, so both sides of the site age alike. */
const REFRESH_SECONDS = 30;

/**
 * Reloads a page every 30 s while the tab is visible, and at once when it becomes visible
 * again: a hidden tab costs the database nothing and is current when looked at.
 */
export class AutoRefresh implements ReactiveController {
  #timer: ReturnType<typeof setInterval> | undefined;
  #reload: () => void;
  #onVisible = () => {
    if (document.visibilityState === 'visible') this.#reload();
  };

  constructor(host: ReactiveControllerHost, reload: () => void) {
    this.#reload = reload;
    host.addController(this);
  }

  hostConnected(): void {
    document.addEventListener('visibilitychange', this.#onVisible);
    this.#timer = setInterval(this.#onVisible, REFRESH_SECONDS * 1000);
  }

  hostDisconnected(): void {
    document.removeEventListener('visibilitychange', this.#onVisible);
    clearInterval(this.#timer);
  }
}

/** When a console page last loaded, for its title row. */
export function refreshedNote(refreshedAt: Date | undefined, f: Formatter) {
  return html`<p class="refreshed" aria-live="polite">${
    refreshedAt
      ? html`Refreshed <time datetime=${refreshedAt.toISOString()}>${f.time(refreshedAt)}</time> · every ${REFRESH_SECONDS} s`
      : nothing
  }</p>`;
}
