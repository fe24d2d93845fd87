import { createHash } from 'node:crypto';
import { deflateSync, inflateSync } from 'node:zlib';
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
  /**
   * Per 4 KiB page, 0 where the page is known to be all zeros (a log's snapshots say which
   * pages they hold: resolveSnapshotChain). A restore then neither copies nor reads those
   * pages: on a machine whose page was never written either, nothing is to be done.
   */
  nonZeroPages?: Uint8Array;
}

/** Capture state between batches. NOTE the bus's dirty bits are left alone: digests and snapshot chains read them. */
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
  if (s.nonZeroPages?.length === m.bus.dirty.length) restorePages(m, s.ram, s.nonZeroPages);
  else {
    m.bus.ram.set(s.ram);
    m.bus.dirty.fill(1);
  }
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

/**
 * RAM from `ram`, page by page: a page `nonZero` marks is copied; any other page is zero in
 * the snapshot, so it is zeroed only where the machine may have written it (its dirty bit or
 * a sweep found it written), and left alone (unread) where the machine never did. A fresh
 * machine's untouched RAM stays unmapped: copying all 16 MiB faulted in 4096 pages, and the
 * first digest after it read them all again. The pages changed get their dirty bit, so the
 * digest and snapshot chain (which read the bits) see exactly those as written.
 */
function restorePages(m: Machine, ram: Uint8Array, nonZero: Uint8Array): void {
  const dst = m.bus.ram;
  const dirty = m.bus.dirty;
  const epochs = epochsOf.get(m);
  const written = epochs && epochs.page.length === dirty.length ? epochs.page : undefined;
  for (let p = 0; p < dirty.length; p++) {
    const at = p * PAGE_BYTES;
    if (nonZero[p] !== 0) {
      dst.set(ram.subarray(at, at + PAGE_BYTES), at);
      dirty[p] = 1;
    } else if (dirty[p] !== 0 || (written !== undefined && written[p] !== 0)) {
      dst.fill(0, at, at + PAGE_BYTES);
      dirty[p] = 1;
    }
  }
}

/**
 * The bus's dirty bits have one owner, this file, and two readers: the incremental digest and
 * the incremental snapshots of a recording. Each sweep moves the bits into a per-page epoch
 * (the sweep's number), so every reader keeps only the epoch it last looked at and sees the
 * pages written since, whoever swept them.
 */
interface PageEpochs {
  epoch: number;
  /**
   * The sweep that last found each page dirty (0: never since boot). A bus's RAM starts
   * zeroed and every write to it sets the page's dirty bit, so a page at 0 is all zeros: no
   * need to read it (a first read of untouched RAM costs a page fault per 4 KiB: 16 MiB of
   * them took 75 ms, 5 % of a `record` run).
   */
  page: Uint32Array;
}
const epochsOf = new WeakMap<Machine, PageEpochs>();

function sweepDirty(m: Machine): PageEpochs {
  const dirty = m.bus.dirty;
  let e = epochsOf.get(m);
  if (!e || e.page.length !== dirty.length) {
    e = { epoch: 0, page: new Uint32Array(dirty.length) };
    epochsOf.set(m, e);
  }
  const epoch = ++e.epoch;
  const page = e.page;
  for (let p = 0; p < dirty.length; p++) {
    if (dirty[p] === 0) continue;
    dirty[p] = 0;
    page[p] = epoch;
  }
  return e;
}

/** Per machine: two 32-bit hash lanes per 4 KiB page and the sweep they are as of. */
const pageHashes = new WeakMap<Machine, { hashes: Uint32Array; epoch: number }>();

const PAGE_BYTES = 4096;
const ZERO_PAGE = Buffer.alloc(PAGE_BYTES);
/** A Buffer over the same memory, for native page compares. */
const bufferOf = (ram: Uint8Array): Buffer => Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength);

