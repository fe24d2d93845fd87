// Log size and codec speed, on the wire (a frame per entry, codec.ts) and in the log file
// (version 2: a block per write, block.ts). Usage: node bench/log-bytes.mjs
// Speeds are the best of 5 runs.
// Transpiles runtime/log/*.ts to a temp dir first, so it needs no build step.
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';

const srcDir = new URL('../runtime/log/', import.meta.url);
const out = await mkdtemp(join(tmpdir(), 'ftvm-bench-log-'));
await writeFile(join(out, 'package.json'), '{"type":"module"}');
for (const f of await readdir(srcDir)) {
  if (!f.endsWith('.ts')) continue;
  const js = ts.transpileModule(await readFile(new URL(f, srcDir), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  });
  await writeFile(join(out, f.replace(/\.ts$/, '.js')), js.outputText);
}
const { Encoder, Decoder } = await import(pathToFileURL(join(out, 'codec.js')).href);
const { BlockEncoder, decodeBlocks } = await import(pathToFileURL(join(out, 'block.js')).href);
await rm(out, { recursive: true, force: true });

const MIPS = 150;
const SECONDS = 10;
const INSNS_PER_MS = MIPS * 1000;
const MTIME_PER_MS = 10_000; // 10 MHz

/** A 1 kHz timer whose handler reads mtime twice, plus a heartbeat every 5 ms (DESIGN §7 anchor). */
function timerStream(seconds) {
  const entries = [];
  let seq = 0;
  let mtime = 1_234_567_890;
  for (let ms = 0; ms < seconds * 1000; ms++) {
    const icount = ms * INSNS_PER_MS + ((ms * 7919) % 1000); // host jitter in where the tick lands
    mtime = (ms + 1) * MTIME_PER_MS + 1_234_567_890 + ((ms * 31) % 40);
    entries.push({ seq: seq++, icount, type: 'timer' });
    entries.push({ seq: seq++, icount: icount + 40, type: 'value', kind: 'mtime', value: mtime });
    entries.push({ seq: seq++, icount: icount + 95, type: 'value', kind: 'mtime', value: mtime + 3 });
    if (ms % 5 === 4) entries.push({ seq: seq++, icount: (ms + 1) * INSNS_PER_MS - 1000, type: 'progress', released: 0 });
  }
  return { entries, instructions: seconds * 1000 * INSNS_PER_MS };
}

function netStream(n, size) {
  const frame = new Uint8Array(size).map((_, i) => i * 13);
  return Array.from({ length: n }, (_, i) => ({ seq: i, icount: i * 50_000, type: 'net-rx', frame }));
}

function encodeAll(entries) {
  const enc = new Encoder();
  return entries.map((e) => enc.encode(e));
}

function speed(entries, rounds) {
  let bytes = 0;
  let decoded = 0;
  const t0 = performance.now();
  for (let r = 0; r < rounds; r++) {
    const frames = encodeAll(entries);
    const dec = new Decoder();
    for (const f of frames) {
      bytes += f.length;
      decoded += dec.push(f).length;
    }
  }
  const s = (performance.now() - t0) / 1000;
  if (decoded !== entries.length * rounds) throw new Error('decode mismatch');
  return { mbPerS: bytes / 1e6 / s, entriesPerS: decoded / s };
}

const { entries, instructions } = timerStream(SECONDS);
const frames = encodeAll(entries);
const total = frames.reduce((n, f) => n + f.length, 0);
const byType = {};
for (let i = 0; i < entries.length; i++) {
  const k = entries[i].type === 'value' ? `value/${entries[i].kind}` : entries[i].type;
  (byType[k] ??= { n: 0, bytes: 0 }).n++;
  byType[k].bytes += frames[i].length;
}
console.log(`timer stream: ${MIPS} MIPS, 1 kHz timer, 2 mtime reads per tick, heartbeat every 5 ms, ${SECONDS} s`);
console.log(`  entries ${entries.length}, bytes ${total}, ${(total / entries.length).toFixed(2)} B/entry`);
for (const [k, v] of Object.entries(byType)) console.log(`  ${k.padEnd(12)} ${(v.bytes / v.n).toFixed(2)} B/entry`);
console.log(`  ${((total / instructions) * 1000).toFixed(3)} B per 1000 instructions (ReTrace anchor: 0.5)`);
console.log(`  ${(total / SECONDS / 1024).toFixed(1)} KiB/s = ${((total * 8) / SECONDS / 1e6).toFixed(3)} Mbit/s (VMware FT anchor: < 20)`);

