/** The n8n emulator lives with the local tooling (npm start's demo serves it too). */
export * from '../../src/local/demo/n8n-double.ts';
export {
  N8nEmulator as FakeN8n,
  type N8nEmulatorOptions as FakeN8nOptions,
} from '../../src/local/demo/n8n-double.ts';
