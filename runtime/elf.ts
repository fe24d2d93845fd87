// ELF32 little-endian RISC-V executables, as `qemu-system-riscv32 -kernel` loads them: every
// PT_LOAD segment at its physical address, zero-filled from filesz to memsz, entry = e_entry.

const EM_RISCV = 243;
const ET_EXEC = 2;
const PT_LOAD = 1;
const EHDR_BYTES = 52;
const PHDR_BYTES = 32;

/** A bad image. `message` is one line meant for the user, without a stack trace. */
export class ElfError extends Error {
  override readonly name = 'ElfError';
}

export interface ElfSegment {
  /** Physical load address (p_paddr), as QEMU's loader uses. */
  addr: number;
  /** File bytes (a view into the image). */
  data: Uint8Array;
  /** Bytes in memory; those past data.length are zero. */
  memBytes: number;
}

export interface ElfImage {
  entry: number;
  segments: ElfSegment[];
}

const hex = (n: number): string => `0x${n.toString(16).padStart(8, '0')}`;

const ET_NAMES: Record<number, string> = { 0: 'no file type', 1: 'a relocatable object', 3: 'a shared object', 4: 'a core dump' };
const EM_NAMES: Record<number, string> = { 3: 'x86', 8: 'MIPS', 20: 'PowerPC', 40: 'ARM', 62: 'x86-64', 183: 'AArch64' };

/** Parse and validate an executable. Throws only ElfError. */
export function parseElf(image: Uint8Array): ElfImage {
  if (image.length < 4 || image[0] !== 0x7f || image[1] !== 0x45 || image[2] !== 0x4c || image[3] !== 0x46) {
    throw new ElfError('not an ELF file (bad magic)');
  }
  if (image.length < EHDR_BYTES) throw new ElfError(`truncated ELF header (${image.length} of ${EHDR_BYTES} bytes)`);
  const cls = image[4];
  if (cls === 2) throw new ElfError('ELF64 image; ftvm runs 32-bit (RV32) executables');
  if (cls !== 1) throw new ElfError(`unknown ELF class ${cls}`);
  const data = image[5];
  if (data === 2) throw new ElfError('big-endian ELF; RISC-V executables are little-endian');
  if (data !== 1) throw new ElfError(`unknown ELF data encoding ${data}`);

  const dv = new DataView(image.buffer, image.byteOffset, image.byteLength);
  const type = dv.getUint16(16, true);
  const machine = dv.getUint16(18, true);
  if (machine !== EM_RISCV) {
    const name = EM_NAMES[machine] ? ` (${EM_NAMES[machine]})` : '';
    throw new ElfError(`wrong machine ${machine}${name}; expected RISC-V (${EM_RISCV})`);
  }
  if (type !== ET_EXEC) throw new ElfError(`not an executable: e_type ${type} is ${ET_NAMES[type] ?? 'unknown'}`);

  const entry = dv.getUint32(24, true);
  const flags = dv.getUint32(36, true);
  const needs = flagNeeds(flags);
  const phoff = dv.getUint32(28, true);
  const phentsize = dv.getUint16(42, true);
  const phnum = dv.getUint16(44, true);
  if (phnum === 0) throw new ElfError('no program headers');
  if (phentsize < PHDR_BYTES) throw new ElfError(`program header entries of ${phentsize} bytes; expected ${PHDR_BYTES}`);
  if (phoff + phnum * phentsize > image.length) {
    throw new ElfError(`truncated: program headers end at byte ${phoff + phnum * phentsize}, file has ${image.length}`);
  }

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (dv.getUint32(at, true) !== PT_LOAD) continue;
    const offset = dv.getUint32(at + 4, true);
    const paddr = dv.getUint32(at + 12, true);
    const filesz = dv.getUint32(at + 16, true);
    const memsz = dv.getUint32(at + 20, true);
    if (memsz === 0) continue;
    if (filesz > memsz) throw new ElfError(`segment ${i}: file size ${filesz} exceeds memory size ${memsz}`);
    if (offset + filesz > image.length) {
      throw new ElfError(`truncated: segment ${i} data ends at byte ${offset + filesz}, file has ${image.length}`);
    }
    if (paddr + memsz > 0x1_0000_0000) throw new ElfError(`segment ${i} at ${hex(paddr)} wraps past the 32-bit address space`);
    segments.push({ addr: paddr, data: image.subarray(offset, offset + filesz), memBytes: memsz });
  }
  if (segments.length === 0) throw new ElfError('no loadable (PT_LOAD) segments');
  const arch = archAttribute(image, dv);
  if (arch !== undefined) {
    // C is named once, from e_flags, when both say so.
    const extra = lackedExtensions(arch).filter((x) => !(x === 'c' && (flags & EF_RISCV_RVC) !== 0));
    if (extra.length > 0) needs.push(`extension${extra.length > 1 ? 's' : ''} ${extra.map((x) => (x.length === 1 ? x.toUpperCase() : x)).join(', ')} (Tag_RISCV_arch "${arch}")`);
  }
  if (needs.length > 0) throw new ElfError(`built for another RISC-V: it needs ${needs.join(', ')}; ftvm runs RV32IM + Zicsr (-march=rv32im -mabi=ilp32)`);
  return { entry, segments };
}