/**
 * Whether page `page` of `ram` is all zeros: memcmp in native code. Most of a guest's RAM is
 * never touched, and a word loop over 16 MiB in JS costs several milliseconds.
 */
const isZeroPage = (ram: Buffer, page: number): boolean =>
  ram.compare(ZERO_PAGE, 0, PAGE_BYTES, page * PAGE_BYTES, (page + 1) * PAGE_BYTES) === 0;

/**
 * A two-lane multiply-xor hash of one page (1024 words): cheap, and only divergence detection
 * relies on it. An all-zero page hashes to (0, 0) without the word loop, so the first digest
 * of a fresh guest (every page counts as written) costs its used pages, not 16 MiB of loop.
 * NOTE a pure function of the page's content and number: both sides of a pair must agree.
 */
function hashPage(ram: Buffer, ram32: Int32Array, page: number, out: Uint32Array): void {
  if (isZeroPage(ram, page)) {
    out[page * 2] = 0;
    out[page * 2 + 1] = 0;
    return;
  }
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
 * `dirty`), so a periodic digest of a 16 MiB guest costs what its working set costs, not
 * 20–30 ms for all of RAM.
 */
export function digestMachine(m: Machine): string {
  const pages = m.bus.dirty.length;
  const epochs = sweepDirty(m);
  let state = pageHashes.get(m);
  const all = !state || state.hashes.length !== pages * 2;
  if (!state || all) {
    state = { hashes: new Uint32Array(pages * 2), epoch: 0 };
    pageHashes.set(m, state);
  }
  const { hashes } = state;
  const ram = bufferOf(m.bus.ram);
  // A page no sweep ever found written is as the machine was built: zeros, whose hash is
  // (0, 0), the fresh array's. So even the first digest reads only pages written since the
  // machine was built (a restore marks every page): reading all 16 MiB first faulted in every
  // untouched page, 70-200 ms on a loaded host for the first digest of each side of a pair.
  for (let p = 0; p < pages; p++) {
    const e = epochs.page[p]!;
    if (all ? e > 0 : e > state.epoch) hashPage(ram, m.bus.ram32, p, hashes);
  }
  state.epoch = epochs.epoch;
  const regs = JSON.stringify({
    hart: m.hart.save(),
    clint: m.clint.save(), plic: m.plic.save(), uart: m.uart.save(), rtc: m.rtc.save(),
    virtio: m.virtio.map((d) => d.save()),
  });
  return createHash('sha256').update(hashes).update(regs).digest('hex').slice(0, 32);
}

const MAGIC = 0x46_54_53_31; // "FTS1"

/**
 * Wire form for streaming a snapshot to a new backup: magic, JSON header length, JSON header,
 * a bitmap of non-zero 4 KiB pages, then those pages. Zero pages (most of a fresh guest's RAM)
 * cost one bit. `written`, for a snapshot of a machine's live RAM: its page epochs, so pages
 * never written are known zero without reading them.
 */
