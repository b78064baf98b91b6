import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Cron } from 'croner';
import { projectRoot } from './project.ts';

export interface ScheduledFunction {
  name: string;
  schedule: string;
}

/** Schedules as Netlify reads them: netlify.toml wins over the function's own config. */
export async function readSchedules(): Promise<ScheduledFunction[]> {
  const schedules = new Map<string, string>();
  const dir = join(projectRoot, 'netlify', 'functions');
  for (const file of await readdir(dir)) {
    const match = /schedule:\s*'([^']+)'/.exec(await readFile(join(dir, file), 'utf8'));
    if (match?.[1]) schedules.set(file.replace(/\.m?[jt]s$/, ''), match[1]);
  }
  const toml = await readFile(join(projectRoot, 'netlify.toml'), 'utf8');
  for (const match of toml.matchAll(/\[functions\."([^"]+)"\][^[]*?schedule\s*=\s*"([^"]+)"/g)) {
    schedules.set(match[1] as string, match[2] as string);
  }
  return [...schedules]
    .map(([name, schedule]) => ({ name, schedule }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

export interface SchedulerOptions {
  functionsUrl: string;
  functions: ScheduledFunction[];
  speed: number;
  /** Fire these once right away (so a demo shows something at once). */
  runAtStart?: string[];
  onResult: (name: string, result: { status: number; body: unknown; ms: number }) => void;
  onError: (name: string, error: Error) => void;
}

/**
 * Netlify's scheduler, locally: fires each scheduled function on its own cron schedule
 * (from its `config.schedule` or netlify.toml, in UTC) by POSTing {"next_run"} to the
 * functions server, as Netlify does. `speed` runs a virtual clock that many times faster,
 * so a 10-minute schedule fires every 10 s at speed 60.
 */
export function startScheduler(options: SchedulerOptions): () => void {
  const realStart = Date.now();
  const virtualNow = () => new Date(realStart + (Date.now() - realStart) * options.speed);
  const timers = new Set<NodeJS.Timeout>();
  let stopped = false;

  const fire = async (fn: ScheduledFunction, nextRun: Date | null) => {
    const started = Date.now();
    try {
      const response = await fetch(`${options.functionsUrl}/.netlify/functions/${fn.name}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ next_run: nextRun?.toISOString() ?? null }),
      });
      const text = await response.text();
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: keep the text
      }
      options.onResult(fn.name, { status: response.status, body, ms: Date.now() - started });
    } catch (error) {
      options.onError(fn.name, error as Error);
    }
  };

  for (const fn of options.functions) {
    const cron = new Cron(fn.schedule, { timezone: 'UTC', paused: true });
    const plan = () => {
      if (stopped) return;
      const next = cron.nextRun(virtualNow());
      if (!next) return;
      const delay = Math.max(0, (next.getTime() - virtualNow().getTime()) / options.speed);
      const timer = setTimeout(() => {
        timers.delete(timer);
        void fire(fn, cron.nextRun(next)).finally(plan);
      }, delay);
      timers.add(timer);
    };
    if (options.runAtStart?.includes(fn.name))
      void fire(fn, cron.nextRun(virtualNow())).finally(plan);
    else plan();
  }
  return () => {
    stopped = true;
    for (const timer of timers) clearTimeout(timer);
  };
}
