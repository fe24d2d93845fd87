// `node bench/devices-io.mjs ROOT...`: virtio-blk and virtio-net cost on built checkouts loaded
// into one Node process, runs alternating between them, no sockets or files in the loop (an
// in-memory disk and an in-process network), so host noise hits every build alike:
//   disk: 4 KiB requests at queue depth 1 through virtio-blk (registers, rings, the I/O hub,
//         completions applied by the env), writes then reads: requests/s.
//   net:  frames through virtio-net driven from the guest side by a JS driver (8 receive
//         buffers reposted as used, one transmit per receive, released at once): frames/s
//         each way. No guest CPU in it: the device path alone, where a chart step would show.
//   dns:  the dns guest under the live env, its zone on an in-memory disk, answering a closed
//         loop of 32 queries in flight handed to virtio-net by an in-process network: queries/s.
//   dns FT: the same under FT, `createPair` in this process (backup in the same thread, every
//         query and answer through the log and the output rule, the backup's devices replaying).
// Best and median of RUNS (default 7) runs each.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const roots = (process.argv.length > 2 ? process.argv.slice(2) : [new URL('..', import.meta.url).pathname]).map((r) => resolve(r));
const RUNS = Number(process.env.BENCH_RUNS ?? 7);
const DISK_REQS = Number(process.env.BENCH_DISK_REQS ?? 4000);
const QUERIES = Number(process.env.BENCH_QUERIES ?? 5000);
const INFLIGHT = 32;
const guests = new URL('../guests/', import.meta.url);
const dnsElf = readFileSync(new URL('dns/dns.elf', guests));
const zone = new Uint8Array(readFileSync(new URL('dns/zone.img', guests)));

const builds = [];
for (const root of roots) {
  builds.push({
    root,
    Machine: (await import(root + '/dist/runtime/machine.js')).Machine,
    LiveEnv: (await import(root + '/dist/runtime/env/live.js')).LiveEnv,
    runMachine: (await import(root + '/dist/runtime/runner.js')).runMachine,
    createPair: (await import(root + '/dist/runtime/pair.js')).createPair,
    frames: await import(root + '/dist/runtime/io/frames.js'),
    DEFAULT_MAC: (await import(root + '/dist/devices/virtio-net.js')).DEFAULT_MAC,
  });
}

/** A disk in memory that answers at once. */
function memDisk(bytes) {
  return {
    name: 'mem', sectors: bytes.length / 512,
    read: (s, n) => Promise.resolve(bytes.slice(s * 512, (s + n) * 512)),
    write: (s, d) => { bytes.set(d, s * 512); return Promise.resolve(); },
    flush: () => Promise.resolve(),
    close: () => Promise.resolve(),
  };
}

const RAM = 0x8000_0000, DESC = RAM + 0x10_0000, AVAIL = RAM + 0x10_1000, USED = RAM + 0x10_2000, HDR = RAM + 0x10_3000, BUF = RAM + 0x20_0000;
const REQ = 4096;
const FRAMES = Number(process.env.BENCH_FRAMES ?? 200000);

/** Requests/s of DISK_REQS writes then DISK_REQS reads, one at a time, as bench/io.mjs drives them. */
async function disk(b) {
  let m;
  m = new b.Machine({ env: new b.LiveEnv(), memoryMiB: 16, disk: { backend: memDisk(new Uint8Array(8 << 20)) }, onOutput: (o) => m.io.execute(o) });
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
    while (r16(USED + 2) === (used & 0xffff)) {
      await new Promise((r) => setImmediate(r));
      m.env.deliverDue(m);
    }
    used++;
    d.write(0x64, 4, d.read(0x60, 4));
    if (m.bus.ram[HDR + 64 - RAM] !== 0) throw new Error('I/O error');
  };
  const t0 = performance.now();
  for (let i = 0; i < DISK_REQS; i++) await request(1, (i * 8) % 16000);
  for (let i = 0; i < DISK_REQS; i++) await request(0, (i * 8) % 16000);
  return (2 * DISK_REQS) / ((performance.now() - t0) / 1000);
}

