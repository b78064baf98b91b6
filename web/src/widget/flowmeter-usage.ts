import {
  CategoryScale,
  Chart,
  Filler,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from 'chart.js';
import { css, html, LitElement, nothing, type PropertyValues } from 'lit';
import { noun } from '../../../src/domain/words.ts';
import {
  type DailyUsage,
  getDailyUsage,
  getInvoicePreview,
  getUsageSummary,
  type InvoicePreview,
  type UsageDb,
  type UsageSummary,
} from '../../../src/usage-client/index.ts';
import { loadErrorMessage } from '../errors.ts';
import { type Formatter, formatter } from '../format.ts';
import { listenWhileConnected } from '../light-element.ts';
import {
  LEVEL_LABEL,
  meterShares,
  type PeriodSeries,
  periodSeries,
  toUsageView,
  type UsageView,
} from './usage-view.ts';

Chart.register(
  LineController,
  LineElement,
  PointElement,
  LinearScale,
  CategoryScale,
  Tooltip,
  Legend,
  Filler,
);

const POLICY_LABEL = {
  hard_limit: 'Hard limit',
  overage: 'Overage billed',
  unlimited: 'Unlimited',
};

/** Subscriptions Stripe can preview an invoice for (the others have none to show). */
const PREVIEWABLE = new Set(['trialing', 'active', 'past_due', 'unpaid', 'paused']);

interface Ready {
  kind: 'ready';
  view: UsageView;
  series: PeriodSeries;
  /** Stripe's upcoming invoice as the server last fetched it; none without a subscription. */
  preview: InvoicePreview | undefined;
  /** Why Stripe's preview is older than it should be, if it is. */
  previewNote: string | undefined;
  loadedAt: Date;
  /** The last refresh failed: the numbers shown are from `loadedAt`. */
  stale: string | undefined;
}

type State = { kind: 'loading' } | { kind: 'error'; message: string } | { kind: 'empty' } | Ready;

/**
 * `<flowmeter-usage>`: a tenant's current billing period — used of quota with reserved
 * runs apart, level, overage and its estimated cost, days left, whether runs are blocked —
 * and a daily chart of this period against the previous one.
 *
 * Give it a signed-in supabase-js client (`client` property) and a `tenant-id`; it reads
 * the tenant usage API as that user. It refreshes every `refresh-interval` seconds
 * (default 30; 0: only when `refresh()` is called) and when the tab becomes visible. A
 * page that has read the summary already passes the tenant's row as `summary`; the widget
 * then reads only the rest, and loads when the page calls `refresh()`. With an
 * `invoice-preview-url` (the invoice-preview function) it asks the server to refresh
 * Stripe's invoice preview before reading it. Theme it with the `--flowmeter-*` custom
 * properties below.
 *
 * Events: `flowmeter-usage-loaded` (detail: the UsageSummary) after every refresh that
 * succeeded; `flowmeter-usage-error` (detail: { message, expired }) after one that failed.
 */
export class FlowmeterUsage extends LitElement {
  static override properties = {
    client: { attribute: false },
    tenantId: { attribute: 'tenant-id' },
    refreshInterval: { attribute: 'refresh-interval', type: Number },
    usage: { attribute: false },
    summary: { attribute: false },
    invoicePreviewUrl: { attribute: 'invoice-preview-url' },
    locale: {},
    state: { state: true },
  };

  static override styles = css`
    :host {
      --_bg: var(--flowmeter-background, #ffffff);
      --_fg: var(--flowmeter-foreground, #172033);
      --_muted: var(--flowmeter-muted, #525d70);
      --_border: var(--flowmeter-border, #e1e5ec);
      --_radius: var(--flowmeter-radius, 12px);
      --_track: var(--flowmeter-track, #edf0f5);
      --_normal: var(--flowmeter-level-normal, #1f8a5b);
      --_warning: var(--flowmeter-level-warning, #b86e00);
      --_limit: var(--flowmeter-level-limit, #c2410c);
      --_overage: var(--flowmeter-level-overage, #b42318);
      --_reserved: var(--flowmeter-reserved, #8aa2c8);
      display: block;
      font-family: var(--flowmeter-font, system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif);
      color: var(--_fg);
      background: var(--_bg);
      border: 1px solid var(--_border);
      border-radius: var(--_radius);
      padding: 20px 24px;
      box-sizing: border-box;
    }
    header { display: flex; justify-content: space-between; align-items: flex-start; gap: 16px; flex-wrap: wrap; }
    h2 { margin: 0; font-size: 1.15rem; font-weight: 650; }
    .sub { margin: 4px 0 0; color: var(--_muted); font-size: 0.875rem; }
    .level { display: inline-flex; align-items: center; gap: 6px; padding: 4px 10px; border-radius: 999px;
      font-size: 0.8125rem; font-weight: 600; background: color-mix(in srgb, var(--_level) 12%, var(--_bg));
      color: color-mix(in srgb, var(--_level) 85%, #000); white-space: nowrap; }
    .level::before { content: ''; width: 8px; height: 8px; border-radius: 50%; background: var(--_level); }
    .normal { --_level: var(--_normal); }
    .warning { --_level: var(--_warning); }
    .limit { --_level: var(--_limit); }
    .overage { --_level: var(--_overage); }
    .usage { margin: 20px 0 8px; display: flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
    .used { font-size: 2rem; font-weight: 700; letter-spacing: -0.02em; font-variant-numeric: tabular-nums; }
    .quota { color: var(--_muted); font-size: 1rem; }
    .reserved-note { color: var(--_muted); font-size: 0.875rem; }
    .meter { position: relative; display: flex; height: 10px; border-radius: 999px; background: var(--_track); overflow: hidden; }
    .meter .fill { background: var(--_level); }
    .meter .res { background: repeating-linear-gradient(45deg, var(--_reserved), var(--_reserved) 3px,
      color-mix(in srgb, var(--_reserved) 60%, var(--_bg)) 3px, color-mix(in srgb, var(--_reserved) 60%, var(--_bg)) 6px); }
    dl { display: grid; grid-template-columns: repeat(auto-fit, minmax(140px, 1fr)); gap: 12px; margin: 20px 0 0; }
    dl div { border: 1px solid var(--_border); border-radius: calc(var(--_radius) * 0.66); padding: 10px 12px; }
    dt { color: var(--_muted); font-size: 0.75rem; text-transform: uppercase; letter-spacing: 0.04em; font-weight: 600; }
    dd { margin: 4px 0 0; font-size: 1.05rem; font-weight: 600; font-variant-numeric: tabular-nums; }
    dd.text { font-size: 0.95rem; }
    dd small { display: block; color: var(--_muted); font-weight: 400; font-size: 0.8125rem; margin-top: 2px; }
    .blocked { color: var(--_overage); }
    h3 { margin: 24px 0 8px; font-size: 0.9375rem; font-weight: 600; }
    .chart { position: relative; height: var(--flowmeter-chart-height, 220px); }
    details { margin-top: 8px; font-size: 0.875rem; color: var(--_muted); }
    summary { cursor: pointer; }
    table { border-collapse: collapse; margin-top: 8px; width: 100%; color: var(--_fg); }
    th, td { text-align: right; padding: 4px 8px; border-bottom: 1px solid var(--_border); font-variant-numeric: tabular-nums; }
    th:first-child, td:first-child { text-align: left; }
    .state { color: var(--_muted); padding: 24px 0; text-align: center; }
    .state.error { color: var(--_overage); }
    button { font: inherit; border: 1px solid var(--_border); background: var(--_bg); color: var(--_fg);
      border-radius: 8px; padding: 6px 12px; cursor: pointer; margin-left: 8px; }
    .skeleton { height: 14px; border-radius: 6px; background: var(--_track); margin: 12px 0; }
    .stale { margin: 0 0 12px; padding: 8px 12px; border-radius: calc(var(--_radius) * 0.66);
      background: color-mix(in srgb, var(--_warning) 10%, var(--_bg)); color: var(--_fg); font-size: 0.875rem; }
    dd small.note { color: var(--_fg); }
  `;

  declare client: UsageDb | undefined;
  declare tenantId: string | undefined;
  declare refreshInterval: number;
  /**
   * Numbers read elsewhere (the operator console reads them through its own RPC): shown as
   * given, and the widget reads nothing itself.
   */
  declare usage: { summary: UsageSummary; daily: DailyUsage[] } | undefined;
  /** The tenant's summary row as the page read it; the widget reads it itself without. */
  declare summary: UsageSummary | undefined;
  declare invoicePreviewUrl: string | undefined;
  declare locale: string | undefined;
  declare state: State;

  #chart: Chart<'line', number[], string> | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #format: Formatter = formatter();
  #loading: Promise<void> | undefined;
  #again = false;
  #onVisible = () => {
    if (document.visibilityState === 'visible' && this.refreshInterval > 0) void this.refresh();
  };

  constructor() {
    super();
    this.refreshInterval = 30;
    this.state = { kind: 'loading' };
    listenWhileConnected(this, document, 'visibilitychange', this.#onVisible);
  }

  /** The chart.js instance, for an embedder who wants to adjust its options. */
  get chart(): Chart<'line', number[], string> | undefined {
    return this.#chart;
  }

  override disconnectedCallback(): void {
    super.disconnectedCallback();
    clearInterval(this.#timer);
    this.#chart?.destroy();
    this.#chart = undefined;
  }

  protected override willUpdate(changed: PropertyValues<this>): void {
    if (changed.has('locale')) this.#format = formatter(this.locale);
    if (changed.has('refreshInterval')) {
      clearInterval(this.#timer);
      this.#timer =
        this.refreshInterval > 0
          ? setInterval(() => {
              if (document.visibilityState === 'visible') void this.refresh();
            }, this.refreshInterval * 1000)
          : undefined;
    }
    if (changed.has('usage') && this.usage)
      this.#show(this.usage.summary, this.usage.daily, undefined, undefined);
    const pageDriven = this.summary !== undefined;
    if (
      (changed.has('client') || changed.has('tenantId')) &&
      this.client &&
      this.tenantId &&
      !pageDriven
    ) {
      void this.refresh();
    }
  }

  /**
   * Loads the summary and the daily series again. One load at a time: a call during a load
   * makes it load once more when done, so what it resolves with is never older than the call.
   */
  refresh(): Promise<void> {
    if (this.#loading) {
      this.#again = true;
      return this.#loading;
    }
    this.#loading = (async () => {
      do {
        this.#again = false;
        await this.#load();
      } while (this.#again);
    })().finally(() => {
      this.#loading = undefined;
    });
    return this.#loading;
  }

  /**
   * Asks the invoice-preview function, as the signed-in user, to refresh Stripe's preview
   * when it is old; says why it could not, if it could not.
   */
  async #refreshPreview(client: UsageDb, tenantId: string): Promise<string | undefined> {
    const url = this.invoicePreviewUrl;
    if (!url) return undefined;
    const token = (await client.auth.getSession()).data.session?.access_token;
    if (!token) return undefined;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ tenant_id: tenantId }),
      });
      if (!response.ok) return `Stripe's preview could not be refreshed (HTTP ${response.status}).`;
      const body = (await response.json()) as { refresh_error?: string | null };
      return body.refresh_error ? 'Stripe did not answer; this is its last preview.' : undefined;
    } catch {
      return "Stripe's preview could not be refreshed: the service cannot be reached.";
    }
  }

  async #preview(
    client: UsageDb,
    summary: UsageSummary,
  ): Promise<{ preview: InvoicePreview | undefined; note: string | undefined }> {
    if (!PREVIEWABLE.has(summary.subscriptionStatus))
      return { preview: undefined, note: undefined };
    const note = await this.#refreshPreview(client, summary.tenantId);
    const { data, error } = await getInvoicePreview(client, summary.tenantId);
    if (error) return { preview: undefined, note: loadErrorMessage(error).message };
    return { preview: data[0], note };
  }

  async #load(): Promise<void> {
    const { client, tenantId } = this;
    if (!client || !tenantId) return;
    const given = this.summary;
    const [summary, daily] = await Promise.all([
      given ? { data: [given], error: null } : getUsageSummary(client, tenantId),
      getDailyUsage(client, { tenantId }),
    ]);
    const error = summary.error ?? daily.error;
    if (error) {
      const failure = loadErrorMessage(error);
      // Numbers already on screen stay, with a note that they are not current.
      this.state =
        this.state.kind === 'ready'
          ? { ...this.state, stale: failure.message }
          : { kind: 'error', message: failure.message };
      this.dispatchEvent(
        new CustomEvent('flowmeter-usage-error', {
          detail: failure,
          bubbles: true,
          composed: true,
        }),
      );
      return;
    }
    const row = summary.data?.[0];
    if (!row) {
      this.state = { kind: 'empty' };
      return;
    }
    const { preview, note } = await this.#preview(client, row);
    this.#show(row, daily.data ?? [], preview, note);
    this.dispatchEvent(
      new CustomEvent('flowmeter-usage-loaded', { detail: row, bubbles: true, composed: true }),
    );
  }

  #show(
    row: UsageSummary,
    days: DailyUsage[],
    preview: InvoicePreview | undefined,
    previewNote: string | undefined,
  ): void {
    this.state = {
      kind: 'ready',
      view: toUsageView(row, new Date()),
      series: periodSeries(days, row.periodStart, row.periodEnd),
      preview,
      previewNote,
      loadedAt: new Date(),
      stale: undefined,
    };
  }

  protected override updated(): void {
    const canvas = this.renderRoot.querySelector('canvas');
    if (this.state.kind !== 'ready' || !canvas) {
      this.#chart?.destroy();
      this.#chart = undefined;
      return;
    }
    this.#drawChart(canvas, this.state.series);
  }

  #drawChart(canvas: HTMLCanvasElement, series: PeriodSeries): void {
    const style = getComputedStyle(this);
    const color = (name: string, fallback: string) =>
      style.getPropertyValue(name).trim() || fallback;
    const current = color('--flowmeter-chart-current', '#3b5bdb');
    const fill = color('--flowmeter-chart-fill', 'rgba(59, 91, 219, 0.12)');
    const previous = color('--flowmeter-chart-previous', '#9aa5b8');
    const muted = color('--flowmeter-muted', '#525d70');
    const grid = color('--flowmeter-border', '#e1e5ec');
    const f = this.#format;
    if (this.#chart && this.#chart.canvas !== canvas) {
      this.#chart.destroy();
      this.#chart = undefined;
    }
    const datasets = [
      {
        label: 'This period',
        data: series.current.map((d) => d.billable),
        borderColor: current,
        backgroundColor: fill,
        fill: true,
        tension: 0.3,
        pointRadius: 2.5,
        pointHoverRadius: 5,
        borderWidth: 2,
      },
      {
        label: 'Previous period',
        data: series.previous.map((d) => d.billable),
        borderColor: previous,
        backgroundColor: previous,
        borderDash: [5, 4],
        fill: false,
        tension: 0.3,
        pointRadius: 0,
        pointHoverRadius: 4,
        borderWidth: 1.5,
      },
    ];
    if (this.#chart) {
      this.#chart.data.labels = series.labels;
      this.#chart.data.datasets.forEach((dataset, i) => {
        dataset.data = datasets[i]?.data ?? [];
      });
      this.#chart.update('none');
      return;
    }
    this.#chart = new Chart(canvas, {
      type: 'line',
      data: { labels: series.labels, datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: 'index', intersect: false },
        scales: {
          x: {
            grid: { display: false },
            ticks: { color: muted, maxTicksLimit: 8, autoSkip: true },
          },
          y: { beginAtZero: true, grid: { color: grid }, ticks: { color: muted, precision: 0 } },
        },
        plugins: {
          legend: {
            position: 'bottom',
            align: 'end',
            labels: { color: muted, boxWidth: 12, boxHeight: 2 },
          },
          tooltip: {
            callbacks: {
              title: (items) => items[0]?.label ?? '',
              label: (item) => {
                const points = item.datasetIndex === 0 ? series.current : series.previous;
                const point = points[item.dataIndex];
                if (!point) return '';
                return `${item.dataset.label} (${f.day(point.day)}): ${f.count(point.billable)} billable of ${f.count(point.executions)}, ${f.count(point.failed)} failed`;
              },
            },
          },
        },
      },
    });
  }

  protected override render() {
    const s = this.state;
    if (s.kind === 'loading') {
      return html`<div role="status" aria-live="polite" class="state">
        <span>Loading usage…</span>
        <div class="skeleton"></div><div class="skeleton" style="width:60%"></div>
      </div>`;
    }
    if (s.kind === 'error') {
      return html`<div role="alert" class="state error">${s.message}<button @click=${() => this.refresh()}>Retry</button></div>`;
    }
    if (s.kind === 'empty') {
      return html`<p class="state">No usage is visible for this tenant with your account.</p>`;
    }
    return this.#renderReady(s);
  }

  /** Stripe's upcoming invoice beside flowmeter's estimate; nothing without a subscription. */
  #renderInvoice(s: Ready) {
    const f = this.#format;
    const p = s.preview;
    const note = s.previewNote ? html`<small class="note">${s.previewNote}</small>` : nothing;
    if (!p)
      return s.previewNote
        ? html`<div><dt>Upcoming invoice (Stripe)</dt><dd class="text">Not available${note}</dd></div>`
        : nothing;
    if (p.status === 'none') {
      return html`<div><dt>Upcoming invoice (Stripe)</dt><dd class="text" data-metric="invoice-total">None
        <small>Stripe has nothing to invoice</small>${note}</dd></div>`;
    }
    const currency = p.currency ?? s.view.currency;
    return html`<div><dt>Upcoming invoice (Stripe)</dt><dd><span data-metric="invoice-total">${f.money(p.total ?? 0, currency)}</span>
      <small><span data-metric="invoice-usage">${f.counted(p.usageQuantity ?? 0, 'execution')} for ${f.money(p.usageAmount ?? 0, currency)}</span>
        · as of <time datetime=${p.fetchedAt}>${f.time(new Date(p.fetchedAt))}</time></small>${note}</dd></div>`;
  }

  #renderReady(s: Ready) {
    const { view: v, series } = s;
    const f = this.#format;
    const shares = meterShares(v);
    const limitText =
      v.limitPolicy === 'hard_limit'
        ? 'Runs are blocked'
        : v.limitPolicy === 'overage'
          ? 'Runs go on, billed as overage'
          : 'No limit';
    return html`
      ${
        s.stale
          ? html`<p class="stale" role="status" data-metric="stale">Not refreshed: ${s.stale}
              The numbers are from <time datetime=${s.loadedAt.toISOString()}>${f.time(s.loadedAt)}</time>.</p>`
          : nothing
      }
      <header>
        <div>
          <h2>${v.tenantName}</h2>
          <p class="sub">
            ${v.planName} · ${POLICY_LABEL[v.limitPolicy]} · ${f.period(v.periodStart, v.periodEnd)} ·
            <span data-metric="days-left">${f.counted(v.daysLeft, 'day')} left</span>
          </p>
        </div>
        <span class="level ${v.level}" data-metric="level" data-level=${v.level}>
          ${LEVEL_LABEL[v.level]}${v.percent === null ? nothing : html` · ${f.percent(v.percent)}`}
        </span>
      </header>
      <div class="usage">
        <span class="used" data-metric="used">${f.count(v.used)}</span>
        <span class="quota">${v.quota === null ? `${noun(v.used, 'execution')} this period` : html`of <span data-metric="quota">${f.count(v.quota)}</span> ${noun(v.quota, 'execution')}`}</span>
        <span class="reserved-note">+ <span data-metric="reserved">${f.count(v.reserved)}</span> reserved (running, not collected yet)</span>
      </div>
      ${
        v.quota === null
          ? nothing
          : html`<div class="meter ${v.level}" role="meter" aria-label="Share of the quota used"
              aria-valuemin="0" aria-valuemax=${v.quota} aria-valuenow=${Math.min(v.used, v.quota)}
              aria-valuetext=${`${f.count(v.used)} of ${f.count(v.quota)} used, ${f.count(v.reserved)} reserved`}>
              <span class="fill" style="width:${shares.used}%"></span>
              <span class="res" style="width:${shares.reserved}%"></span>
            </div>`
      }
      <dl>
        <div><dt>Remaining</dt><dd data-metric="remaining">${v.remaining === null ? 'Unlimited' : f.count(v.remaining)}</dd></div>
        <div><dt>Overage so far</dt><dd><span data-metric="overage">${f.count(v.overageUnits)}</span>
          <small>${noun(v.overageUnits, 'execution')} over the quota</small></dd></div>
        <div><dt>Estimated overage cost</dt><dd data-metric="overage-cost">${f.money(v.overageAmount, v.currency)}</dd></div>
        ${this.#renderInvoice(s)}
        <div><dt>At the limit</dt><dd data-metric="at-limit" class="text ${v.blockedNow ? 'blocked' : ''}">${limitText}
          <small>${v.blockedNow ? 'The limit is reached: new runs are refused now' : v.limitPolicy === 'hard_limit' ? 'Not reached: runs are allowed' : ''}</small></dd></div>
      </dl>
      <h3>Daily billable executions: this period and the previous one</h3>
      <div class="chart">
        <canvas role="img" aria-label=${`Daily billable executions, ${f.counted(series.current.length, 'day')} of this period against the previous period`}></canvas>
      </div>
      <details>
        <summary>Daily numbers</summary>
        <table>
          <thead><tr><th scope="col">Day</th><th scope="col">Billable</th><th scope="col">Executions</th><th scope="col">Failed</th><th scope="col">Previous period</th></tr></thead>
          <tbody>
            ${series.current.map(
              (
                d,
                i,
              ) => html`<tr data-day=${d.day}><td>${f.day(d.day)}</td><td>${f.count(d.billable)}</td>
                <td>${f.count(d.executions)}</td><td>${f.count(d.failed)}</td>
                <td>${series.previous[i] ? f.count(series.previous[i].billable) : '—'}</td></tr>`,
            )}
          </tbody>
        </table>
      </details>
    `;
  }
}

if (!customElements.get('flowmeter-usage'))
  customElements.define('flowmeter-usage', FlowmeterUsage);

declare global {
  interface HTMLElementTagNameMap {
    'flowmeter-usage': FlowmeterUsage;
  }
}
