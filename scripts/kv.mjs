#!/usr/bin/env node
// A command-line client of the kv guest (guests/kv/PROTOCOL.md), for trying a protected kv
// store by hand (README "Protect a name server on two hosts"). Each request is retried, with
// backoff, for about 15 s: long enough to ask through a takeover.
//   node scripts/kv.mjs HOST:PORT put KEY VALUE    prints "ok" once the PUT is acknowledged
//   node scripts/kv.mjs HOST:PORT get KEY          prints the value (exit 1 if there is none)
//   node scripts/kv.mjs HOST:PORT puts N [PREFIX]  PUTs PREFIX0=0 ... one at a time, a line
//                                                  "acked KEY" for each acknowledged one
//   node scripts/kv.mjs HOST:PORT check N [PREFIX] GETs them back: "N of N right" (exit 1 if not)
import { KvClient } from '../dist/runtime/clients/kv-client.js';

const [target, op, ...args] = process.argv.slice(2);
const m = /^([^:]+):(\d+)$/.exec(target ?? '');
const usage = 'usage: node scripts/kv.mjs HOST:PORT (put KEY VALUE | get KEY | puts N [PREFIX] | check N [PREFIX])';
const count = (text) => (/^\d+$/.test(text ?? '') ? Number(text) : undefined);
if (!m || !['put', 'get', 'puts', 'check'].includes(op) || (op === 'put' && args.length !== 2) || (op === 'get' && args.length !== 1)
  || ((op === 'puts' || op === 'check') && count(args[0]) === undefined)) {
  process.stderr.write(`${usage}\n`);
  process.exit(2);
}
const kv = new KvClient({ servers: [{ host: m[1], port: Number(m[2]) }], timeoutMs: 200, maxTimeoutMs: 2000, attemptsPerServer: 10 });
let code = 0;
try {
  if (op === 'put') {
    await kv.put(args[0], args[1]);
    console.log('ok');
  } else if (op === 'get') {
    const v = await kv.get(args[0]);
    if (v === undefined) code = 1;
    console.log(v === undefined ? '(none)' : v.toString());
  } else if (op === 'puts') {
    const prefix = args[1] ?? 'k';
    for (let i = 0; i < count(args[0]); i++) {
      await kv.put(`${prefix}${i}`, String(i));
      console.log(`acked ${prefix}${i}`);
    }
  } else {
    const prefix = args[1] ?? 'k';
    const n = count(args[0]);
    let right = 0;
    for (let i = 0; i < n; i++) {
      const v = await kv.get(`${prefix}${i}`);
      if (v?.toString() === String(i)) right++;
      else console.log(`${prefix}${i}: ${v === undefined ? 'missing' : `'${v.toString()}'`}`);
    }
    console.log(`${right} of ${n} right`);
    if (right !== n) code = 1;
  }
} catch (e) {
  process.stderr.write(`${e.message}\n`);
  code = 1;
} finally {
  kv.close();
}
process.exit(code);
