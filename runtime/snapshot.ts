import { createHash } from 'node:crypto';
import type { Machine } from './machine.js';
import type { Hart } from './cpu/hart.js';

/** Everything needed to continue a machine elsewhere at the same instruction boundary (DESIGN §3). */
export interface MachineSnapshot {
  version: 1;
  memoryMiB: number;
  icount: number;
  hart: ReturnType<Hart['save']>;
  devices: { clint: unknown; plic: unknown; uart: unknown; test: unknown; rtc: unknown; virtio: unknown[] };
  /** A private copy of RAM. */
  ram: Uint8Array;
}

/** Capture state between batches. NOTE the bus's dirty bits are left alone: their consumer owns them. */
export function snapshotMachine(m: Machine): MachineSnapshot {
  return {
    version: 1,
    memoryMiB: m.memoryMiB,
    icount: m.icount,
    hart: structuredClone(m.hart.save()),
    devices: {
      clint: m.clint.save(), plic: m.plic.save(), uart: m.uart.save(), test: m.test.save(), rtc: m.rtc.save(),
      virtio: m.virtio.map((d) => structuredClone(d.save())),
    },
    ram: m.bus.ram.slice(),
  };
}

export function restoreMachine(m: Machine, s: MachineSnapshot): void {
  if (s.version !== 1) throw new Error(`unsupported snapshot version ${String(s.version)}`);
  if (s.memoryMiB !== m.memoryMiB || s.ram.length !== m.bus.ram.length) {
    throw new Error(`snapshot has ${s.memoryMiB} MiB of RAM, machine has ${m.memoryMiB} MiB`);
  }
  m.bus.ram.set(s.ram);
  m.bus.dirty.fill(1);
  m.bus.invalidateAll();
  // Devices first: their load() re-drives interrupt lines, then the hart's saved mip wins.
  m.clint.load(s.devices.clint);
  m.plic.load(s.devices.plic);
  m.uart.load(s.devices.uart);
  m.test.load(s.devices.test);
  m.rtc.load(s.devices.rtc);
  if (s.devices.virtio.length !== m.virtio.length) throw new Error('snapshot and machine disagree on virtio slots');
  s.devices.virtio.forEach((state, slot) => m.virtio[slot]!.load(structuredClone(state)));
  m.hart.load(structuredClone(s.hart));
}

/** Per machine: two 32-bit hash lanes per 4 KiB page, refreshed only where pages changed. */
const pageHashes = new WeakMap<Machine, Uint32Array>();

/** A two-lane multiply-xor hash of one page (1024 words): cheap, and only divergence detection relies on it. */
function hashPage(ram32: Int32Array, page: number, out: Uint32Array): void {
  let a = 0x811c9dc5 ^ page;
  let b = 0x9e3779b9 ^ page;
  for (let i = page << 10, end = i + 1024; i < end; i++) {
    const w = ram32[i]!;
    a = Math.imul(a ^ w, 0x01000193);
    b = Math.imul(b ^ w, 0x5bd1e995) ^ (b >>> 15);
  }
  out[page * 2] = a;
  out[page * 2 + 1] = b;
}

/**
 * Digest of RAM, hart and device state for divergence checks (DESIGN §3): SHA-256
 * (truncated to 128 bits) over per-page hashes and the registers. Only pages written since
 * the last digest are hashed again (the bus marks every guest store and DMA write in
 * `dirty`; this function owns those bits), so a periodic digest of a 16 MiB guest costs
 * what its working set costs, not 20–30 ms for all of RAM.
 * NOTE: snapshots copy all of RAM and do not use the dirty bits.
 */
export function digestMachine(m: Machine): string {
  const bus = m.bus;
  const pages = bus.dirty.length;
  let hashes = pageHashes.get(m);
  if (!hashes || hashes.length !== pages * 2) {
    hashes = new Uint32Array(pages * 2);
    pageHashes.set(m, hashes);
    bus.dirty.fill(1);
  }
  for (let p = 0; p < pages; p++) {
    if (bus.dirty[p] === 0) continue;
    bus.dirty[p] = 0;
    hashPage(bus.ram32, p, hashes);
  }
  const regs = JSON.stringify({
    hart: m.hart.save(),
    clint: m.clint.save(), plic: m.plic.save(), uart: m.uart.save(), rtc: m.rtc.save(),
    virtio: m.virtio.map((d) => d.save()),
  });
  return createHash('sha256').update(hashes).update(regs).digest('hex').slice(0, 32);
}

const PAGE_BYTES = 4096;
const MAGIC = 0x46_54_53_31; // "FTS1"

/**
 * Wire form for streaming a snapshot to a new backup: magic, JSON header length, JSON header,
 * a bitmap of non-zero 4 KiB pages, then those pages. Zero pages (most of a fresh guest's RAM)
 * cost one bit.
 */
export function encodeSnapshot(s: MachineSnapshot): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({ ...s, ram: undefined }));
  const pages = s.ram.length / PAGE_BYTES;
  const bitmap = new Uint8Array(Math.ceil(pages / 8));
  const ram32 = new Int32Array(s.ram.buffer, s.ram.byteOffset, s.ram.length >>> 2);
  let used = 0;
  for (let p = 0; p < pages; p++) {
    for (let i = p * 1024, end = i + 1024; i < end; i++) {
      if (ram32[i] !== 0) { bitmap[p >>> 3]! |= 1 << (p & 7); used++; break; }
    }
  }
  const out = new Uint8Array(8 + header.length + bitmap.length + used * PAGE_BYTES);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, header.length, true);
  out.set(header, 8);
  out.set(bitmap, 8 + header.length);
  let at = 8 + header.length + bitmap.length;
  for (let p = 0; p < pages; p++) {
    if (bitmap[p >>> 3]! & (1 << (p & 7))) {
      out.set(s.ram.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), at);
      at += PAGE_BYTES;
    }
  }
  return out;
}

export function decodeSnapshot(bytes: Uint8Array): MachineSnapshot {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (bytes.length < 8 || dv.getUint32(0, true) !== MAGIC) throw new Error('not an ftvm snapshot');
  const headerLen = dv.getUint32(4, true);
  if (8 + headerLen > bytes.length) throw new Error('truncated snapshot header');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLen))) as Omit<MachineSnapshot, 'ram'>;
  const ram = new Uint8Array(header.memoryMiB * 1024 * 1024);
  const pages = ram.length / PAGE_BYTES;
  const bitmapAt = 8 + headerLen;
  let at = bitmapAt + Math.ceil(pages / 8);
  for (let p = 0; p < pages; p++) {
    if (bytes[bitmapAt + (p >>> 3)]! & (1 << (p & 7))) {
      if (at + PAGE_BYTES > bytes.length) throw new Error('truncated snapshot pages');
      ram.set(bytes.subarray(at, at + PAGE_BYTES), p * PAGE_BYTES);
      at += PAGE_BYTES;
    }
  }
  if (at !== bytes.length) throw new Error('trailing bytes after snapshot pages');
  return { ...header, ram };
}
