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
  return { entry, segments };
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
