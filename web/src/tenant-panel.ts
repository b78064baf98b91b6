import { html, nothing } from 'lit';
import {
  exportUsageCsvBlob,
  getUsageHistory,
  getWorkflowBreakdown,
  listAlerts,
  markAlertRead,
  type UsageAlert,
  type UsageDb,
  type UsagePeriod,
  type UsageSummary,
  type WorkflowUsage,
} from '../../src/usage-client/index.ts';
import { alertsUnreadFirst } from './alerts.ts';
import { actionErrorMessage, loadErrorMessage } from './errors.ts';
import { formatter } from './format.ts';
import { historyTable } from './history-table.ts';
import { LightElement } from './light-element.ts';
import './widget/flowmeter-usage.ts';
import type { FlowmeterUsage } from './widget/flowmeter-usage.ts';

type Loaded<T> =
  | { kind: 'loading' }
  | { kind: 'error'; message: string }
  | { kind: 'ready'; rows: T[] };

type CsvExport =
  | { kind: 'idle' }
  | { kind: 'running'; rows: number }
  | { kind: 'failed'; message: string };

/** Sent (bubbling) when a call of the panel's own finds the session ended; the page signs out. */
export const SESSION_ENDED_EVENT = 'flowmeter-session-ended';

/** How long a downloaded file's object URL is kept: the browser has started saving it by then. */
const DOWNLOAD_URL_LIFETIME_MS = 60_000;

/**
 * One tenant on the dashboard: the usage widget (given the page's summary row, so the
 * summary is read once per refresh), a "Download CSV" of the period's executions, then the
 * workflows of this period, the alerts and the past periods. The page drives `refresh()`;
 * nothing here polls by itself.
 */
export class TenantPanel extends LightElement {
  static override properties = {
    client: { attribute: false },
    tenantId: { attribute: 'tenant-id' },
    summary: { attribute: false },
    invoicePreviewUrl: { attribute: false },
    csv: { state: true },
    workflows: { state: true },
    alerts: { state: true },
    history: { state: true },
    marking: { state: true },
    markFailure: { state: true },
  };

  declare client: UsageDb;
  declare tenantId: string;
  declare summary: UsageSummary | undefined;
  declare invoicePreviewUrl: string | undefined;
  declare csv: CsvExport;
  declare workflows: Loaded<WorkflowUsage>;
  declare alerts: Loaded<UsageAlert>;
  declare history: Loaded<UsagePeriod>;
  declare marking: number | undefined;
  declare markFailure: { alertId: number; message: string } | undefined;
  #format = formatter();

  constructor() {
    super();
    this.workflows = { kind: 'loading' };
    this.alerts = { kind: 'loading' };
    this.history = { kind: 'loading' };
    this.csv = { kind: 'idle' };
  }

  /** Reloads every section; resolves with the first failure's message, if any. */
  async refresh(): Promise<{ message: string; expired: boolean } | undefined> {
    const widget = this.querySelector<FlowmeterUsage>('flowmeter-usage');
    let failure: { message: string; expired: boolean } | undefined;
    const onError = (event: Event) => {
      failure ??= (event as CustomEvent<{ message: string; expired: boolean }>).detail;
    };
    this.addEventListener('flowmeter-usage-error', onError);
    const load = async <T>(
      current: Loaded<T>,
      fetch: () => Promise<{ data: T[] | null; error: { message: string; code?: string } | null }>,
    ): Promise<Loaded<T>> => {
      const { data, error } = await fetch();
      if (error) {
        const described = loadErrorMessage(error);
        failure ??= described;
        return current.kind === 'ready' ? current : { kind: 'error', message: described.message };
      }
      return { kind: 'ready', rows: data ?? [] };
    };
    const { client, tenantId } = this;
    try {
      const [workflows, alerts, history] = await Promise.all([
        load(this.workflows, () => getWorkflowBreakdown(client, { tenantId, maxRows: 100 })),
        load(this.alerts, () => listAlerts(client, { tenantId, maxRows: 50 })),
        load(this.history, () => getUsageHistory(client, { tenantId, maxRows: 12 })),
        widget?.refresh(),
      ]);
      this.workflows = workflows;
      this.alerts = alerts;
      this.history = history;
    } finally {
      this.removeEventListener('flowmeter-usage-error', onError);
    }
    return failure;
  }

