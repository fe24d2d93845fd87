// `node bench/io.mjs`: virtio I/O on ftvm (needs `npm run build`; nbd-server and dnsperf when
// installed). Loopback only, bounded in time.
//   1. Disk MB/s through the whole virtio-blk path (registers, rings, I/O hub, env delivery)
//      driven from the guest side by a JS driver, queue depth 1 as the C guests use it, on a
//      file disk and on an NBD export served by nbd-server; and the bare backends for scale.
//   2. DNS queries/s: the dns guest under `ftvm run --net udp:PORT:53`, loaded by a Node UDP
//      loop with N queries in flight for a few seconds (and by dnsperf if present).
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
if (!existsSync(join(root, 'dist/runtime/machine.js'))) {
  console.error('bench: dist/ is missing; run `npm run build` first');
  process.exit(2);
}
const { Machine } = await import(join(root, 'dist/runtime/machine.js'));
const { LiveEnv } = await import(join(root, 'dist/runtime/env/live.js'));
const { FileDisk } = await import(join(root, 'dist/runtime/io/disk-file.js'));
const { NbdDisk } = await import(join(root, 'dist/runtime/io/disk-nbd.js'));

const TOTAL = Number(process.env.BENCH_DISK_MIB ?? 32) << 20;
const REQ = 64 << 10;
const DNS_SECONDS = Number(process.env.BENCH_DNS_SECONDS ?? 5);
const dir = mkdtempSync(join(tmpdir(), 'ftvm-bench-io-'));
const cmd = (c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0;

async function freePort(kind) {
  if (kind === 'udp') {
    const s = createSocket('udp4');
    await new Promise((r) => s.bind(0, '127.0.0.1', r));
    const p = s.address().port;
    await new Promise((r) => s.close(r));
    return p;
  }
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const p = s.address().port;
  await new Promise((r) => s.close(r));
  return p;
}

// ---- 1. disk ----

const RAM = 0x8000_0000, DESC = RAM + 0x10_0000, AVAIL = RAM + 0x10_1000, USED = RAM + 0x10_2000, HDR = RAM + 0x10_3000, BUF = RAM + 0x20_0000;

/** MB/s writing then reading TOTAL bytes in REQ-sized virtio-blk requests, one at a time. */
async function viaVirtio(backend) {
  let m;
  m = new Machine({ env: new LiveEnv(), memoryMiB: 16, disk: { backend }, onOutput: (o) => m.io.execute(o) });
  const d = m.virtio[7];
  const dv = new DataView(m.bus.ram.buffer);
  const w32 = (a, v) => dv.setUint32(a - RAM, v, true);
  const w16 = (a, v) => dv.setUint16(a - RAM, v, true);
  const r16 = (a) => dv.getUint16(a - RAM, true);
  for (const [off, v] of [[0x70, 0], [0x70, 1], [0x70, 3], [0x24, 1], [0x20, 1], [0x70, 11], [0x30, 0], [0x38, 8], [0x80, DESC], [0x90, AVAIL], [0xa0, USED], [0x44, 1], [0x70, 15]]) d.write(off, 4, v);
  const desc = (i, addr, len, flags, next) => { w32(DESC + 16 * i, addr); w32(DESC + 16 * i + 4, 0); w32(DESC + 16 * i + 8, len); w16(DESC + 16 * i + 12, flags); w16(DESC + 16 * i + 14, next); };
  let avail = 0, used = 0;
  const request = async (type, sector) => {
    w32(HDR, type); w32(HDR + 4, 0); w32(HDR + 8, sector); w32(HDR + 12, 0);
    desc(0, HDR, 16, 1, 1);
    desc(1, BUF, REQ, 1 | (type === 0 ? 2 : 0), 2);
    desc(2, HDR + 64, 1, 2, 0);
    w16(AVAIL + 4 + 2 * (avail % 8), 0);
    w16(AVAIL + 2, ++avail & 0xffff);
    d.write(0x50, 4, 0);
    // The env applies completions at batch boundaries; here, whenever the host has one.
    while (r16(USED + 2) === (used & 0xffff)) {
      await new Promise((r) => setImmediate(r));
      m.env.deliverDue(m);
    }
    used++;
    if (m.bus.ram[HDR + 64 - RAM] !== 0) throw new Error('I/O error');
  };
  m.bus.ram.fill(0x5a, BUF - RAM, BUF - RAM + REQ);
  let t0 = performance.now();
  for (let off = 0; off < TOTAL; off += REQ) await request(1, off / 512);
  w32(HDR, 4); desc(0, HDR, 16, 1, 1); desc(1, HDR + 64, 1, 2, 0);
  w16(AVAIL + 4 + 2 * (avail % 8), 0); w16(AVAIL + 2, ++avail & 0xffff); d.write(0x50, 4, 0);
  while (r16(USED + 2) === (used & 0xffff)) { await new Promise((r) => setImmediate(r)); m.env.deliverDue(m); }
  used++;
  const writeMBs = TOTAL / 1e6 / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let off = 0; off < TOTAL; off += REQ) await request(0, off / 512);
  const readMBs = TOTAL / 1e6 / ((performance.now() - t0) / 1000);
  return { writeMBs, readMBs };
}

async function bare(backend) {
  const data = new Uint8Array(REQ).fill(0x5a);
  let t0 = performance.now();
  for (let off = 0; off < TOTAL; off += REQ) await backend.write(off / 512, data);
  await backend.flush();
  const writeMBs = TOTAL / 1e6 / ((performance.now() - t0) / 1000);
  t0 = performance.now();
  for (let off = 0; off < TOTAL; off += REQ) await backend.read(off / 512, REQ / 512);
  const readMBs = TOTAL / 1e6 / ((performance.now() - t0) / 1000);
  return { writeMBs, readMBs };
}

