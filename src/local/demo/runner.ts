import { randomUUID } from 'node:crypto';
import type { N8nEmulator } from '../n8n-emulator.ts';

/**
 * A workflow runner for the demo: before every run it asks flowmeter's enforcement
 * endpoint, and only an allowed run happens in the tenant's n8n. Mostly production runs,
 * some manual ones (not billable), a few errors, and every so often a long run that stays
 * running and finishes later — the case the collector must still count.
 */
export interface DemoTenantTraffic {
  name: string;
  externalRef: string;
  n8n: N8nEmulator;
  runsPerMinute: number;
  workflows: string[];
}

export type RunnerEvent =
  | {
      type: 'blocked';
      tenant: string;
      reason: string;
      committed: number | null;
      limit: number | null;
    }
  | { type: 'allowed-again'; tenant: string }
  | { type: 'error'; tenant: string; message: string };

export function startDemoRunner(options: {
  enforceUrl: string;
  runnerSecret: string;
  tenants: DemoTenantTraffic[];
  speed: number;
  onEvent: (event: RunnerEvent) => void;
}): () => void {
  const timers: NodeJS.Timeout[] = [];
  // Run references are unique per run: enforce answers a repeated one as a retry.
  const session = randomUUID().slice(0, 8);
  for (const tenant of options.tenants) {
    let seq = 0;
    let blocked = false;
    const running: Array<{ id: string; until: number }> = [];
    const tick = async () => {
      seq += 1;
      const now = Date.now();
      for (let i = running.length - 1; i >= 0; i--) {
        const run = running[i] as { id: string; until: number };
        if (run.until <= now) {
          tenant.n8n.update(run.id, { status: 'success', stoppedAt: new Date(now).toISOString() });
          running.splice(i, 1);
        }
      }
      const workflowId = tenant.workflows[seq % tenant.workflows.length] as string;
      let response: Response;
      try {
        response = await fetch(options.enforceUrl, {
          method: 'POST',
          headers: {
            authorization: `Bearer ${options.runnerSecret}`,
            'content-type': 'application/json',
          },
          body: JSON.stringify({
            tenant: tenant.externalRef,
            workflowId,
            runRef: `demo-${session}-${seq}`,
          }),
        });
      } catch (error) {
        options.onEvent({ type: 'error', tenant: tenant.name, message: (error as Error).message });
        return;
      }
      let decision: { allowed?: boolean; reason?: string; committed?: number; limit?: number };
      try {
        decision = (await response.json()) as typeof decision;
      } catch {
        options.onEvent({
          type: 'error',
          tenant: tenant.name,
          message: `enforce answered ${response.status} without JSON`,
        });
        return;
      }
      if (response.status === 402) {
        if (!blocked) {
          blocked = true;
          options.onEvent({
            type: 'blocked',
            tenant: tenant.name,
            reason: decision.reason ?? 'blocked',
            committed: decision.committed ?? null,
            limit: decision.limit ?? null,
          });
        }
        return;
      }
      if (response.status !== 200) {
        options.onEvent({
          type: 'error',
          tenant: tenant.name,
          message: `enforce answered ${response.status}`,
        });
        return;
      }
      if (blocked) {
        blocked = false;
        options.onEvent({ type: 'allowed-again', tenant: tenant.name });
      }
      const roll = seq % 20;
      if (roll === 7) {
        const { id } = tenant.n8n.add({
          status: 'running',
          mode: 'trigger',
          workflowId,
          startedAt: new Date(now).toISOString(),
        });
        running.push({ id, until: now + 90_000 / options.speed });
        return;
      }
      tenant.n8n.add({
        status: roll === 3 ? 'error' : 'success',
        mode: roll === 5 ? 'manual' : roll % 2 ? 'webhook' : 'trigger',
        workflowId,
        startedAt: new Date(now - 500).toISOString(),
        stoppedAt: new Date(now).toISOString(),
      });
    };
    // One request in flight per tenant, at most two a second: the local functions server
    // runs invocations one by one, and the demo is about behaviour, not load.
    const every = Math.max(500, 60_000 / (tenant.runsPerMinute * options.speed));
    let busy = false;
    timers.push(
      setInterval(() => {
        if (busy) return;
        busy = true;
        tick()
          .catch((error: unknown) =>
            options.onEvent({ type: 'error', tenant: tenant.name, message: String(error) }),
          )
          .finally(() => {
            busy = false;
          });
      }, every),
    );
  }
  return () => {
    for (const timer of timers) clearInterval(timer);
  };
}
