import type { Session } from '@supabase/supabase-js';
import { html, nothing } from 'lit';
import { repeat } from 'lit/directives/repeat.js';
import { getUsageSummary, type UsageDb, type UsageSummary } from '../../src/usage-client/index.ts';
import { AutoRefresh } from './auto-refresh.ts';
import { brand } from './brand.ts';
import './console/operator-console.ts';
import { OPERATOR_REFUSED_EVENT } from './console/page-state.ts';
import { isConsoleHash, USAGE_HREF } from './console/route.ts';
import { loadErrorMessage, SESSION_ENDED, signInErrorMessage } from './errors.ts';
import { formatter } from './format.ts';
import { LightElement, listenWhileConnected } from './light-element.ts';
import { SESSION_ENDED_EVENT, type TenantPanel } from './tenant-panel.ts';

/** The mark `flowmeter operators add` sets; the database checks it again on every call. */
const isOperator = (session: Session) => session.user.app_metadata?.flowmeter_role === 'operator';

type Tenants =
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | { kind: 'ready'; tenants: UsageSummary[] };

/**
 * The page: the sign-in form until there is a session, then one panel per tenant the user
 * belongs to. Refreshes every 30 s while the tab is visible and at once when it becomes
 * visible again, and says when it last did. An operator lands on the operator console
 * (`#/console`) instead; anyone else asking for the console is told it is for operators
 * and nothing is loaded until they leave it for their usage, which then loads at once. An
 * operator the database refuses (the mark was taken away) is from then on treated as
 * anyone else, told that their operator access ended.
 */
export class FlowmeterDashboard extends LightElement {
  static override properties = {
    client: { attribute: false },
    configError: { attribute: false },
    invoicePreviewUrl: { attribute: false },
    session: { state: true },
    tenants: { state: true },
    signInError: { state: true },
    signingIn: { state: true },
    refreshError: { state: true },
    refreshedAt: { state: true },
    refreshing: { state: true },
    consoleAsked: { state: true },
    operatorRefused: { state: true },
  };

