// How the lab runs one of its TypeScript modules as a process.
import { fileURLToPath } from 'node:url';

/**
 * Node options that load the lab's .ts modules: bin/ts-loader.mjs, which transpiles as tsx
 * does but without wrapping each named closure in a defineProperty call (a closure's
 * creation ≈ 650 ns under tsx against ≈ 3 ns, docs/performance.md). LAB_TS_LOADER=tsx
 * goes back to tsx, to compare.
 */
export const tsImport = (): string[] =>
  process.env.LAB_TS_LOADER === 'tsx' ? ['--import', 'tsx'] : ['--import', fileURLToPath(new URL('../../bin/ts-loader.mjs', import.meta.url))];
