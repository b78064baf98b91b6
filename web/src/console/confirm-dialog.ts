import { html } from 'lit';
import { LightElement } from '../light-element.ts';

export interface Confirmation {
  title: string;
  message: string;
  confirmLabel: string;
}

/**
 * `<flowmeter-confirm>`: asks before an operator action. A native modal dialog, so focus
 * stays inside it and Escape cancels; Cancel has the focus first, and the focus returns to
 * the button that opened it.
 */
export class ConfirmDialog extends LightElement {
  static override properties = { asking: { state: true } };

  declare asking: Confirmation | undefined;
  #answer: ((yes: boolean) => void) | undefined;
  #opener: HTMLElement | null = null;

  async ask(confirmation: Confirmation): Promise<boolean> {
    this.#answer?.(false);
    this.#opener = document.activeElement as HTMLElement | null;
    this.asking = confirmation;
    await this.updateComplete;
    this.querySelector('dialog')?.showModal();
    this.querySelector<HTMLButtonElement>('button.cancel')?.focus();
    return new Promise((resolve) => {
      this.#answer = resolve;
    });
  }

  #close(yes: boolean): void {
    const dialog = this.querySelector('dialog');
    if (dialog?.open) dialog.close();
    this.#answer?.(yes);
    this.#answer = undefined;
    this.#opener?.focus();
  }

  protected override render() {
    const a = this.asking;
    return html`<dialog class="confirm" aria-labelledby="confirm-title" aria-describedby="confirm-message"
      @cancel=${(e: Event) => {
        e.preventDefault();
        this.#close(false);
      }}>
      <h2 id="confirm-title">${a?.title ?? ''}</h2>
      <p id="confirm-message">${a?.message ?? ''}</p>
      <div class="actions">
        <button type="button" class="secondary cancel" @click=${() => this.#close(false)}>Cancel</button>
        <button type="button" class="confirm-action" @click=${() => this.#close(true)}>${a?.confirmLabel ?? 'Confirm'}</button>
      </div>
    </dialog>`;
  }
}

if (!customElements.get('flowmeter-confirm'))
  customElements.define('flowmeter-confirm', ConfirmDialog);