// Best of 5: the host is shared, so the fastest run is the least disturbed one.
const best = (f) => Array.from({ length: 5 }, f).reduce((a, b) => (b.mbPerS > a.mbPerS ? b : a));
speed(entries, 2); // warm up
const t = best(() => speed(entries, 4));
console.log(`encode+decode, timer stream: ${t.mbPerS.toFixed(1)} MB/s, ${(t.entriesPerS / 1e6).toFixed(2)} M entries/s`);
const net = netStream(20_000, 1500);
speed(net, 1);
const n = best(() => speed(net, 2));
console.log(`encode+decode, 1500-byte net-rx frames: ${n.mbPerS.toFixed(1)} MB/s, ${(n.entriesPerS / 1e3).toFixed(0)} k entries/s`);

// The channel batches the frames of one tick into one chunk; decode a whole stream that way.
const whole = new Uint8Array(total);
let at = 0;
for (const f of frames) {
  whole.set(f, at);
  at += f.length;
}
const timeBest = (f) =>
  Math.min(...Array.from({ length: 5 }, () => {
    const t0 = performance.now();
    f();
    return (performance.now() - t0) / 1000;
  }));
const ds = timeBest(() => {
  for (let r = 0; r < 10; r++) new Decoder().push(whole);
});
console.log(`decode only, one chunk: ${((total * 10) / 1e6 / ds).toFixed(1)} MB/s, ${((entries.length * 10) / ds / 1e6).toFixed(2)} M entries/s`);
const es = timeBest(() => {
  for (let r = 0; r < 10; r++) encodeAll(entries);
});
console.log(`encode only: ${((total * 10) / 1e6 / es).toFixed(1)} MB/s, ${((entries.length * 10) / es / 1e6).toFixed(2)} M entries/s`);

// The log file: one block per write, as `ftvm record` writes every 1 M instructions.
const blockOf = (list) => {
  const enc = new BlockEncoder();
  const blocks = [];
  let next = 1_000_000;
  for (const e of list) {
    if (e.icount >= next) {
      blocks.push(Uint8Array.from(enc.seal()));
      next = e.icount + 1_000_000;
    }
    enc.append(e, e.seq, e.icount);
  }
  blocks.push(Uint8Array.from(enc.seal()));
  return blocks;
};
const blocks = blockOf(entries);
const fileBytes = blocks.reduce((n, b) => n + b.length, 0);
console.log(`log file (blocks of 1 M instructions), timer stream: ${fileBytes} bytes, ${(fileBytes / entries.length).toFixed(2)} B/entry, ${((fileBytes / instructions) * 1000).toFixed(3)} B per 1000 instructions (frames: ${((total / instructions) * 1000).toFixed(3)})`);
const fileWhole = new Uint8Array(fileBytes);
at = 0;
for (const b of blocks) { fileWhole.set(b, at); at += b.length; }
if (decodeBlocks(fileWhole, 0).entries.length !== entries.length) throw new Error('block decode mismatch');
const bd = timeBest(() => { for (let r = 0; r < 10; r++) decodeBlocks(fileWhole, 0); });
const be = timeBest(() => { for (let r = 0; r < 10; r++) blockOf(entries); });
console.log(`log file: encode ${((entries.length * 10) / be / 1e6).toFixed(2)} M entries/s, decode ${((entries.length * 10) / bd / 1e6).toFixed(2)} M entries/s`);