/** Frames/s through virtio-net: receive one (host to guest RAM), transmit one (guest to host). */
function net(b) {
  const RXD = RAM + 0x10_0000, RXA = RAM + 0x10_1000, RXU = RAM + 0x10_2000;
  const TXD = RAM + 0x11_0000, TXA = RAM + 0x11_1000, TXU = RAM + 0x11_2000;
  const RXBUF = RAM + 0x20_0000, TXBUF = RAM + 0x30_0000;
  let sent = 0;
  const wire = { onFrame: undefined, send: () => { sent++; }, close: () => Promise.resolve() };
  let m;
  m = new b.Machine({ env: new b.LiveEnv(), memoryMiB: 16, net: { backend: wire }, onOutput: (o) => m.io.execute(o) });
  const d = m.virtio[7];
  const dv = new DataView(m.bus.ram.buffer);
  const w32 = (a, v) => dv.setUint32(a - RAM, v, true);
  const w16 = (a, v) => dv.setUint16(a - RAM, v, true);
  const r16 = (a) => dv.getUint16(a - RAM, true);
  for (const [off, v] of [[0x70, 0], [0x70, 1], [0x70, 3], [0x24, 1], [0x20, 1], [0x70, 11],
    [0x30, 0], [0x38, 8], [0x80, RXD], [0x90, RXA], [0xa0, RXU], [0x44, 1],
    [0x30, 1], [0x38, 8], [0x80, TXD], [0x90, TXA], [0xa0, TXU], [0x44, 1], [0x70, 15]]) d.write(off, 4, v);
  for (let i = 0; i < 8; i++) {
    w32(RXD + 16 * i, RXBUF + 2048 * i); w32(RXD + 16 * i + 8, 1526); w16(RXD + 16 * i + 12, 2);
    w32(TXD + 16 * i, TXBUF + 2048 * i); w32(TXD + 16 * i + 8, 12 + 60);
  }
  let rxAvail = 0, rxUsed = 0, txAvail = 0;
  const post = (i) => { w16(RXA + 4 + 2 * (rxAvail % 8), i); w16(RXA + 2, ++rxAvail & 0xffff); d.write(0x50, 4, 0); };
  for (let i = 0; i < 8; i++) post(i);
  const frame = new Uint8Array(60).fill(0x42);
  const t0 = performance.now();
  for (let n = 0; n < FRAMES; n++) {
    wire.onFrame(frame);
    const c = m.io.takeDue();
    if (!c || !m.io.apply(c)) throw new Error('frame not delivered');
    // The guest takes it, reposts the buffer, answers with a frame of its own, acks the interrupt.
    while (rxUsed !== r16(RXU + 2)) { post(dv.getUint32(RXU - RAM + 4 + 8 * (rxUsed % 8), true)); rxUsed = (rxUsed + 1) & 0xffff; }
    w16(TXA + 4 + 2 * (txAvail % 8), txAvail % 8); w16(TXA + 2, ++txAvail & 0xffff); d.write(0x50, 4, 1);
    d.write(0x64, 4, d.read(0x60, 4));
  }
  const s = (performance.now() - t0) / 1000;
  if (sent !== FRAMES || r16(TXU + 2) !== (FRAMES & 0xffff)) throw new Error(`sent ${sent} of ${FRAMES}`);
  return FRAMES / s;
}

/** A DNS question for www.example.test, type A, with id `id`. */
function question(id) {
  const name = [3, ...Buffer.from('www'), 7, ...Buffer.from('example'), 4, ...Buffer.from('test'), 0];
  return Uint8Array.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...name, 0, 1, 0, 1]);
}

/** Queries/s the dns guest answers with INFLIGHT in flight, until QUERIES answers; `ft`: as a pair. */
async function dns(b, ft = false) {
  const { udpFrame, parseFrame, arpReply, GATEWAY_IP, GATEWAY_MAC, GUEST_IP } = b.frames;
  let text = '', answers = 0, sent = 0, t0 = 0;
  const abort = new AbortController();
  let finished;
  const over = new Promise((r) => { finished = r; });
  const ask = () => {
    sent++;
    net.onFrame?.(udpFrame({ dstMac: b.DEFAULT_MAC, srcMac: GATEWAY_MAC, srcIp: GATEWAY_IP, dstIp: GUEST_IP, srcPort: 40000 + (sent % INFLIGHT), dstPort: 53, payload: question(sent & 0xffff) }));
  };
  const net = {
    onFrame: undefined,
    send(f) {
      const p = parseFrame(f);
      if (p.kind === 'arp-request') net.onFrame?.(arpReply(p.arp, GATEWAY_MAC, GATEWAY_IP));
      else if (p.kind === 'udp') {
        if (++answers === QUERIES) finished();
        else if (answers < QUERIES) ask();
      }
    },
    close: () => Promise.resolve(),
  };
  let stop;
  if (ft) {
    const pair = b.createPair({ image: dnsElf, disk: memDisk(zone.slice()), net });
    pair.outputs$.subscribe((o) => { if (o.output.kind === 'console') text += String.fromCharCode(o.output.byte); });
    const started = pair.start();
    stop = async () => { await pair.stop(); await started; };
  } else {
    let m;
    m = new b.Machine({
      env: new b.LiveEnv(), disk: { backend: memDisk(zone.slice()) }, net: { backend: net },
      onOutput: (o) => { if (o.kind === 'console') text += String.fromCharCode(o.byte); else m.io.execute(o); },
    });
    m.loadElf(dnsElf);
    const run = b.runMachine(m, { signal: abort.signal });
    stop = async () => { abort.abort(); await run; };
  }
  while (!/serving/.test(text)) await new Promise((r) => setTimeout(r, 1));
  t0 = performance.now();
  for (let i = 0; i < INFLIGHT; i++) ask();
  await over;
  const qps = QUERIES / ((performance.now() - t0) / 1000);
  await stop();
  return qps;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res = builds.map(() => ({ disk: [], net: [], dns: [], dnsFt: [] }));
for (let i = 0; i < RUNS; i++) {
  for (const [k, b] of builds.entries()) {
    res[k].disk.push(await disk(b));
    res[k].net.push(net(b));
    res[k].dns.push(await dns(b));
    res[k].dnsFt.push(await dns(b, true));
  }
}
console.log(`${RUNS} alternating runs; disk: ${2 * DISK_REQS} requests of 4 KiB; net: ${FRAMES} frames each way; dns: ${QUERIES} queries, ${INFLIGHT} in flight`);
const fmt = (xs, unit) => `${median(xs).toFixed(0)} ${unit} median (best ${Math.max(...xs).toFixed(0)})`;
builds.forEach((b, k) => {
  const r = res[k];
  console.log(`${b.root}: disk ${fmt(r.disk, 'req/s')}, net ${fmt(r.net, 'frames/s')}, dns ${fmt(r.dns, 'q/s')}, dns FT ${fmt(r.dnsFt, 'q/s')}`);
});
