import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU time spent by the benchmark's three parties: this process (load generator, handler,
 * supabase-js), the stack process (the RPC endpoint) and PostgreSQL (every process below
 * the stack process). Read from /proc, so Linux only; elsewhere `cpuProbe` returns null.
 */
export interface CpuSample {
  client: number;
  rpc: number;
  postgres: number;
}

/** /proc/<pid>/stat: [ppid, utime + stime in clock ticks], or null once the process is gone. */
function stat(pid: number): [number, number] | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return [Number(fields[1]), Number(fields[11]) + Number(fields[12])];
  } catch {
    return null;
  }
}

/** Linux reports /proc times in USER_HZ, which is 100 on every architecture it runs on. */
const MS_PER_TICK = 10;

export function cpuProbe(stackPid: number): (() => CpuSample) | null {
  if (stat(process.pid) === null) return null;
  return () => {
    const children = new Map<number, number[]>();
    let postgres = 0;
    const ticks = new Map<number, number>();
    for (const entry of readdirSync('/proc')) {
      const pid = Number(entry);
      if (!Number.isInteger(pid)) continue;
      const s = stat(pid);
      if (!s) continue;
      ticks.set(pid, s[1]);
      children.set(s[0], [...(children.get(s[0]) ?? []), pid]);
    }
    const below = [...(children.get(stackPid) ?? [])];
    while (below.length > 0) {
      const pid = below.pop() as number;
      postgres += ticks.get(pid) ?? 0;
      below.push(...(children.get(pid) ?? []));
    }
    const own = process.cpuUsage();
    return {
      client: (own.user + own.system) / 1000,
      rpc: (ticks.get(stackPid) ?? 0) * MS_PER_TICK,
      postgres: postgres * MS_PER_TICK,
    };
  };
}