function image(name) {
  const p = join(dir, name);
  writeFileSync(p, '');
  truncateSync(p, TOTAL);
  return p;
}

async function startNbd(img) {
  const port = await freePort('tcp');
  const cfg = join(dir, `nbd-${port}.conf`), pidFile = join(dir, `nbd-${port}.pid`);
  writeFileSync(cfg, `[generic]\n    listenaddr = 127.0.0.1\n    port = ${port}\n[disk]\n    exportname = ${img}\n    flush = true\n`);
  execFileSync('nbd-server', ['-C', cfg, '-p', pidFile], { stdio: 'ignore' });
  for (let i = 0; i < 300; i++) {
    const ok = existsSync(pidFile) && await new Promise((r) => { const s = connect(port, '127.0.0.1'); s.once('connect', () => { s.destroy(); r(true); }); s.once('error', () => r(false)); });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  return { port, stop: () => { spawnSync('pkill', ['-KILL', '-P', String(pid)]); try { process.kill(pid, 'SIGKILL'); } catch {} } };
}

const fmt = (r) => `write ${r.writeMBs.toFixed(1)} MB/s, read ${r.readMBs.toFixed(1)} MB/s`;
console.log(`disk: ${TOTAL >> 20} MiB in ${REQ >> 10} KiB requests, queue depth 1`);
{
  const b = await FileDisk.open(image('bare.img'));
  console.log(`  file, bare backend         ${fmt(await bare(b))}`);
  await b.close();
  const v = await FileDisk.open(image('virtio.img'));
  console.log(`  file, through virtio-blk   ${fmt(await viaVirtio(v))}`);
  await v.close();
}
if (cmd('nbd-server')) {
  const srv = await startNbd(image('nbd.img'));
  try {
    const b = await NbdDisk.connect({ host: '127.0.0.1', port: srv.port, export: 'disk' });
    console.log(`  nbd,  bare backend         ${fmt(await bare(b))}`);
    await b.close();
    const v = await NbdDisk.connect({ host: '127.0.0.1', port: srv.port, export: 'disk' });
    console.log(`  nbd,  through virtio-blk   ${fmt(await viaVirtio(v))}`);
    await v.close();
  } finally {
    srv.stop();
  }
} else {
  console.log('  nbd: nbd-server not installed, skipped');
}

// ---- 2. DNS ----

function query(id, name) {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([id >> 8, id & 255, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

async function dnsLoad(port, inflight, seconds) {
  const s = createSocket('udp4');
  await new Promise((r) => s.bind(0, '127.0.0.1', r));
  const names = ['www.example.test', 'ns1.example.test', 'nope.example.test', 'example.test'];
  const sentAt = new Map();
  const lat = [];
  let next = 0, answered = 0, timeouts = 0;
  const deadline = performance.now() + seconds * 1000;
  const send = () => {
    if (performance.now() > deadline) return;
    const id = next++ & 0xffff;
    sentAt.set(id, performance.now());
    s.send(query(id, names[id % names.length]), port, '127.0.0.1');
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
  // A lost query is replaced after 200 ms so the window stays full.
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
  return { qps: answered / ((Math.min(performance.now(), deadline) - t0) / 1000), p50: q(0.5), p99: q(0.99), timeouts };
}

console.log(`dns: the dns guest on ftvm run, ${DNS_SECONDS} s per load level, loopback`);
{
  const disk = join(dir, 'zone.img');
  copyFileSync(join(root, 'guests/dns/zone.img'), disk);
  const port = await freePort('udp');
  const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'run', join(root, 'guests/dns/dns.elf'), '--disk', disk, '--net', `udp:${port}:53`, '--stats'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  for (let i = 0; i < 500 && !out.includes('serving'); i++) await new Promise((r) => setTimeout(r, 20));
  for (const inflight of [1, 8, 32]) {
    const r = await dnsLoad(port, inflight, DNS_SECONDS);
    console.log(`  node loop, ${String(inflight).padStart(2)} in flight: ${r.qps.toFixed(0)} queries/s, p50 ${r.p50.toFixed(2)} ms, p99 ${r.p99.toFixed(2)} ms, ${r.timeouts} lost`);
  }
  if (cmd('dnsperf')) {
    const qf = join(dir, 'queries.txt');
    writeFileSync(qf, 'www.example.test A\nns1.example.test A\nnope.example.test A\nexample.test SOA\n');
    const r = spawnSync('dnsperf', ['-s', '127.0.0.1', '-p', String(port), '-d', qf, '-l', String(DNS_SECONDS), '-q', '32'], { encoding: 'utf8' });
    const line = (re) => re.exec(r.stdout)?.[0] ?? '?';
    console.log(`  dnsperf -q 32: ${line(/Queries per second:\s+[\d.]+/)}; ${line(/Queries lost:\s+\d+ \([\d.]+%\)/)}; ${line(/Average Latency \(s\):\s+[\d.]+/)}`);
  } else {
    console.log('  dnsperf not installed, skipped');
  }
  child.kill('SIGINT');
  await new Promise((r) => child.on('exit', r));
  const io = /io (\{.*\})/.exec(err)?.[1];
  if (io) console.log(`  guest I/O counters: ${io}`);
}
rmSync(dir, { recursive: true, force: true });