  declare client: UsageDb | undefined;
  declare configError: string | undefined;
  /** The invoice-preview function; without it the cached previews are shown as they are. */
  declare invoicePreviewUrl: string | undefined;
  declare session: Session | null | undefined;
  declare tenants: Tenants;
  declare signInError: string | undefined;
  declare signingIn: boolean;
  declare refreshError: string | undefined;
  declare refreshedAt: Date | undefined;
  declare refreshing: boolean;
  declare consoleAsked: boolean;
  /**
   * The database refused this session the operator RPCs although the session showed the
   * mark: the database decides, so the console stays away until someone signs in again.
   */
  declare operatorRefused: boolean;
  #format = formatter();
  #unsubscribe: (() => void) | undefined;
  #again = false;
  #onHash = () => {
    const wasConsole = this.consoleAsked;
    this.consoleAsked = isConsoleHash(location.hash);
    if (wasConsole && !this.consoleAsked) {
      // Nothing is loaded behind the "operators only" page: the usage loads as it is shown,
      // and focus moves to its heading rather than falling back to the page with the link.
      void this.refresh();
      void this.updateComplete.then(() =>
        this.querySelector<HTMLElement>('h1.page-title')?.focus(),
      );
    }
  };

  constructor() {
    super();
    this.tenants = { kind: 'loading' };
    this.signingIn = false;
    this.refreshing = false;
    this.consoleAsked = isConsoleHash(location.hash);
    this.operatorRefused = false;
    listenWhileConnected(this, window, 'hashchange', this.#onHash);
    listenWhileConnected(this, this, OPERATOR_REFUSED_EVENT, () => this.#refusedAsOperator());
    listenWhileConnected(this, this, SESSION_ENDED_EVENT, () => {
      if (this.client) void this.#sessionEnded(this.client);
    });
    new AutoRefresh(this, () => {
      if (this.session) void this.refresh();
    });
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    this.#unsubscribe?.();
  }

  protected override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('client') && this.client) {
      this.#unsubscribe?.();
      const { data } = this.client.auth.onAuthStateChange((event, session) => {
        // Token refreshes keep the page as it is, unless the new token lost the operator
        // mark (the database decides by the token): the console goes at once, on a page
        // that never reloads by itself too. Sign-in and sign-out switch the page, and so
        // does another user signing in (in another tab: the session is shared).
        if (event === 'TOKEN_REFRESHED' && this.session) {
          if (session && isOperator(this.session) && !isOperator(session)) {
            this.session = session;
            this.#refusedAsOperator();
          }
          return;
        }
        const previousUser = this.session?.user.id;
        this.session = session;
        if (session?.user.id !== previousUser) this.operatorRefused = false;
        const newUser = session && session.user.id !== previousUser;
        if (newUser && isOperator(session)) {
          if (!isConsoleHash(location.hash)) location.hash = '#/console';
        } else if (newUser) {
          this.#forgetTenants();
          void this.refresh();
        }
      });
      this.#unsubscribe = () => data.subscription.unsubscribe();
    }
  }

  /** Reloads every tenant; a call during a refresh makes it run once more when done. */
  async refresh(): Promise<void> {
    // The console loads its own pages; the tenant usage API has nothing for an operator,
    // and a user who asked for the console sees no usage to load.
    if (!this.client || !this.session || this.#seesConsole(this.session) || this.consoleAsked) {
      return;
    }
    if (this.refreshing) {
      this.#again = true;
      return;
    }
    this.refreshing = true;
    try {
      do {
        this.#again = false;
        await this.#load(this.client);
      } while (this.#again && this.session);
    } finally {
      this.refreshing = false;
    }
  }

  async #load(client: UsageDb): Promise<void> {
    const user = this.session?.user.id;
    const { data, error } = await getUsageSummary(client);
    // Another user signed in meanwhile: their own load shows their tenants.
    if (this.session?.user.id !== user) return;
    if (error) {
      const failure = loadErrorMessage(error);
      if (failure.expired) return this.#sessionEnded(client);
      this.refreshError = failure.message;
      if (this.tenants.kind !== 'ready') this.tenants = { kind: 'error', message: failure.message };
      return;
    }
    // Each panel's widget shows its row of this one call: the summary is read once per refresh.
    this.tenants = { kind: 'ready', tenants: data };
    await this.updateComplete;
    const panels = [...this.querySelectorAll<TenantPanel>('flowmeter-tenant-panel')];
    await Promise.all(panels.map((p) => p.updateComplete));
    const failures = (await Promise.all(panels.map((p) => p.refresh()))).filter(
      (f) => f !== undefined,
    );
    if (failures.some((f) => f.expired)) return this.#sessionEnded(client);
    this.refreshError = failures[0]?.message;
    if (!this.refreshError) this.refreshedAt = new Date();
  }

  #seesConsole(session: Session): boolean {
    return isOperator(session) && !this.operatorRefused;
  }

  /**
   * Nothing of the console stays in the page: it is removed with every figure its pages
   * hold, and the page says why, with the focus on that. Off the console's addresses the
   * person's own usage loads, as for anyone who is not an operator.
   */
  #refusedAsOperator(): void {
    this.operatorRefused = true;
    void this.refresh();
    void this.updateComplete.then(() =>
      this.querySelector<HTMLElement>('.not-operator h1')?.focus(),
    );
  }

  /** The API no longer takes the session: it ends in this browser, and the sign-in form says why. */
  async #sessionEnded(client: UsageDb): Promise<void> {
    await client.auth.signOut({ scope: 'local' });
    this.signInError = SESSION_ENDED;
  }

  /** Nothing loaded and nothing said about it, as before a user's first load. */
  #forgetTenants(): void {
    this.tenants = { kind: 'loading' };
    this.refreshedAt = undefined;
    this.refreshError = undefined;
  }

  async #signIn(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const client = this.client;
    if (!client) return;
    const form = new FormData(event.target as HTMLFormElement);
    this.signingIn = true;
    this.signInError = undefined;
    try {
      const { error } = await client.auth.signInWithPassword({
        email: String(form.get('email') ?? '').trim(),
        password: String(form.get('password') ?? ''),
      });
      if (error) this.signInError = signInErrorMessage(error);
    } catch (error) {
      this.signInError = signInErrorMessage(error as Error);
    } finally {
      this.signingIn = false;
    }
  }

  /** `reason`: why the page signs out by itself (the session ended), shown on the sign-in form. */
  async #signOut(reason?: string): Promise<void> {
    // A sign-out the server cannot confirm still ends the session in this browser.
    const { error } = (await this.client?.auth.signOut()) ?? { error: null };
    if (error) await this.client?.auth.signOut({ scope: 'local' });
    this.#forgetTenants();
    this.signInError = reason;
  }

  protected override render() {
    if (this.configError) {
      return html`<main class="centered"><div class="card narrow"><h1>flowmeter</h1><p class="error" role="alert">${this.configError}</p></div></main>`;
    }
    if (this.session === undefined) {
      return html`<main class="centered"><p class="muted" role="status">Loading…</p></main>`;
    }
    if (!this.session) return this.#renderSignIn();
    if (this.#seesConsole(this.session)) {
      return html`<flowmeter-console .client=${this.client} .email=${this.session.user.email}
        @sign-out=${(e: CustomEvent<string | undefined>) => this.#signOut(e.detail)}></flowmeter-console>`;
    }
    return this.consoleAsked
      ? this.#renderNotOperator(this.session)
      : this.#renderDashboard(this.session);
  }

  #renderSignIn() {
    return html`<main class="centered">
      <form class="card narrow sign-in" @submit=${(e: SubmitEvent) => this.#signIn(e)} novalidate>
        ${brand()}
        <h1>Sign in to see your usage</h1>
        <label for="email">Email</label>
        <input id="email" name="email" type="email" autocomplete="username" required />
        <label for="password">Password</label>
        <input id="password" name="password" type="password" autocomplete="current-password" required />
        ${this.signInError ? html`<p class="error" role="alert">${this.signInError}</p>` : nothing}
        <button type="submit" ?disabled=${this.signingIn}>${this.signingIn ? 'Signing in…' : 'Sign in'}</button>
      </form>
    </main>`;
  }

  #renderNotOperator(session: Session) {
    const email = session.user.email;
    return html`<main class="centered">
      <div class="card narrow not-operator">
        ${brand()}
        ${
          this.operatorRefused
            ? html`<h1 tabindex="-1">Operator access ended</h1>
              <p role="alert"><strong>${email}</strong> is no longer an operator, so the console and its figures are not shown any more.</p>
              <p class="muted">Another operator can restore it with</p>
              <code class="command">flowmeter operators add --email ${email}</code>
              <p class="muted">Then sign out and sign in again. To use another account, sign out.</p>`
            : html`<h1>Operators only</h1>
              <p role="alert">${email} is not an operator, so the operator console is not available to this account.</p>
              <p class="muted">An operator makes another one with <code>flowmeter operators add --email &lt;address&gt;</code>.</p>`
        }
        <div class="actions">
          <a class="button" href=${USAGE_HREF}>Go to your usage</a>
          <button type="button" class="secondary" @click=${() => this.#signOut()}>Sign out</button>
        </div>
      </div>
    </main>`;
  }

  #renderDashboard(session: Session) {
    const t = this.tenants;
    return html`
      <header class="topbar">
        ${brand()}
        <div class="topbar-right">
          <span class="refreshed" aria-live="polite">
            ${this.refreshing ? 'Refreshing…' : this.refreshedAt ? html`Updated <time datetime=${this.refreshedAt.toISOString()}>${this.#format.time(this.refreshedAt)}</time>` : nothing}
          </span>
          <button type="button" class="secondary" @click=${() => this.refresh()} ?disabled=${this.refreshing}>Refresh</button>
          <span class="user">${session.user.email}</span>
          <button type="button" class="secondary" @click=${() => this.#signOut()}>Sign out</button>
        </div>
      </header>
      <main class="content">
        <h1 class="page-title" tabindex="-1">Usage</h1>
        ${this.refreshError && t.kind === 'ready' ? html`<p class="banner error" role="alert">${this.refreshError} The numbers below are from the last successful refresh.</p>` : nothing}
        ${
          t.kind === 'loading'
            ? html`<p class="muted" role="status">Loading your tenants…</p>`
            : t.kind === 'error'
              ? html`<div class="card"><p class="error" role="alert">${t.message}</p><button type="button" @click=${() => this.refresh()}>Retry</button></div>`
              : t.tenants.length === 0
                ? html`<div class="card empty-state"><h2>No tenant yet</h2><p>Your account is not a member of any tenant. Ask your operator to add ${session.user.email}.</p></div>`
                : repeat(
                    t.tenants,
                    (tenant) => tenant.tenantId,
                    (
                      tenant,
                    ) => html`<flowmeter-tenant-panel .client=${this.client} tenant-id=${tenant.tenantId}
                      .summary=${tenant} .invoicePreviewUrl=${this.invoicePreviewUrl}
                      aria-label=${tenant.tenantName} role="region"></flowmeter-tenant-panel>`,
                  )
        }
      </main>`;
  }
}

if (!customElements.get('flowmeter-dashboard'))
  customElements.define('flowmeter-dashboard', FlowmeterDashboard);