// e_flags of the RISC-V psABI ("ELF Object Files: File Header").
const EF_RISCV_RVC = 0x1;
const EF_RISCV_FLOAT_ABI = 0x6;
const EF_RISCV_RVE = 0x8;
const FLOAT_ABIS = ['', 'the ilp32f hard-float ABI', 'the ilp32d hard-float ABI', 'the quad-float ABI'];

/** What e_flags says the image needs beyond RV32IM with the soft-float ilp32 ABI. */
function flagNeeds(flags: number): string[] {
  const needs: string[] = [];
  if (flags & EF_RISCV_RVE) needs.push('the RV32E base (e_flags RVE)');
  if (flags & EF_RISCV_RVC) needs.push('compressed instructions (e_flags RVC)');
  const abi = (flags & EF_RISCV_FLOAT_ABI) >> 1;
  if (abi !== 0) needs.push(`${FLOAT_ABIS[abi]} (e_flags 0x${flags.toString(16)})`);
  return needs;
}

/** ftvm's hart: RV32I, M, and the extensions GCC and binutils name for what RV32IM already holds. */
const SUPPORTED = new Set(['i', 'm', 'zicsr', 'zifencei', 'zmmul']);

/**
 * The extensions an arch string (`rv32i2p1_m2p0_a2p1_c2p0_zicsr2p0`, or plain `rv32imac`) names
 * beyond SUPPORTED, in its order. Single letters may run together; each may carry a version
 * (`2p1`); multi-letter ones (z*, s*, x*) stand alone between underscores.
 */
export function lackedExtensions(arch: string): string[] {
  const m = /^rv(32|64|128)(.*)$/i.exec(arch);
  if (!m) return [`an unknown ISA`];
  const lacked: string[] = m[1] === '32' ? [] : [`RV${m[1]}`];
  const add = (x: string): void => { if (!SUPPORTED.has(x) && !lacked.includes(x)) lacked.push(x); };
  for (const part of m[2]!.toLowerCase().split('_')) {
    if (part === '') continue;
    if (/^[zsx]/.test(part)) add(/^(.+?)(\d+(?:p\d+)?)?$/.exec(part)![1]!);
    else for (const l of part.matchAll(/([a-z])(?:\d+(?:p\d+)?)?/g)) add(l[1] === 'g' ? 'g (imafd_zicsr_zifencei)' : l[1]!);
  }
  return lacked;
}

const SHT_RISCV_ATTRIBUTES = 0x7000_0003;
const SHDR_BYTES = 40;
const TAG_FILE = 1;
const TAG_RISCV_ARCH = 5;

