import { html } from 'lit';
import type { OperatorDb } from '../../../src/operator-client/index.ts';
import { brand } from '../brand.ts';
import { LightElement, listenWhileConnected } from '../light-element.ts';
import { type ConsoleRoute, consoleHref, parseConsoleRoute } from './route.ts';
import './console-health.ts';
import './console-overview.ts';
import './console-tenant.ts';
import './console-tenants.ts';

const NAV: Array<{ label: string; route: ConsoleRoute }> = [
  { label: 'Overview', route: { page: 'overview' } },
  { label: 'Tenants', route: { page: 'tenants' } },
  { label: 'Health', route: { page: 'health' } },
];

/**
 * `<flowmeter-console>`: the operator's pages, chosen by the `#/console…` hash. Each page
 * loads through src/operator-client with the operator's own session; the database decides
 * who is an operator. Moving to another page moves the focus to its heading.
 */
export class OperatorConsole extends LightElement {
  static override properties = {
    client: { attribute: false },
    email: { attribute: false },
    route: { state: true },
  };

  declare client: OperatorDb;
  declare email: string | undefined;
  declare route: ConsoleRoute;
  #onHash = () => {
    this.route = parseConsoleRoute(location.hash);
    void this.updateComplete.then(() => this.querySelector<HTMLElement>('main h1')?.focus());
  };

  constructor() {
    super();
    this.route = parseConsoleRoute(location.hash);
    listenWhileConnected(this, window, 'hashchange', this.#onHash);
  }

  protected override render() {
    const page = this.route.page;
    const current = page === 'tenant' || page === 'no-such-tenant' ? 'tenants' : page;
    return html`
      <header class="topbar">
        ${brand(html`<span class="tag operator-tag">operator</span>`)}
        <nav aria-label="Console" class="console-nav">
          ${NAV.map(
            (n) => html`<a href=${consoleHref(n.route)}
              aria-current=${n.route.page === current ? 'page' : 'false'}>${n.label}</a>`,
          )}
        </nav>
        <div class="topbar-right">
          <span class="user">${this.email}</span>
          <button type="button" class="secondary"
            @click=${() => this.dispatchEvent(new CustomEvent('sign-out', { bubbles: true }))}>Sign out</button>
        </div>
      </header>
      <main class="content">${this.#page()}</main>`;
  }

  #page() {
    const r = this.route;
    switch (r.page) {
      case 'overview':
        return html`<console-overview .client=${this.client}></console-overview>`;
      case 'tenants':
        return html`<console-tenants .client=${this.client}></console-tenants>`;
      case 'tenant':
        return html`<console-tenant .client=${this.client} .tenantId=${r.tenantId}></console-tenant>`;
      case 'no-such-tenant':
        // As the tenant page shows an id the database does not know, without asking it.
        return html`<p class="crumbs"><a href=${consoleHref({ page: 'tenants' })}>Tenants</a> ›</p>
          <div class="title-row"><h1 class="page-title" tabindex="-1">Tenant</h1></div>
          <div class="card"><p class="error" role="alert">Not found: no tenant has the id ${r.segment}.</p></div>`;
      case 'health':
        return html`<console-health .client=${this.client}></console-health>`;
    }
  }
}

if (!customElements.get('flowmeter-console'))
  customElements.define('flowmeter-console', OperatorConsole);
