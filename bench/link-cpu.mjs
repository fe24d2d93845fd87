// CPU cost of the heartbeat link (runtime/channel/heartbeat.ts): a primary's and a backup's
// link in this one process, keyed alike, beating each other over loopback for 10 s; then the
// same 10 s without links. Prints the process's CPU time for each (user + system).
//   node bench/link-cpu.mjs [beatMs]      (needs `npm run build`)
import { pathToFileURL } from 'node:url';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const { HeartbeatLink } = await import(pathToFileURL(join(root, 'dist/runtime/channel/heartbeat.js')).href);
const beatMs = Number(process.argv[2] ?? 5);
const keyed = { exportKey: (_label, n) => Buffer.alloc(n, 7) };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const cpu10s = async () => {
  await sleep(500);
  const c0 = process.cpuUsage();
  await sleep(10_000);
  const c = process.cpuUsage(c0);
  return Math.round((c.user + c.system) / 1000);
};
const p = new HeartbeatLink({ role: 'primary', host: '127.0.0.1', port: 0, beatMs, say: () => {} });
const r = await p.ready;
const b = new HeartbeatLink({ role: 'backup', host: '127.0.0.1', port: r.port, beatMs, say: () => {} });
await b.ready;
p.watch(keyed, Promise.resolve());
b.watch(keyed, Promise.resolve());
const withLinks = await cpu10s();
const stats = [p.stats(), b.stats()];
p.close();
b.close();
const without = await cpu10s();
console.log(`heartbeat link, beats every ${beatMs} ms: two links ${withLinks} ms of CPU in 10 s (beats sent/heard ${stats.map((s) => `${s.sent}/${s.heard}`).join(', ')}); without links ${without} ms`);
process.exit(0);
