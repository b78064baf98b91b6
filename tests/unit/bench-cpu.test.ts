import { describe, expect, it } from 'vitest';
import { cpuDelta, cpuProbe, type ProcessTimes } from '../../bench/cpu.ts';

const STACK = 100;

/** A process table the test rewrites between samples, as the OS does between reads. */
function table(initial: ProcessTimes[], ownMs = 0) {
  const state = { processes: initial, ownMs };
  return { state, processes: { list: () => state.processes, ownMs: () => state.ownMs } };
}

const proc = (pid: number, ppid: number, ticks: number, started = pid): ProcessTimes => ({
  pid,
  ppid,
  started,
  ticks,
});

describe('cpuProbe', () => {
  it('keeps a backend that exited counted, so PostgreSQL time never goes down', () => {
    const { state, processes } = table([
      proc(STACK, 1, 50),
      proc(200, STACK, 10),
      proc(201, 200, 30),
      proc(202, 200, 40),
    ]);
    const probe = cpuProbe(STACK, processes);
    const before = probe?.();
    state.processes = [proc(STACK, 1, 60), proc(200, STACK, 12), proc(202, 200, 45)];
    const after = probe?.();
    expect(before?.postgres).toBe(800);
    expect(after?.postgres).toBe((12 + 30 + 45) * 10);
    expect(cpuDelta(before, after, 1)).toEqual({ client: 0, rpc: 100, postgres: 70 });
  });

  it('tells a reused pid from the process that had it', () => {
    const { state, processes } = table([proc(STACK, 1, 0), proc(300, STACK, 90, 1)]);
    const probe = cpuProbe(STACK, processes);
    const before = probe?.();
    state.processes = [proc(STACK, 1, 0), proc(300, STACK, 5, 2)];
    const after = probe?.();
    expect(cpuDelta(before, after, 1)?.postgres).toBe(50);
  });

  it('never reports a party lower than before, even if the OS resets its counter', () => {
    const { state, processes } = table([proc(STACK, 1, 70)], 500);
    const probe = cpuProbe(STACK, processes);
    const before = probe?.();
    state.processes = [proc(STACK, 1, 3)];
    state.ownMs = 400;
    const after = probe?.();
    expect(cpuDelta(before, after, 1)).toEqual({ client: 0, rpc: 0, postgres: 0 });
  });

  it('is unavailable when the stack process is not there to be read', () => {
    expect(cpuProbe(STACK, table([proc(7, 1, 0)]).processes)).toBeNull();
  });
});

describe('cpuDelta', () => {
  it('divides by the work done and clamps at zero', () => {
    expect(
      cpuDelta({ client: 10, rpc: 20, postgres: 30 }, { client: 30, rpc: 10, postgres: 90 }, 2),
    ).toEqual({ client: 10, rpc: 0, postgres: 30 });
    expect(cpuDelta(undefined, { client: 1, rpc: 1, postgres: 1 }, 1)).toBeUndefined();
  });
});

describe('cpuProbe on this machine', () => {
  it.runIf(process.platform === 'linux')('reads /proc and only ever grows', () => {
    const probe = cpuProbe(process.pid);
    const first = probe?.();
    let spin = 0;
    for (let i = 0; i < 1e6; i++) spin += i;
    expect(spin).toBeGreaterThan(0);
    const second = probe?.();
    expect(second?.client).toBeGreaterThanOrEqual(first?.client ?? Number.POSITIVE_INFINITY);
    expect(second?.rpc).toBeGreaterThanOrEqual(first?.rpc ?? Number.POSITIVE_INFINITY);
  });
});