  /** The period's executions as a CSV file, read page by page through tenant_usage_export. */
  async #downloadCsv(): Promise<void> {
    const { client, tenantId } = this;
    this.csv = { kind: 'running', rows: 0 };
    const { data, error } = await exportUsageCsvBlob(client, {
      tenantId,
      ...(this.summary ? { periodStart: this.summary.periodStart } : {}),
      onProgress: (rows) => {
        this.csv = { kind: 'running', rows };
      },
    });
    if (error) {
      this.csv = { kind: 'failed', message: loadErrorMessage(error).message };
      return;
    }
    this.csv = { kind: 'idle' };
    const link = Object.assign(document.createElement('a'), {
      href: URL.createObjectURL(data),
      download: `usage-${this.summary?.periodStart.slice(0, 10) ?? 'current'}-${tenantId}.csv`,
    });
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), DOWNLOAD_URL_LIFETIME_MS);
  }

  /**
   * A failure is said beside the alert, whose list stays: the alerts were loaded, only this
   * action failed. A session that has ended is the page's to handle, as for every load.
   */
  async #markRead(alert: UsageAlert): Promise<void> {
    this.marking = alert.id;
    this.markFailure = undefined;
    const { data, error } = await markAlertRead(this.client, alert.id);
    this.marking = undefined;
    if (error) {
      const failure = actionErrorMessage(error);
      if (failure.expired) {
        this.dispatchEvent(new Event(SESSION_ENDED_EVENT, { bubbles: true }));
        return;
      }
      this.markFailure = { alertId: alert.id, message: failure.message };
      return;
    }
    if (this.alerts.kind !== 'ready') return;
    this.alerts = {
      kind: 'ready',
      rows: this.alerts.rows.map((a) => (a.id === data.id ? data : a)),
    };
  }

  protected override render() {
    return html`
      <flowmeter-usage .client=${this.client} tenant-id=${this.tenantId} refresh-interval="0"
        .summary=${this.summary} .invoicePreviewUrl=${this.invoicePreviewUrl}></flowmeter-usage>
      <div class="panel-actions">
        <button type="button" class="secondary" ?disabled=${this.csv.kind === 'running'}
          @click=${() => this.#downloadCsv()}>Download CSV</button>
        <span class="muted">every execution of this period, one line each</span>
        ${
          this.csv.kind === 'running'
            ? html`<span role="status">Preparing… ${this.#format.counted(this.csv.rows, 'execution')}</span>`
            : this.csv.kind === 'failed'
              ? html`<span class="error" role="alert">Download failed: ${this.csv.message}</span>`
              : nothing
        }
      </div>
      <div class="panel-grid">
        <section class="card" aria-labelledby="workflows-${this.tenantId}">
          <h3 id="workflows-${this.tenantId}">Workflows this period</h3>
          ${this.#renderWorkflows()}
        </section>
        <section class="card" aria-labelledby="alerts-${this.tenantId}">
          <h3 id="alerts-${this.tenantId}">Alerts</h3>
          ${this.#renderAlerts()}
        </section>
      </div>
      <section class="card" aria-labelledby="history-${this.tenantId}">
        <h3 id="history-${this.tenantId}">Billing periods</h3>
        ${this.#renderHistory()}
      </section>
    `;
  }

  #state<T>(loaded: Loaded<T>, empty: string, rows: (rows: T[]) => unknown) {
    if (loaded.kind === 'loading') return html`<p class="muted" role="status">Loading…</p>`;
    if (loaded.kind === 'error') return html`<p class="error" role="alert">${loaded.message}</p>`;
    if (loaded.rows.length === 0) return html`<p class="empty">${empty}</p>`;
    return rows(loaded.rows);
  }

  #renderWorkflows() {
    const f = this.#format;
    return this.#state(
      this.workflows,
      'No workflow has run in this period yet.',
      (rows) => html`<div class="table-wrap"><table class="workflows">
        <thead><tr><th scope="col">Workflow</th><th scope="col">Executions</th><th scope="col">Success rate</th>
          <th scope="col">Avg duration</th><th scope="col">Total time</th></tr></thead>
        <tbody>${[...rows]
          .sort((a, b) => b.executions - a.executions || a.workflowId.localeCompare(b.workflowId))
          .map(
            (w) => html`<tr data-workflow=${w.workflowId}>
              <th scope="row"><code>${w.workflowId}</code></th>
              <td data-metric="executions">${f.count(w.executions)}</td>
              <td data-metric="success-rate">
                <span class="rate ${w.successRate < 0.9 ? 'low' : ''}">${f.percent(w.successRate * 100)}</span></td>
              <td data-metric="avg-duration">${f.duration(w.avgDurationMs)}</td>
              <td data-metric="total-duration">${f.duration(w.totalDurationMs)}</td>
            </tr>`,
          )}</tbody></table></div>`,
    );
  }

  #renderAlerts() {
    const f = this.#format;
    return this.#state(
      this.alerts,
      'No alerts. You are told here when usage reaches the plan’s thresholds.',
      (rows) =>
        html`<ul class="alerts">${alertsUnreadFirst(rows).map(
          (a) => html`<li class=${a.readAt ? 'read' : 'unread'} data-alert=${a.id}>
          <div>
            <strong>${a.threshold} % of the quota reached</strong>
            <span class="muted">${f.count(a.used)} of ${f.counted(a.quota, 'execution')} · ${f.dateTime(a.createdAt)}</span>
            ${
              this.markFailure?.alertId === a.id
                ? html`<p class="error mark-failure" role="alert">Not marked as read: ${this.markFailure.message}</p>`
                : nothing
            }
          </div>
          ${
            a.readAt
              ? html`<span class="muted read-mark">Read</span>`
              : html`<button type="button" class="secondary" ?disabled=${this.marking === a.id}
                  @click=${() => this.#markRead(a)}
                  aria-label=${`Mark as read: ${a.threshold} % alert`}>Mark as read</button>`
          }
        </li>`,
        )}</ul>`,
    );
  }

  #renderHistory() {
    return this.#state(this.history, 'No billing period has usage yet.', (rows) =>
      historyTable(rows, this.#format),
    );
  }
}

if (!customElements.get('flowmeter-tenant-panel'))
  customElements.define('flowmeter-tenant-panel', TenantPanel);
