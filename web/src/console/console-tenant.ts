import { html, nothing } from 'lit';
import { noun } from '../../../src/domain/words.ts';
import {
  acknowledgeGaps,
  getTenantDetail,
  type OperatorResult,
  resendAlertDelivery,
  setSourceEnabled,
  type TenantDetail,
} from '../../../src/operator-client/index.ts';
import { toDailyUsage, toUsagePeriod, toUsageSummary } from '../../../src/usage-client/index.ts';
import { AutoRefresh, refreshedNote } from '../auto-refresh.ts';
import { operatorErrorMessage } from '../errors.ts';
import { historyTable } from '../history-table.ts';
import '../widget/flowmeter-usage.ts';
import type { Confirmation, ConfirmDialog } from './confirm-dialog.ts';
import './confirm-dialog.ts';
import { announceStaleReply } from './latest-reply.ts';
import { columnLabel } from './ledger-columns.ts';
import { ledgerTable } from './ledger-table.ts';
import { ConsolePage } from './page-state.ts';
import { consoleHref } from './route.ts';

type Source = TenantDetail['sources'][number];
type Correction = TenantDetail['corrections'][number];
type Alert = TenantDetail['alerts'][number];
type Delivery = Alert['deliveries'][number];
type Outcome = { ok: boolean; message: string; at: Date };
// The same rows as the tenant usage API's, where the generated types cannot tell null apart.
type SummaryRow = Parameters<typeof toUsageSummary>[0];
type PeriodRow = Parameters<typeof toUsagePeriod>[0];

/**
 * One tenant: its dashboard as the tenant sees it (the same widget and periods table, fed by
 * operator_tenant), then what only the operator sees: sources, the Stripe ledger, corrections
 * of billed usage, alert deliveries and reservations in flight, with the actions behind a
 * confirmation. Reloads every 30 s while the tab is visible, as the tenant's own dashboard does.
 */
export class ConsoleTenant extends ConsolePage<TenantDetail> {
  static override properties = {
    tenantId: { attribute: false },
    outcome: { state: true },
    busy: { state: true },
  };

  declare tenantId: string;
  declare outcome: Outcome | undefined;
  declare busy: boolean;
  // Replaced whenever the page moves to another tenant: an action's reply that finds another
  // visit here belongs to a page the operator has left.
  #visit = {};
  #announceStale = announceStaleReply(this);

  constructor() {
    super();
    this.busy = false;
    new AutoRefresh(this, () => {
      if (this.tenantId) void this.refresh();
    });
  }

  protected override willUpdate(changed: Map<string, unknown>): void {
    if (changed.has('tenantId') && this.tenantId) {
      this.#visit = {};
      this.forget();
      this.outcome = undefined;
      void this.refresh();
    }
  }

  protected override read() {
    return getTenantDetail(this.client, this.tenantId, { maxRows: 50 });
  }

