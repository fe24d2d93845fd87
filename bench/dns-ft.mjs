// `node bench/dns-ft.mjs`: DNS queries/s of the dns guest without FT and with FT, same run.
// Needs `npm run build`; uses dnsperf when installed (`apt-get install dnsperf`).
//   without FT: `ftvm run guests/dns/dns.elf --disk FILE --net udp:PORT:53` (a child process);
//   with FT:    createPair({ image, disk, net }) from dist/ in a child process (this script with
//               --serve-ft), the backup in the same thread as the primary, or with
//               BENCH_DNS_BACKUP_IN=worker in a worker thread (the other core; it opens the
//               disk and the port itself at go-live), every query and answer going through the
//               log and the output rule.
// The load runs in this process: a Node UDP loop with N queries in flight for a few seconds
// per level, and dnsperf -q 32. Prints queries/s of both, their ratio, the FT log bytes per
// query. Loopback only; BENCH_DNS_SECONDS (default 5) per level.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { cli, dnsElf, hasDnsperf, parseDnsperf, query, QUERY_NAMES, requireBuilt, root, writeQueries, zoneImg } from './lib/dns.mjs';

requireBuilt('dist/runtime/pair.js');

// ---- child: the FT pair serving dns on a forwarded port ----
if (process.argv[2] === '--serve-ft') {
  const disk = process.argv[3];
  const { createPair } = await import(join(root, 'dist/runtime/pair.js'));
  const { openIo } = await import(join(root, 'dist/runtime/io/open.js'));
  const io = await openIo({ disk: `file:${disk}`, net: ['udp:127.0.0.1:0:53'] });
  const backupIn = process.env.BENCH_DNS_BACKUP_IN ?? 'thread';
  const pair = createPair({ image: readFileSync(dnsElf), disk: io.disk.backend, net: io.net.backend, backupIn });
  await pair.ready();
  let text = '';
  let outputs = 0;
  pair.outputs$.subscribe((o) => {
    outputs++;
    if (o.output.kind === 'console') {
      text += String.fromCharCode(o.output.byte);
      if (text.endsWith('\n') && /serving/.test(text)) process.stdout.write(`ready ${io.udp.boundPorts[0]}\n`);
    }
  });
  pair.events$.subscribe((e) => { if (e.type !== 'state') process.stderr.write(`${e.node}: ${e.type} ${e.detail}\n`); });
  const started = pair.start();
  createInterface({ input: process.stdin }).on('line', async (line) => {
    if (line === 'stats') {
      const s = pair.stats();
      process.stdout.write(`stats ${JSON.stringify({ logBytes: s.logBytes, logEntries: s.logEntries, icount: s.primary?.icount, held: s.primary?.held, outputs, udp: io.udp.stats })}\n`);
    } else if (line === 'quit') {
      await pair.stop();
      await started;
      await io.close();
      process.exit(0);
    }
  });
} else {
  await main();
}

async function freeUdpPort() {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}

/** N queries in flight for `seconds`; a query unanswered after 200 ms is replaced (counted lost). */
async function dnsLoad(port, inflight, seconds) {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const names = QUERY_NAMES;
  const sentAt = new Map();
  const lat = [];
  let next = 0, answered = 0, timeouts = 0;
  const deadline = performance.now() + seconds * 1000;
  const send = () => {
    if (performance.now() > deadline) return;
    const id = next++ & 0xffff;
    sentAt.set(id, performance.now());
    const [name, type] = names[id % names.length];
    s.send(query(id, name, type), port, '127.0.0.1');
  };
  s.on('message', (msg) => {
    const id = msg.readUInt16BE(0);
    const t = sentAt.get(id);
    if (t === undefined) return;
    sentAt.delete(id);
    answered++;
    lat.push(performance.now() - t);
    send();
  });
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [id, t] of sentAt) if (now - t > 200) { sentAt.delete(id); timeouts++; send(); }
  }, 50);
  const t0 = performance.now();
  for (let i = 0; i < inflight; i++) send();
  await new Promise((r) => setTimeout(r, seconds * 1000 + 250));
  clearInterval(sweep);
  s.close();
  lat.sort((a, b) => a - b);
  const q = (p) => (lat.length ? lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] : NaN);
  return { answered, qps: answered / ((Math.min(performance.now(), deadline) - t0) / 1000), p50: q(0.5), p99: q(0.99), timeouts };
}

function dnsperf(port, seconds, dir) {
  if (!hasDnsperf()) return undefined;
  const qf = writeQueries(join(dir, 'queries.txt'));
  const r = spawnSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', qf, '-l', String(seconds), '-q', '32'], { encoding: 'utf8' });
  const { qps, completed, lostPct, avgMs } = parseDnsperf(r.stdout);
  return { qps, completed, lostPct, avgMs };
}