/**
 * Tag_RISCV_arch from the `.riscv.attributes` section, or undefined when the image has none (a
 * hand-built image, or section headers cut off: they are not needed to load). Layout per the
 * psABI "Attributes" chapter: 'A', then subsections [u32 length, "riscv\0", Tag_File, u32 size,
 * attributes]; an attribute is a ULEB128 tag and a ULEB128 value (even tag) or a NUL-ended string (odd).
 */
function archAttribute(image: Uint8Array, dv: DataView): string | undefined {
  const shoff = dv.getUint32(32, true);
  const shentsize = dv.getUint16(46, true);
  const shnum = dv.getUint16(48, true);
  if (shoff === 0 || shnum === 0 || shentsize < SHDR_BYTES || shoff + shnum * shentsize > image.length) return undefined;
  for (let i = 0; i < shnum; i++) {
    const at = shoff + i * shentsize;
    if (dv.getUint32(at + 4, true) !== SHT_RISCV_ATTRIBUTES) continue;
    const offset = dv.getUint32(at + 16, true);
    const size = dv.getUint32(at + 20, true);
    if (offset + size > image.length) return undefined;
    return readArch(image.subarray(offset, offset + size));
  }
  return undefined;
}

function readArch(sec: Uint8Array): string | undefined {
  const bad = (): never => { throw new ElfError('malformed .riscv.attributes section'); };
  const dv = new DataView(sec.buffer, sec.byteOffset, sec.byteLength);
  let p = 0;
  const uleb = (end: number): number => {
    let v = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= end || shift > 28) bad();
      const b = sec[p++]!;
      v += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return v;
    }
  };
  const str = (end: number): string => {
    const nul = sec.indexOf(0, p);
    if (nul < 0 || nul >= end) bad();
    const s = new TextDecoder().decode(sec.subarray(p, nul));
    p = nul + 1;
    return s;
  };
  if (sec.length === 0 || sec[0] !== 0x41 /* 'A' */) bad();
  p = 1;
  while (p < sec.length) {
    if (p + 4 > sec.length) bad();
    const subEnd = p + dv.getUint32(p, true);
    if (subEnd <= p + 4 || subEnd > sec.length) bad();
    p += 4;
    const vendor = str(subEnd);
    while (p < subEnd) {
      const tagAt = p;
      const tag = uleb(subEnd);
      if (p + 4 > subEnd) bad();
      const end = tagAt + dv.getUint32(p, true);
      if (end > subEnd || end < p + 4) bad();
      p += 4;
      if (vendor !== 'riscv' || tag !== TAG_FILE) { p = end; continue; }
      while (p < end) {
        const attr = uleb(end);
        const value = attr % 2 === 1 ? str(end) : uleb(end);
        if (attr === TAG_RISCV_ARCH) return value as string;
      }
    }
    p = subEnd;
  }
  return undefined;
}

/** Every segment must land in RAM: ftvm loads nothing into device windows or ROM. */
export function checkFitsRam(elf: ElfImage, ramBase: number, ramBytes: number): void {
  const mib = ramBytes / (1024 * 1024);
  for (const s of elf.segments) {
    if (s.addr < ramBase || s.addr + s.memBytes > ramBase + ramBytes) {
      const inside = s.addr >= ramBase && s.addr < ramBase + ramBytes;
      const why = inside ? `does not fit in ${mib} MiB of RAM (try a larger --mem)` : `lies outside RAM ${hex(ramBase)}..${hex(ramBase + ramBytes)}`;
      throw new ElfError(`segment at ${hex(s.addr)} (${s.memBytes} bytes) ${why}`);
    }
  }
  if (elf.entry < ramBase || elf.entry >= ramBase + ramBytes) throw new ElfError(`entry point ${hex(elf.entry)} lies outside RAM`);
}