export function encodeSnapshot(s: MachineSnapshot, written?: Uint32Array): Uint8Array {
  const header = new TextEncoder().encode(JSON.stringify({ ...s, ram: undefined, nonZeroPages: undefined }));
  const pages = s.ram.length / PAGE_BYTES;
  const bitmap = new Uint8Array(Math.ceil(pages / 8));
  const ram = bufferOf(s.ram);
  let used = 0;
  for (let p = 0; p < pages; p++) {
    // `written` (a machine's page epochs, for its live RAM): a page never written is zero unread.
    if (written?.[p] === 0) continue;
    if (!isZeroPage(ram, p)) { bitmap[p >>> 3]! |= 1 << (p & 7); used++; }
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

/** The non-RAM part of a snapshot, taken from the machine with RAM left in place (no 16 MiB copy). */
const liveState = (m: Machine): MachineSnapshot => ({
  version: 1,
  memoryMiB: m.memoryMiB,
  icount: m.icount,
  hart: m.hart.save(),
  devices: {
    clint: m.clint.save(), plic: m.plic.save(), uart: m.uart.save(), test: m.test.save(), rtc: m.rtc.save(),
    virtio: m.virtio.map((d) => d.save()),
  },
  ram: m.bus.ram,
});

/** "FTD1": a packed incremental snapshot starts with these 4 bytes, then its deflated body. A full one is a bare zlib stream (0x78 ...). */
const DELTA_MAGIC = [0x46, 0x54, 0x44, 0x31] as const;

export const isDeltaSnapshot = (packed: Uint8Array): boolean =>
  packed.length >= 4 && DELTA_MAGIC.every((b, i) => packed[i] === b);

/** A delta's page bitmap, in whole words. */
const deltaBitmapBytes = (pages: number): number => Math.ceil(pages / 32) * 4;

/** What a delta says about its place in the chain: the icount of the snapshot it applies to, and its number after the full one. */
interface DeltaHeader extends Omit<MachineSnapshot, 'ram'> {
  base: number;
  n: number;
}

/**
 * A snapshot whose state is captured but not yet deflated: a full one (an encoded snapshot,
 * deflated alone) or a delta body (deflated with the previous snapshot's header as dictionary).
 */
export interface UnpackedSnapshot {
  full: boolean;
  body: Uint8Array;
  dictionary?: Uint8Array;
}

/** When a recording snapshots, and when it writes a full snapshot instead of a delta. */
export interface ChainPolicy {
  /** Instructions between snapshots while the guest's memory is quiet: what a seek replays at most there. */
  every: number;
  /**
   * A guest that wrote this many pages or more since the previous check is rewriting memory:
   * a snapshot now would carry pages the next one carries again, so it waits (up to `maxGap`).
   */
  churnPages: number;
  /** Never more instructions than this between two snapshots: what a seek replays at worst. */
  maxGap: number;
  /**
   * A full snapshot once the deltas since the last full one add up to this many times its
   * size (or `minChainBytes`, whichever is more): a seek inflates a bounded amount.
   */
  deltaBytesPerFull: number;
  minChainBytes: number;
}

export const chainPolicy = (every: number): ChainPolicy => ({
  every,
  churnPages: 16,
  maxGap: every * 10,
  deltaBytesPerFull: 4,
  minChainBytes: 4 << 20,
});

/**
 * The snapshots of one recording (`ftvm record`): a full one, then deltas, each holding the
 * pages written since the previous snapshot as XOR against that snapshot's content (deflate
 * turns the unchanged words of a page into almost nothing), until the policy asks for a full
 * one again. Costs only at snapshot time: the dirty pages come from the bus's bits (set by
 * stores anyway for the digest), and a shadow copy of RAM as of the previous snapshot gives
 * the XOR base. The chain owns the shadow (one RAM size of host memory).
 */
export class SnapshotChain {
  private shadow: Uint8Array | undefined;
  /** The previous snapshot's header: the next delta's deflate dictionary (registers and devices change little). */
  private prevHeader: Uint8Array = new Uint8Array(0);
  /** The sweep the previous snapshot is as of, and the one the previous churn check was. */
  private epoch = 0;
  private checkEpoch = 0;
  private prevIcount = 0;
  private nextCheck = 0;
  private deltas = 0;
  private fullBytes = 0;
  private deltaBytes = 0;
  /** Snapshots taken so far, deferred checks, and their packed bytes: for benchmarks. */
  readonly stats = { full: 0, delta: 0, deferred: 0, fullBytes: 0, deltaBytes: 0 };

  constructor(private readonly m: Machine, private readonly policy: ChainPolicy) {}

  /** At a batch boundary: a packed snapshot if one is due now, else undefined (the usual case: one comparison). */
  poll(): Uint8Array | undefined {
    const u = this.pollUnpacked();
    return u && this.packSync(u);
  }

  /** A packed snapshot of the machine now (full or delta): what a log's snapshot entry carries. */
  take(): Uint8Array {
    return this.packSync(this.takeUnpacked());
  }

  /** As `poll`, but the snapshot comes unpacked (its state captured, not yet deflated: `packSync`). */
  pollUnpacked(): UnpackedSnapshot | undefined {
    const ic = this.m.icount;
    if (ic < this.nextCheck) return undefined;
    this.nextCheck = ic + this.policy.every;
    if (this.shadow !== undefined && ic - this.prevIcount < this.policy.maxGap) {
      const epochs = sweepDirty(this.m);
      let recent = 0;
      for (let p = 0; p < epochs.page.length; p++) if (epochs.page[p]! > this.checkEpoch) recent++;
      this.checkEpoch = epochs.epoch;
      if (recent >= this.policy.churnPages) {
        this.stats.deferred++;
        return undefined;
      }
    }
    return this.takeUnpacked();
  }

  /**
   * The machine's state now as a snapshot body not yet deflated (pages found, XORed, copied):
   * bench/record-offload.mjs deflates such bodies in several ways. The chain's full-or-delta
   * policy counts packed bytes as `packSync` reports them.
   */
  takeUnpacked(): UnpackedSnapshot {
    const m = this.m;
    const epochs = sweepDirty(m);
    const ram = m.bus.ram;
    const full = this.shadow === undefined || this.shadow.length !== ram.length ||
      this.deltaBytes >= Math.max(this.fullBytes * this.policy.deltaBytesPerFull, this.policy.minChainBytes);
    let u: UnpackedSnapshot;
    if (full) {
      const raw = encodeSnapshot(liveState(m), epochs.page);
      this.prevHeader = fullHeader(raw);
      this.updateShadow(raw, epochs);
      this.deltas = 0;
      this.fullBytes = raw.length;
      this.deltaBytes = 0;
      this.stats.full++;
      u = { full: true, body: raw };
    } else {
      const dictionary = this.prevHeader;
      const { body, header } = this.delta(epochs);
      this.prevHeader = header;
      this.deltas++;
      this.stats.delta++;
      u = { full: false, body, dictionary };
    }
    this.epoch = this.checkEpoch = epochs.epoch;
    this.prevIcount = m.icount;
    this.nextCheck = m.icount + this.policy.every;
    return u;
  }

  /** Deflates `u` on this thread. */
  packSync(u: UnpackedSnapshot): Uint8Array {
    const z = deflateSync(u.body, u.full ? { level: 1 } : { level: 1, dictionary: u.dictionary! });
    return this.packed(u, z);
  }

  private packed(u: UnpackedSnapshot, z: Uint8Array): Uint8Array {
    if (u.full) {
      this.fullBytes = z.length;
      this.stats.fullBytes += z.length;
      return z;
    }
    const packed = new Uint8Array(4 + z.length);
    packed.set(DELTA_MAGIC);
    packed.set(z, 4);
    this.deltaBytes += packed.length;
    this.stats.deltaBytes += packed.length;
    return packed;
  }

  /**
   * Makes the shadow equal RAM at a full snapshot without copying all of RAM: a new shadow is
   * zeroed memory (the OS maps it lazily) that gets the full snapshot's non-zero pages; an
   * existing one is equal to RAM as of the previous snapshot, so only the pages written since
   * can differ.
   */
  private updateShadow(raw: Uint8Array, epochs: PageEpochs): void {
    const ram = this.m.bus.ram;
    const pages = ram.length / PAGE_BYTES;
    if (this.shadow?.length === ram.length) {
      for (let p = 0; p < pages; p++) {
        if (epochs.page[p]! > this.epoch) this.shadow.set(ram.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), p * PAGE_BYTES);
      }
      return;
    }
    const shadow = new Uint8Array(ram.length);
    const bitmapAt = 8 + new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(4, true);
    for (let p = 0; p < pages; p++) {
      if (raw[bitmapAt + (p >>> 3)]! & (1 << (p & 7))) shadow.set(ram.subarray(p * PAGE_BYTES, (p + 1) * PAGE_BYTES), p * PAGE_BYTES);
    }
    this.shadow = shadow;
  }

  private delta(epochs: PageEpochs): { body: Uint8Array; header: Uint8Array } {
    const m = this.m;
    const shadow = this.shadow!;
    const ram32 = m.bus.ram32;
    const shadow32 = new Int32Array(shadow.buffer, shadow.byteOffset, shadow.length >>> 2);
    const pages = epochs.page.length;
    const bitmap = new Uint8Array(deltaBitmapBytes(pages));
    const changed: number[] = [];
    for (let p = 0; p < pages; p++) {
      if (epochs.page[p]! <= this.epoch) continue;
      // Written is not changed: a stack page rewritten with the same words costs nothing.
      for (let i = p << 10, end = i + 1024; i < end; i++) {
        if (ram32[i] !== shadow32[i]) {
          changed.push(p);
          bitmap[p >>> 3]! |= 1 << (p & 7);
          break;
        }
      }
    }
    // Padded with spaces to whole words, so the pages after it can be read as words.
    const json = JSON.stringify({ ...liveState(m), ram: undefined, base: this.prevIcount, n: this.deltas + 1 });
    const header = new TextEncoder().encode(json.padEnd(json.length + ((4 - (json.length & 3)) & 3)));
    if (header.length & 3) throw new Error('non-ASCII snapshot header');
    const body = new Uint8Array(4 + header.length + bitmap.length + changed.length * PAGE_BYTES);
    new DataView(body.buffer).setUint32(0, header.length, true);
    body.set(header, 4);
    body.set(bitmap, 4 + header.length);
    const at = 4 + header.length + bitmap.length;
    const out32 = new Int32Array(body.buffer, at, changed.length * 1024);
    for (let k = 0; k < changed.length; k++) {
      const w0 = changed[k]! << 10;
      for (let i = 0; i < 1024; i++) {
        const now = ram32[w0 + i]!;
        out32[(k << 10) + i] = now ^ shadow32[w0 + i]!;
        shadow32[w0 + i] = now;
      }
    }
    return { body, header };
  }
}

/**
 * The state a log's snapshot chain describes at `chain[chain.length - 1]`: `chain` is a full
 * snapshot followed by every delta after it, in log order. Throws on a chain with a hole, a
 * delta that does not fit its base, or bytes that do not decode.
 */
export function resolveSnapshotChain(chain: readonly { icount: number; data: Uint8Array }[]): MachineSnapshot {
  const first = chain[0];
  if (!first) throw new Error('no snapshot');
  if (isDeltaSnapshot(first.data)) throw new Error(`the snapshot at icount ${first.icount} is incremental and the full one it builds on is missing`);
  const firstRaw = inflate(first.data);
  let snap = decodeSnapshot(firstRaw);
  let prevHeader = fullHeader(firstRaw);
  // Which pages the chain holds (the full snapshot's bitmap, then every page a delta changes):
  // all others are zero, and a restore need not touch them.
  const nonZeroPages = new Uint8Array(snap.ram.length / PAGE_BYTES);
  const fullBitmapAt = 8 + prevHeader.length;
  for (let p = 0; p < nonZeroPages.length; p++) nonZeroPages[p] = (firstRaw[fullBitmapAt + (p >>> 3)]! >>> (p & 7)) & 1;
  const ram32 = new Int32Array(snap.ram.buffer, snap.ram.byteOffset, snap.ram.length >>> 2);
  for (let k = 1; k < chain.length; k++) {
    const { icount, data } = chain[k]!;
    if (!isDeltaSnapshot(data)) throw new Error(`the snapshot at icount ${icount} is full, not a delta`);
    let body: Uint8Array;
    try {
      body = inflateSync(data.subarray(4), { dictionary: prevHeader });
    } catch (e) {
      // The dictionary is the previous snapshot's header: zlib checks it before any byte.
      if (/dictionary/i.test((e as Error).message)) {
        throw new Error(`incremental snapshot at icount ${icount} builds on another snapshot than the one at icount ${snap.icount} (one is missing or damaged)`);
      }
      throw new Error(`snapshot does not inflate: ${(e as Error).message}`);
    }
    const dv = new DataView(body.buffer, body.byteOffset, body.byteLength);
    if (body.length < 4) throw new Error(`truncated incremental snapshot at icount ${icount}`);
    const headerLen = dv.getUint32(0, true);
    if (4 + headerLen > body.length) throw new Error(`truncated incremental snapshot header at icount ${icount}`);
    let header: DeltaHeader;
    try {
      header = JSON.parse(new TextDecoder().decode(body.subarray(4, 4 + headerLen))) as DeltaHeader;
    } catch {
      throw new Error(`unreadable incremental snapshot header at icount ${icount}`);
    }
    if (header.version !== 1 || header.memoryMiB !== snap.memoryMiB) throw new Error(`incremental snapshot at icount ${icount} does not fit a ${snap.memoryMiB} MiB machine`);
    if (header.base !== snap.icount || header.n !== k || header.icount !== icount) {
      throw new Error(`incremental snapshot at icount ${icount} builds on icount ${String(header.base)} (delta ${String(header.n)}), the chain has icount ${snap.icount} (delta ${k - 1})`);
    }
    const pages = snap.ram.length / PAGE_BYTES;
    const bitmapAt = 4 + headerLen;
    let at = bitmapAt + deltaBitmapBytes(pages);
    if (at > body.length) throw new Error(`truncated incremental snapshot bitmap at icount ${icount}`);
    for (let p = 0; p < pages; p++) {
      if ((body[bitmapAt + (p >>> 3)]! & (1 << (p & 7))) === 0) continue;
      if (at + PAGE_BYTES > body.length) throw new Error(`truncated incremental snapshot pages at icount ${icount}`);
      // `at` need not be 4-aligned in the inflated body: read words through the DataView.
      for (let i = 0, w = p << 10; i < 1024; i++) ram32[w + i]! ^= dv.getInt32(at + i * 4, true);
      nonZeroPages[p] = 1;
      at += PAGE_BYTES;
    }
    if (at !== body.length) throw new Error(`trailing bytes after incremental snapshot pages at icount ${icount}`);
    prevHeader = body.subarray(4, 4 + headerLen);
    const { base: _base, n: _n, ...state } = header;
    snap = { ...state, ram: snap.ram };
  }
  return { ...snap, nonZeroPages };
}

/** The JSON header of an encoded (inflated) full snapshot, as encodeSnapshot laid it out. */
const fullHeader = (raw: Uint8Array): Uint8Array => raw.subarray(8, 8 + new DataView(raw.buffer, raw.byteOffset, raw.byteLength).getUint32(4, true));

function inflate(data: Uint8Array): Uint8Array {
  try {
    return inflateSync(data);
  } catch (e) {
    throw new Error(`snapshot does not inflate: ${(e as Error).message}`);
  }
}

/**
 * The chain that ends at `entries[index]` (a snapshot entry): back to the newest full snapshot
 * before it, skipping the entries that are not snapshots.
 */
export function snapshotChainAt<E extends { type: string; icount: number }>(entries: readonly E[], index: number): (E & { data: Uint8Array })[] {
  const chain: (E & { data: Uint8Array })[] = [];
  for (let i = index; i >= 0; i--) {
    const e = entries[i]! as E & { data?: Uint8Array };
    if (e.type !== 'snapshot' || !e.data) continue;
    chain.push(e as E & { data: Uint8Array });
    if (!isDeltaSnapshot(e.data)) break;
  }
  return chain.reverse();
}