/** A server process: `ready` resolves to its port; `stats()` asks the FT child for its counters. */
function server(args, readyLine) {
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '', err = '';
  const waiters = [];
  const lines = [];
  child.stdout.on('data', (d) => {
    out += d;
    for (let i = out.indexOf('\n'); i >= 0; i = out.indexOf('\n')) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      lines.push(line);
      for (const w of waiters.splice(0)) w();
    }
  });
  child.stderr.on('data', (d) => (err += d));
  const nextLine = (re) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`server: no ${re} (stderr: ${err.slice(-500)})`)), 60_000);
    const look = () => {
      const i = lines.findIndex((l) => re.test(l));
      if (i >= 0) { clearTimeout(t); resolve(lines.splice(i, 1)[0]); } else waiters.push(look);
    };
    look();
  });
  return {
    child,
    ready: nextLine(readyLine),
    async stats() {
      child.stdin.write('stats\n');
      return JSON.parse((await nextLine(/^stats /)).slice(6));
    },
    async stop(how) {
      const exited = new Promise((r) => child.on('exit', r));
      if (how === 'quit') child.stdin.write('quit\n');
      else child.kill('SIGINT');
      await exited;
      return err;
    },
  };
}

async function main() {
  const SECONDS = Number(process.env.BENCH_DNS_SECONDS ?? 5);
  const LEVELS = [1, 8, 32];
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-dnsft-'));
  const results = { plain: {}, ft: {} };
  try {
    console.log(`dns guest, queries/s without and with FT, ${SECONDS} s per load level, loopback, Node ${process.version}`);
    // ---- without FT ----
    {
      const disk = join(dir, 'plain.img');
      copyFileSync(zoneImg, disk);
      const port = await freeUdpPort();
      const srv = server([cli, 'run', dnsElf, '--disk', disk, '--net', `udp:${port}:53`], /serving/);
      await srv.ready;
      for (const n of LEVELS) results.plain[n] = await dnsLoad(port, n, SECONDS);
      results.plain.dnsperf = dnsperf(port, SECONDS, dir);
      await srv.stop('sigint');
    }
    // ---- with FT ----
    {
      const disk = join(dir, 'ft.img');
      copyFileSync(zoneImg, disk);
      const srv = server([fileURLToPath(import.meta.url), '--serve-ft', disk], /^ready \d+$/);
      const port = Number((await srv.ready).split(' ')[1]);
      for (const n of LEVELS) {
        const a = await srv.stats();
        const r = await dnsLoad(port, n, SECONDS);
        const b = await srv.stats();
        r.logBytesPerQuery = (b.logBytes - a.logBytes) / Math.max(1, b.udp.datagramsIn - a.udp.datagramsIn);
        r.logEntriesPerQuery = (b.logEntries - a.logEntries) / Math.max(1, b.udp.datagramsIn - a.udp.datagramsIn);
        results.ft[n] = r;
      }
      {
        const a = await srv.stats();
        results.ft.dnsperf = dnsperf(port, SECONDS, dir);
        const b = await srv.stats();
        if (results.ft.dnsperf) results.ft.dnsperf.logBytesPerQuery = (b.logBytes - a.logBytes) / Math.max(1, b.udp.datagramsIn - a.udp.datagramsIn);
      }
      const err = await srv.stop('quit');
      if (/error|divergence/.test(err)) console.log(`  FT server reported: ${err.trim().split('\n').slice(-5).join(' | ')}`);
    }
    const row = (label, p, f) => {
      const ratio = f.qps / p.qps;
      return `  ${label.padEnd(18)} no FT ${p.qps.toFixed(0).padStart(6)} q/s (p50 ${p.p50?.toFixed(2) ?? p.avgMs.toFixed(2)} ms)   FT ${f.qps.toFixed(0).padStart(6)} q/s (p50 ${f.p50?.toFixed(2) ?? f.avgMs.toFixed(2)} ms)   ratio ${ratio.toFixed(3)}   log ${f.logBytesPerQuery.toFixed(0)} B/query`
        + (p.timeouts !== undefined ? `   lost ${p.timeouts}/${f.timeouts}` : `   lost ${p.lostPct}%/${f.lostPct}%`);
    };
    for (const n of LEVELS) console.log(row(`node loop, ${String(n).padStart(2)} in fl.`, results.plain[n], results.ft[n]));
    if (results.plain.dnsperf && results.ft.dnsperf) console.log(row('dnsperf -q 32', results.plain.dnsperf, results.ft.dnsperf).replace(/p50/g, 'avg'));
    else console.log('  dnsperf not installed, skipped (apt-get install dnsperf)');
    if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(results, null, 2));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