  /**
   * Asks, acts, says what happened, and reloads the tenant. The nav stays usable while the
   * action runs, so its reply may find the page on another tenant: the action is done, but
   * saying so there, or reloading, would speak of the wrong tenant.
   */
  async #act<T>(
    confirmation: Confirmation,
    action: () => Promise<OperatorResult<T>>,
    done: (value: T) => string,
  ): Promise<void> {
    const dialog = this.querySelector<ConfirmDialog>('flowmeter-confirm');
    if (!dialog || !(await dialog.ask(confirmation))) return;
    const visit = this.#visit;
    this.busy = true;
    try {
      const { data, error } = await action();
      if (visit !== this.#visit) {
        this.#announceStale();
        return;
      }
      this.outcome = error
        ? { ok: false, message: operatorErrorMessage(error).message, at: new Date() }
        : { ok: true, message: done(data as T), at: new Date() };
      await this.refresh();
    } finally {
      this.busy = false;
    }
  }

  protected override render() {
    const title = this.loaded.kind === 'ready' ? this.loaded.value.summary.tenant_name : 'Tenant';
    return html`<p class="crumbs"><a href=${consoleHref({ page: 'tenants' })}>Tenants</a> ›</p>
      <div class="title-row">
        <h1 class="page-title" tabindex="-1">${title}</h1>
        ${refreshedNote(this.refreshedAt, this.format)}
      </div>
      ${this.outcome ? html`<p class="banner ${this.outcome.ok ? 'success' : 'error'}" role="status">${this.outcome.message}${this.#shownFromBefore(this.outcome) ? ' The page could not reload since: below is the tenant as it was before.' : nothing}</p>` : nothing}
      ${this.renderAnswer((d) => this.#ready(d))}
      <flowmeter-confirm></flowmeter-confirm>`;
  }

  /** Whether the reload after the action failed, so the tables below do not show its result. */
  #shownFromBefore(outcome: Outcome): boolean {
    const shown = this.refreshedAt;
    return this.refreshError !== undefined && shown !== undefined && shown < outcome.at;
  }

  #ready(d: TenantDetail) {
    const f = this.format;
    const s = d.summary;
    return html`
      <dl class="facts card">
        <div><dt>Reference</dt><dd><code>${s.external_ref ?? '—'}</code></dd></div>
        <div><dt>Plan</dt><dd>${s.plan_name}</dd></div>
        <div><dt>Subscription</dt><dd><span class="status status-${s.subscription_status}">${s.subscription_status}</span></dd></div>
        <div><dt>Stripe customer</dt><dd><code>${s.stripe_customer_id ?? '—'}</code></dd></div>
        <div><dt>Stripe subscription</dt><dd><code>${s.stripe_subscription_id ?? '—'}</code></dd></div>
      </dl>
      <section aria-label="The tenant's dashboard">
        <flowmeter-usage refresh-interval="0"
          .usage=${{ summary: toUsageSummary(s as SummaryRow), daily: d.daily.map(toDailyUsage) }}></flowmeter-usage>
      </section>
      <section class="card" aria-labelledby="periods">
        <h2 id="periods">Billing periods</h2>
        ${
          d.history.length
            ? historyTable(
                d.history.map((p) => toUsagePeriod(p as PeriodRow)),
                f,
              )
            : html`<p class="empty">No billing period has usage yet.</p>`
        }
      </section>
      <section class="card" aria-labelledby="sources">
        <h2 id="sources">n8n sources</h2>
        ${d.sources.length ? this.#sources(d.sources) : html`<p class="empty">No n8n source is registered for this tenant.</p>`}
      </section>
      <section class="card" aria-labelledby="ledger">
        <h2 id="ledger">Stripe ledger</h2>
        <ul class="chips" aria-label="Meter reports by state">
          ${Object.entries(d.ledger)
            .filter(([, v]) => typeof v === 'number')
            .map(
              ([k, v]) =>
                html`<li data-count=${k}><span class="chip-n">${f.count(v as number)}</span> ${columnLabel(k).toLowerCase()}</li>`,
            )}
        </ul>
        ${d.ledger.reports.length ? ledgerTable(d.ledger.reports, f) : html`<p class="empty">Nothing was reported to Stripe for this tenant yet.</p>`}
      </section>
      <section class="card" aria-labelledby="corrections">
        <h2 id="corrections">Corrections</h2>
        ${d.corrections.length ? this.#corrections(d.corrections) : html`<p class="empty">No correction of this tenant's billed usage. <code>flowmeter adjust</code> records one.</p>`}
      </section>
      <section class="card" aria-labelledby="alerts">
        <h2 id="alerts">Alerts and deliveries</h2>
        ${d.alerts.length ? this.#alerts(d.alerts) : html`<p class="empty">No alert was raised for this tenant.</p>`}
      </section>
      <section class="card" aria-labelledby="reservations">
        <h2 id="reservations">Reservations in flight (${f.count(d.reservations.active)})</h2>
        ${d.reservations.rows.length ? this.#reservations(d.reservations.rows) : html`<p class="empty">No run is reserved and uncollected.</p>`}
      </section>`;
  }

  #sources(sources: Source[]) {
    const f = this.format;
    return html`<div class="table-wrap"><table class="sources">
      <thead><tr><th scope="col">Source</th><th scope="col">State</th><th scope="col" class="num">Lag</th>
        <th scope="col" class="num">Failures</th><th scope="col">Last error</th><th scope="col" class="num">Gaps</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${sources.map(
        (src) => html`<tr data-source=${src.id}>
          <th scope="row">${src.name}<br /><small class="muted"><code>${src.base_url}</code></small></th>
          <td data-metric="enabled">${src.enabled ? html`<span class="badge ok">Enabled</span>` : html`<span class="badge off">Disabled</span>`}</td>
          <td class="num" data-metric="lag">${src.lag_seconds === null ? 'never collected' : f.duration(src.lag_seconds * 1000)}</td>
          <td class="num" data-metric="failures">${f.count(src.consecutive_failures)}</td>
          <td data-metric="last-error">${src.last_error ? html`<span class="error-text">${src.last_error}</span><br /><small class="muted">${src.last_error_at ? f.dateTime(src.last_error_at) : ''}</small>` : '—'}</td>
          <td class="num" data-metric="gaps">${f.count(src.unacknowledged_gaps)} new / ${f.count(src.gaps)}</td>
          <td class="actions">
            <button type="button" class="secondary" ?disabled=${this.busy}
              @click=${() =>
                this.#act(
                  {
                    title: `${src.enabled ? 'Disable' : 'Enable'} ${src.name}?`,
                    message: src.enabled
                      ? 'Collection from this n8n instance stops until it is enabled again. Executions that run meanwhile are collected later, as long as n8n keeps them.'
                      : 'Collection from this n8n instance resumes on the next run of the collector.',
                    confirmLabel: src.enabled ? 'Disable source' : 'Enable source',
                  },
                  () => setSourceEnabled(this.client, { sourceId: src.id, enabled: !src.enabled }),
                  (r) => `${r.name} is ${r.enabled ? 'enabled' : 'disabled'}.`,
                )}>${src.enabled ? 'Disable' : 'Enable'}</button>
            ${
              src.unacknowledged_gaps > 0
                ? html`<button type="button" class="secondary" ?disabled=${this.busy}
                  @click=${() =>
                    this.#act(
                      {
                        title: `Acknowledge the ${noun(src.unacknowledged_gaps, 'gap')} of ${src.name}?`,
                        message:
                          src.unacknowledged_gaps === 1
                            ? '1 gap is marked as seen: it stays listed, and no longer counts as needing attention.'
                            : `${f.count(src.unacknowledged_gaps)} gaps are marked as seen: they stay listed, and no longer count as needing attention.`,
                        confirmLabel: 'Acknowledge gaps',
                      },
                      () => acknowledgeGaps(this.client, src.id),
                      (r) => `${f.counted(r.acknowledged, 'gap')} acknowledged.`,
                    )}>Acknowledge gaps</button>`
                : nothing
            }
          </td></tr>`,
      )}</tbody></table></div>`;
  }

  #alerts(alerts: Alert[]) {
    const f = this.format;
    return html`<div class="table-wrap"><table class="alerts-table">
      <thead><tr><th scope="col">Alert</th><th scope="col">Channel</th><th scope="col">Delivery</th>
        <th scope="col" class="num">Attempts</th><th scope="col">Last error</th>
        <th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
      <tbody>${alerts.flatMap((a) => {
        const label = html`<th scope="row" rowspan=${Math.max(1, a.deliveries.length)}>${a.threshold} % of the quota
          <br /><small class="muted">${f.count(a.used)} of ${f.count(a.quota)} · ${f.dateTime(a.created_at)}</small></th>`;
        if (a.deliveries.length === 0) {
          return [
            html`<tr data-alert=${a.id}>${label}<td colspan="5" class="muted">In-app only</td></tr>`,
          ];
        }
        return a.deliveries.map(
          (
            dl,
            i,
          ) => html`<tr data-alert=${a.id} data-channel=${dl.channel_id}>${i === 0 ? label : nothing}
            <td>${dl.channel_kind}${dl.global_channel ? html` <small class="muted">(all tenants)</small>` : nothing}</td>
            <td data-metric="delivery-status"><span class="badge status-${dl.status}">${this.#deliveryState(dl)}</span></td>
            <td class="num">${f.count(dl.attempts)}</td>
            <td>${dl.last_error ? html`<span class="error-text">${dl.last_error}</span>` : '—'}</td>
            <td class="actions">${
              dl.status === 'failed'
                ? html`<button type="button" class="secondary" ?disabled=${this.busy}
                  @click=${() =>
                    this.#act(
                      {
                        title: `Send the ${a.threshold} % alert again by ${dl.channel_kind}?`,
                        message:
                          'The delivery becomes due now with a fresh set of attempts; the next run of deliver-alerts sends it, with the same delivery key.',
                        confirmLabel: 'Send again',
                      },
                      () =>
                        resendAlertDelivery(this.client, {
                          alertId: a.id,
                          channelId: dl.channel_id,
                        }),
                      () => `The ${a.threshold} % alert is due again by ${dl.channel_kind}.`,
                    )}>Send again</button>`
                : nothing
            }</td></tr>`,
        );
      })}</tbody></table></div>`;
  }

  /** How a correction reached Stripe, in words an operator checks the Dashboard with. */
  #sentAs(c: Correction): string {
    const f = this.format;
    if (c.method === 'meter_event') return `meter event of ${f.count(c.event_value ?? 0)}`;
    if (c.method === 'cancel') {
      return `cancels ${c.cancels_identifier}${c.event_value ? `, ${f.count(c.event_value)} re-sent` : ''}`;
    }
    if (c.method === 'credit')
      return `credit of ${f.money(c.credit_amount ?? 0, c.currency ?? 'usd')}`;
    return 'nothing was billed for them';
  }

  #corrections(rows: Correction[]) {
    const f = this.format;
    return html`<div class="table-wrap"><table class="corrections">
      <thead><tr><th scope="col">Period</th><th scope="col">Kind</th><th scope="col" class="num">Executions</th>
        <th scope="col">Sent as</th><th scope="col">Status</th><th scope="col">Reason</th>
        <th scope="col">Requested by</th><th scope="col">Last error</th></tr></thead>
      <tbody>${rows.map(
        (c) => html`<tr data-correction=${c.id}>
          <th scope="row">${f.period(c.period_start, c.period_end)}<br /><small class="muted">${f.dateTime(c.created_at)}</small></th>
          <td>${c.kind}</td>
          <td class="num" data-metric="delta">${c.delta > 0 ? '+' : ''}${f.count(c.delta)}</td>
          <td data-metric="sent-as">${this.#sentAs(c)}</td>
          <td data-metric="status"><span class="badge status-${c.status}">${c.status}</span></td>
          <td>${c.reason}</td>
          <td><small>${c.requested_by}</small></td>
          <td>${c.last_error ? html`<span class="error-text">${c.last_error}</span>` : '—'}</td></tr>`,
      )}</tbody></table></div>`;
  }

  #deliveryState(d: Delivery): string {
    if (d.status === 'failed') return d.next_attempt_at ? 'retrying' : 'given up';
    return d.status;
  }

  #reservations(rows: TenantDetail['reservations']['rows']) {
    const f = this.format;
    return html`<div class="table-wrap"><table class="reservations">
      <thead><tr><th scope="col">Run</th><th scope="col">Workflow</th><th scope="col">Reserved at</th><th scope="col">Expires</th></tr></thead>
      <tbody>${rows.map(
        (
          r,
        ) => html`<tr data-reservation=${r.id}><th scope="row"><code>${r.run_ref ?? `#${r.id}`}</code></th>
          <td><code>${r.workflow_id ?? '—'}</code></td><td>${f.dateTime(r.created_at)}</td><td>${f.dateTime(r.expires_at)}</td></tr>`,
      )}</tbody></table></div>`;
  }
}

if (!customElements.get('console-tenant')) customElements.define('console-tenant', ConsoleTenant);
