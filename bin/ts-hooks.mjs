// Module hooks for the lab's own processes (see bin/ts-loader.mjs): each .ts file
// transpiled by esbuild as tsx would, but without keepNames, which wraps every named
// closure in a defineProperty call (≈ 0.4 µs each, many per I/O on the hot paths).
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { transform } from 'esbuild';

// What tsconfig.json says that changes emitted code; type checking is tsc's job.
const tsconfigRaw = { compilerOptions: { verbatimModuleSyntax: true, useDefineForClassFields: true } };

export async function load(url, context, next) {
  if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context);
  const file = fileURLToPath(url);
  const { code } = await transform(await readFile(file, 'utf8'), {
    loader: 'ts', format: 'esm', target: 'node20', sourcemap: 'inline', sourcefile: file, tsconfigRaw,
  });
  return { format: 'module', source: code, shortCircuit: true };
}
