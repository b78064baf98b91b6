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

/** One process as /proc/<pid>/stat shows it; `started` tells a reused pid from its first owner. */
export interface ProcessTimes {
  pid: number;
  ppid: number;
  started: number;
  ticks: number;
}

/** Where the probe reads processes from: /proc by default, a fixture in tests. */
export interface ProcessTable {
  list(): ProcessTimes[];
  /** CPU milliseconds of this process, never decreasing. */
  ownMs(): number;
}

/** /proc/<pid>/stat: ppid, start time and utime + stime in clock ticks, or null once gone. */
function stat(pid: number): ProcessTimes | null {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return {
      pid,
      ppid: Number(fields[1]),
      started: Number(fields[19]),
      ticks: Number(fields[11]) + Number(fields[12]),
    };
  } catch {
    return null;
  }
}

const linuxProcesses: ProcessTable = {
  list: () =>
    readdirSync('/proc')
      .map(Number)
      .filter(Number.isInteger)
      .flatMap((pid) => stat(pid) ?? []),
  ownMs: () => {
    const own = process.cpuUsage();
    return (own.user + own.system) / 1000;
  },
};

/** Linux reports /proc times in USER_HZ, which is 100 on every architecture it runs on. */
const MS_PER_TICK = 10;

/**
 * Every sample is at least the one before, party by party. A process's ticks vanish from
 * /proc when it exits (PostgreSQL ends a backend with each closed connection) and a pid
 * can come back as another process: so each process, told apart by pid and start time, is
 * counted at the most it was ever seen at, exited ones included.
 */
export function cpuProbe(
  stackPid: number,
  processes: ProcessTable = linuxProcesses,
): (() => CpuSample) | null {
  if (!processes.list().some((p) => p.pid === stackPid)) return null;
  const seen = new Map<string, number>();
  const last: CpuSample = { client: 0, rpc: 0, postgres: 0 };
  let rpcTicks = 0;
  return () => {
    const table = processes.list();
    const children = new Map<number, ProcessTimes[]>();
    for (const p of table) children.set(p.ppid, [...(children.get(p.ppid) ?? []), p]);
    const below = [...(children.get(stackPid) ?? [])];
    while (below.length > 0) {
      const p = below.pop() as ProcessTimes;
      const key = `${p.pid}:${p.started}`;
      seen.set(key, Math.max(seen.get(key) ?? 0, p.ticks));
      below.push(...(children.get(p.pid) ?? []));
    }
    const stack = table.find((p) => p.pid === stackPid);
    rpcTicks = Math.max(rpcTicks, stack?.ticks ?? 0);
    let postgresTicks = 0;
    for (const ticks of seen.values()) postgresTicks += ticks;
    last.client = Math.max(last.client, processes.ownMs());
    last.rpc = rpcTicks * MS_PER_TICK;
    last.postgres = postgresTicks * MS_PER_TICK;
    return { ...last };
  };
}

/** CPU milliseconds per unit of work between two samples, by party; never below zero. */
export function cpuDelta(
  before: CpuSample | null | undefined,
  after: CpuSample | null | undefined,
  per: number,
): CpuSample | undefined {
  if (!before || !after || per <= 0) return undefined;
  const each = (party: keyof CpuSample) => Math.max(0, after[party] - before[party]) / per;
  return { client: each('client'), rpc: each('rpc'), postgres: each('postgres') };
}
