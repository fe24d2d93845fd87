#!/usr/bin/env node
// The CLI is compiled by `npm run build` (run by `prepare` on `npm ci`).
import { main } from '../dist/runtime/cli.js';
main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
