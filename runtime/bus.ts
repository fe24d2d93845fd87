import type { MmioDevice } from './types.js';

/** Dirty tracking granularity: snapshots and re-protection copy 4 KiB pages (DESIGN §3). */
export const PAGE_SHIFT = 12;
/**
 * Translated-code tracking granularity. Finer than a page so that data stored next to code
 * (picolibc packs .data right after .text) rarely throws away hot translations.
 */
export const CODE_SHIFT = 8;

/** Whoever caches code derived from RAM (the CPU's decoder and translator). */
export interface CodeSink {
  /** Translations covering code granule `g` are stale. */
  dropGranule(g: number): void;
  dropAll(): void;
}

/**
 * The system bus: guest RAM plus memory-mapped devices found by address (TinyEMU's
 * `cpu_register_device`). The CPU reaches RAM directly through the typed-array views for
 * speed; everything else goes through `deviceAt`.
 */
export class Bus {
  readonly ram: Uint8Array;
  readonly ram32: Int32Array;
  /** One byte per 4 KiB RAM page, set to 1 by every guest store or DMA write; snapshots clear it. */
  readonly dirty: Uint8Array;
  /** One byte per 256-byte granule: 1 while the CPU holds decoded or translated code from it. */
  readonly code: Uint8Array;
  /** Set by the CPU that caches code from this RAM. */
  codeSink: CodeSink | undefined;

  private readonly devBase: number[] = [];
  private readonly devSize: number[] = [];
  private readonly devs: MmioDevice[] = [];

  constructor(
    readonly ramBase: number,
    readonly ramBytes: number,
  ) {
    if (ramBytes <= 0 || ramBytes % (1 << PAGE_SHIFT) !== 0) {
      throw new Error(`RAM size must be a positive multiple of 4 KiB, got ${ramBytes}`);
    }
    if (ramBase % (1 << PAGE_SHIFT) !== 0 || ramBase + ramBytes > 2 ** 32) {
      throw new Error(`bad RAM base 0x${ramBase.toString(16)}`);
    }
    this.ram = new Uint8Array(ramBytes);
    this.ram32 = new Int32Array(this.ram.buffer);
    this.dirty = new Uint8Array(ramBytes >>> PAGE_SHIFT);
    this.code = new Uint8Array(ramBytes >>> CODE_SHIFT);
  }

  map(base: number, size: number, dev: MmioDevice): void {
    const end = base + size;
    if (this.overlapsRam(base, size)) throw new Error(`device at 0x${base.toString(16)} overlaps RAM`);
    for (let i = 0; i < this.devs.length; i++) {
      if (base < this.devBase[i]! + this.devSize[i]! && this.devBase[i]! < end) {
        throw new Error(`device at 0x${base.toString(16)} overlaps another`);
      }
    }
    this.devBase.push(base);
    this.devSize.push(size);
    this.devs.push(dev);
  }

  /** Index of the device whose window holds `addr` (unsigned), or -1. */
  deviceAt(addr: number): number {
    for (let i = 0; i < this.devs.length; i++) {
      if (addr - this.devBase[i]! >>> 0 < this.devSize[i]!) return i;
    }
    return -1;
  }
  device(i: number): MmioDevice {
    return this.devs[i]!;
  }
  deviceBase(i: number): number {
    return this.devBase[i]!;
  }

  inRam(addr: number, len: number): boolean {
    const off = addr - this.ramBase;
    return off >= 0 && len >= 0 && off + len <= this.ramBytes;
  }

  /** Host-side (DMA, ELF loader) access to RAM; marks pages dirty and drops translated code there. */
  writeRam(addr: number, bytes: Uint8Array): void {
    if (!this.inRam(addr, bytes.length)) {
      throw new RangeError(`writeRam outside RAM: 0x${addr.toString(16)}+${bytes.length}`);
    }
    const off = addr - this.ramBase;
    this.ram.set(bytes, off);
    this.noteWrite(off, bytes.length);
  }

  readRam(addr: number, len: number): Uint8Array {
    if (!this.inRam(addr, len)) throw new RangeError(`readRam outside RAM: 0x${addr.toString(16)}+${len}`);
    const off = addr - this.ramBase;
    return this.ram.slice(off, off + len);
  }

  /** Bookkeeping after RAM bytes [off, off+len) changed (offsets from ramBase). */
  noteWrite(off: number, len: number): void {
    if (len <= 0) return;
    const last = off + len - 1;
    for (let p = off >>> PAGE_SHIFT; p <= last >>> PAGE_SHIFT; p++) this.dirty[p] = 1;
    for (let g = off >>> CODE_SHIFT; g <= last >>> CODE_SHIFT; g++) {
      if (this.code[g] !== 0) this.codeSink?.dropGranule(g);
    }
  }

  /** Drop every translated block (after a restore). */
  invalidateAll(): void {
    this.codeSink?.dropAll();
    this.code.fill(0);
  }

  private overlapsRam(base: number, size: number): boolean {
    return base < this.ramBase + this.ramBytes && this.ramBase < base + size;
  }
}
