// `node --import ./bin/ts-loader.mjs file.ts`: runs the lab's TypeScript modules (ESM,
// imports with .ts extensions) without tsx's keepNames; stack traces point into the .ts
// files through inline source maps.
import { register } from 'node:module';

process.setSourceMapsEnabled(true);
register('./ts-hooks.mjs', import.meta.url);
