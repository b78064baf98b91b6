import type { Db } from '../db/client.ts';

export interface UsageWatchEvents {
  /** Collected usage moved: one line for every demo tenant. */
  usage: (line: string) => void;
  alert: (alert: { tenant: string; threshold: number; used: number; quota: number }) => void;
}

/**
 * Follows the demo tenants' usage and new alerts through the same RPCs the CLI and the
 * tenant pages read (list_tenants, tenant_alerts), polling once a second.
 */
export function watchUsage(db: Db, refs: string[], on: UsageWatchEvents): () => void {
  let last = '';
  let lastAlert: number | null = null;
  let stopped = false;
  const poll = async () => {
    const { data: tenants, error } = await db.rpc('list_tenants', { tenants: refs });
    if (error || !tenants) return;
    tenants.sort((a, b) => a.name.localeCompare(b.name));
    // Reservations move with every run; print when collected usage moves.
    const collected = tenants.map((t) => t.billable).join(',');
    if (collected !== last) {
      last = collected;
      on.usage(
        tenants
          .map(
            (t) =>
              // As the CLI shows it: live reservations only, the trial quota while trialing.
              `${t.name.replace(/ \(.*/, '')} ${t.billable}${t.quota ? `/${t.quota}` : ''}${Number(t.reserved) ? ` (+${t.reserved} reserved)` : ''}`,
          )
          .join(' · '),
      );
    }
    const alerts = [];
    for (const tenant of tenants) {
      const { data } = await db.rpc('tenant_alerts', { tenant_id: tenant.id, max_rows: 20 });
      for (const a of data ?? []) alerts.push({ ...a, tenant: tenant.name });
    }
    alerts.sort((a, b) => a.id - b.id);
    // Alerts from before the watch began are not news.
    if (lastAlert === null) {
      lastAlert = alerts.at(-1)?.id ?? 0;
      return;
    }
    for (const a of alerts) {
      if (a.id <= lastAlert) continue;
      lastAlert = a.id;
      on.alert({ tenant: a.tenant, threshold: a.threshold, used: a.used, quota: a.quota });
    }
  };
  const timer = setInterval(() => {
    if (!stopped) void poll().catch(() => {});
  }, 1000);
  return () => {
    stopped = true;
    clearInterval(timer);
  };
}
