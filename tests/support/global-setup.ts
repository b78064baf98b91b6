import type { TestProject } from 'vitest/node';
import { type LocalStackInfo, startLocalStack } from '../../src/local/stack.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    stack: LocalStackInfo;
  }
}

export default async function setup(project: TestProject) {
  const stack = await startLocalStack();
  project.provide('stack', {
    supabaseUrl: stack.supabaseUrl,
    anonKey: stack.anonKey,
    serviceRoleKey: stack.serviceRoleKey,
    jwtSecret: stack.jwtSecret,
    databaseUrl: stack.databaseUrl,
  });
  return () => stack.stop();
}
