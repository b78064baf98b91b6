import { startLocalStack } from '../src/local/stack.ts';

/**
 * A throwaway local stack in its own process, as PostgREST runs apart from the functions
 * in production: the benchmark's load generator and handler do not share a thread with
 * the RPC endpoint. Prints the stack's connection info as one JSON line; SIGTERM stops it.
 */
const stack = await startLocalStack();
process.stdout.write(
  `${JSON.stringify({
    supabaseUrl: stack.supabaseUrl,
    anonKey: stack.anonKey,
    serviceRoleKey: stack.serviceRoleKey,
    jwtSecret: stack.jwtSecret,
    databaseUrl: stack.databaseUrl,
  })}\n`,
);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.removeAllListeners(signal);
  process.on(signal, () => {
    void stack.stop().then(() => process.exit(0));
  });
}
