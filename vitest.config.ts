import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    // One throwaway local stack (PostgreSQL + RPC endpoint) for the whole run.
    globalSetup: ['tests/support/global-setup.ts'],
    // Two cores: two test files at a time; each isolates its data by fresh tenants.
    maxWorkers: 2,
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
});
