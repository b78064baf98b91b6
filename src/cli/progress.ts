import { MultiBar, Presets } from 'cli-progress';
import { noun, plural } from '../domain/words.ts';
import type { CliIo } from './context.ts';

/**
 * Progress of long work on stderr, so stdout stays clean for --json: a bar when stderr is
 * a terminal; otherwise (CI, a pipe, a log file) a plain line at every tenth of the way,
 * which reads well in a log where a redrawn bar would not.
 */
export interface Progress {
  /** Counting towards `total` items of `unit`, e.g. 12 sources. */
  start(total: number): void;
  /** One more item done; `detail` is shown after the count. */
  increment(detail?: string): void;
  /** `items` more done at once (a page of rows). */
  advance(items: number): void;
  /** A line of its own, above the bar. */
  line(text: string): void;
  stop(): void;
}

export const isTerminal = (io: Pick<CliIo, 'stderr'>) => io.stderr?.isTTY === true;

/**
 * `unit` is singular ("source"); counts of it read "1 source", "3 sources", "2/3 sources",
 * "1/1 source": the noun goes with the total.
 */
export function createProgress(
  io: Pick<CliIo, 'err' | 'stderr'>,
  label: string,
  unit: string,
): Progress {
  return isTerminal(io) && io.stderr
    ? terminalProgress(io.stderr, label, unit)
    : lineProgress(io, label, unit);
}

function terminalProgress(
  stream: NonNullable<CliIo['stderr']>,
  label: string,
  unit: string,
): Progress {
  const bars = new MultiBar(
    {
      stream,
      format: `${label} [{bar}] {value}/{total} {unit} {detail}`,
      barsize: 30,
      hideCursor: true,
      // Ctrl-C while drawing gives the cursor back.
      gracefulExit: true,
      autopadding: true,
    },
    Presets.shades_classic,
  );
  let bar: ReturnType<MultiBar['create']> | undefined;
  return {
    start(total) {
      bar = bars.create(total, 0, { detail: '', unit: noun(total, unit) });
    },
    increment(detail = '') {
      bar?.increment(1, { detail });
    },
    advance(items) {
      bar?.increment(items);
    },
    line(text) {
      if (bars.isActive) bars.log(`${text}\n`);
      else stream.write(`${text}\n`);
    },
    stop() {
      if (!bars.isActive) return;
      // Lines logged since the last redraw are written by a redraw, which stop() skips.
      bars.update();
      bars.stop();
    },
  };
}

function lineProgress(io: Pick<CliIo, 'err'>, label: string, unit: string): Progress {
  let total = 0;
  let done = 0;
  let nextStep = 1;
  const advance = (items: number, detail?: string) => {
    done += items;
    if (total === 0 || done * 10 < nextStep * total) return;
    while (done * 10 >= nextStep * total) nextStep += 1;
    io.err(`${label}: ${done}/${total} ${noun(total, unit)}${detail ? ` ${detail}` : ''}`);
  };
  return {
    start(n) {
      total = n;
      io.err(`${label}: ${plural(n, unit)}`);
    },
    increment(detail) {
      advance(1, detail);
    },
    advance(items) {
      advance(items);
    },
    line(text) {
      io.err(text);
    },
    stop() {},
  };
}
