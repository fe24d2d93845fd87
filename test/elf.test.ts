import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ElfError, checkFitsRam, lackedExtensions, parseElf } from '../runtime/elf.js';

const hello = new Uint8Array(readFileSync(new URL('../guests/hello/hello.elf', import.meta.url)));

/** A minimal valid ELF32 RISC-V executable with one PT_LOAD segment, built by hand. */
function tinyElf(opts: { paddr?: number; filesz?: number; memsz?: number; entry?: number } = {}): Uint8Array {
  const code = new Uint8Array([0x73, 0x00, 0x50, 0x10]); // wfi
  const b = new Uint8Array(52 + 32 + code.length);
  const dv = new DataView(b.buffer);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  dv.setUint16(16, 2, true); // ET_EXEC
  dv.setUint16(18, 243, true); // EM_RISCV
  dv.setUint32(20, 1, true);
  dv.setUint32(24, opts.entry ?? 0x8000_0000, true);
  dv.setUint32(28, 52, true); // phoff
  dv.setUint16(40, 52, true);
  dv.setUint16(42, 32, true);
  dv.setUint16(44, 1, true);
  dv.setUint32(52, 1, true); // PT_LOAD
  dv.setUint32(56, 84, true); // offset
  dv.setUint32(60, opts.paddr ?? 0x8000_0000, true);
  dv.setUint32(64, opts.paddr ?? 0x8000_0000, true);
  dv.setUint32(68, opts.filesz ?? code.length, true);
  dv.setUint32(72, opts.memsz ?? 64, true);
  b.set(code, 84);
  return b;
}

const patched = (img: Uint8Array, at: number, bytes: number[]): Uint8Array => {
  const c = img.slice();
  c.set(bytes, at);
  return c;
};

const reason = (f: () => unknown): string => {
  try { f(); } catch (e) {
    expect(e).toBeInstanceOf(ElfError);
    const msg = (e as Error).message;
    expect(msg).not.toContain('\n');
    return msg;
  }
  throw new Error('expected an ElfError');
};

describe('ELF loader', () => {
  it('parses the hello guest: entry in RAM, loadable segments with zero-fill', () => {
    const elf = parseElf(hello);
    expect(elf.entry).toBe(0x8000_0000);
    expect(elf.segments.length).toBeGreaterThan(0);
    for (const s of elf.segments) expect(s.memBytes).toBeGreaterThanOrEqual(s.data.length);
    expect(() => checkFitsRam(elf, 0x8000_0000, 16 << 20)).not.toThrow();
  });

  it('parses a hand-built image exactly', () => {
    const elf = parseElf(tinyElf({ memsz: 100 }));
    expect(elf.entry).toBe(0x8000_0000);
    expect(elf.segments).toHaveLength(1);
    expect(elf.segments[0]!.addr).toBe(0x8000_0000);
    expect(Array.from(elf.segments[0]!.data)).toEqual([0x73, 0x00, 0x50, 0x10]);
    expect(elf.segments[0]!.memBytes).toBe(100);
  });

  it('names each kind of bad image in one line', () => {
    const t = tinyElf();
    expect(reason(() => parseElf(new TextEncoder().encode('#!/bin/sh\necho hi\n')))).toMatch(/not an ELF/);
    expect(reason(() => parseElf(new Uint8Array(0)))).toMatch(/not an ELF/);
    expect(reason(() => parseElf(t.subarray(0, 30)))).toMatch(/truncated ELF header/);
    expect(reason(() => parseElf(patched(t, 4, [2])))).toMatch(/ELF64/);
    expect(reason(() => parseElf(patched(t, 5, [2])))).toMatch(/big-endian/);
    expect(reason(() => parseElf(patched(t, 18, [62, 0])))).toMatch(/wrong machine 62 \(x86-64\)/);
    expect(reason(() => parseElf(patched(t, 16, [1, 0])))).toMatch(/not an executable.*relocatable/);
    expect(reason(() => parseElf(patched(t, 16, [3, 0])))).toMatch(/shared object/);
    expect(reason(() => parseElf(t.subarray(0, 70)))).toMatch(/truncated: program headers/);
    expect(reason(() => parseElf(t.subarray(0, 86)))).toMatch(/truncated: segment 0 data/);
    expect(reason(() => parseElf(tinyElf({ filesz: 4, memsz: 2 })))).toMatch(/file size 4 exceeds memory size 2/);
    expect(reason(() => parseElf(patched(t, 52, [6])))).toMatch(/no loadable/);
    // Cut inside the text segment (section headers at the end are not needed to load).
    expect(reason(() => parseElf(hello.subarray(0, 0x2000)))).toMatch(/truncated: segment \d+ data/);
  });

  it('rejects segments outside RAM or larger than it', () => {
    expect(reason(() => checkFitsRam(parseElf(tinyElf({ paddr: 0x1000 })), 0x8000_0000, 1 << 20))).toMatch(/outside RAM/);
    expect(reason(() => checkFitsRam(parseElf(tinyElf({ memsz: 2 << 20 })), 0x8000_0000, 1 << 20))).toMatch(/does not fit in 1 MiB.*--mem/);
    expect(reason(() => checkFitsRam(parseElf(tinyElf({ entry: 0x1000 })), 0x8000_0000, 1 << 20))).toMatch(/entry point/);
  });

  it('throws nothing but ElfError on random bytes, truncations and corruptions', () => {
    const onlyElfError = (img: Uint8Array) => {
      try { checkFitsRam(parseElf(img), 0x8000_0000, 16 << 20); } catch (e) {
        if (!(e instanceof ElfError)) throw e;
      }
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 256 }), onlyElfError), { numRuns: 500 });
    fc.assert(fc.property(fc.nat({ max: hello.length }), (n) => onlyElfError(hello.subarray(0, n))), { numRuns: 300 });
    const header = hello.subarray(0, 512);
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat({ max: header.length - 1 }), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), (edits) => {
      const img = hello.slice();
      for (const [at, v] of edits) img[at] = v;
      onlyElfError(img);
    }), { numRuns: 500 });
  });
});

describe('ELF loader: the ISA the image was built for', () => {
  const fixture = (name: string) => new Uint8Array(readFileSync(new URL(`fixtures/${name}`, import.meta.url)));

  it('refuses GCC builds for rv32imac and rv32imafc, naming what they need', () => {
    // test/fixtures/build.sh builds hello with Debian's riscv64-unknown-elf-gcc for each.
    const imac = reason(() => parseElf(fixture('hello-rv32imac.elf')));
    expect(imac).toMatch(/compressed instructions \(e_flags RVC\)/);
    expect(imac).toMatch(/extension A \(Tag_RISCV_arch "rv32i2p1_m2p0_a2p1_c2p0_zicsr2p0_zmmul1p0"\)/);
    const imafc = reason(() => parseElf(fixture('hello-rv32imafc.elf')));
    expect(imafc).toMatch(/compressed instructions/);
    expect(imafc).toMatch(/ilp32f hard-float ABI/);
    expect(imafc).toMatch(/extensions A, F /);
  });

  it('refuses an extension that only the attributes section names', () => {
    // rv32ima: e_flags is 0; only Tag_RISCV_arch says it needs atomics.
    expect(reason(() => parseElf(fixture('hello-rv32ima.elf')))).toMatch(/needs extension A \(Tag_RISCV_arch "rv32i2p1_m2p0_a2p1_zicsr2p0_zmmul1p0"\)/);
  });

  it('refuses each e_flags bit of another ISA on a hand-built image', () => {
    const withFlags = (f: number) => patched(tinyElf(), 36, [f, 0, 0, 0]);
    expect(reason(() => parseElf(withFlags(0x1)))).toMatch(/compressed instructions/);
    expect(reason(() => parseElf(withFlags(0x2)))).toMatch(/ilp32f/);
    expect(reason(() => parseElf(withFlags(0x4)))).toMatch(/ilp32d/);
    expect(reason(() => parseElf(withFlags(0x8)))).toMatch(/RV32E/);
    expect(() => parseElf(withFlags(0x10))).not.toThrow(); // TSO: a memory model, no instructions
  });

  it('loads every committed guest', () => {
    const dir = new URL('../guests/', import.meta.url);
    const elfs = readdirSync(dir, { withFileTypes: true })
      .filter((d) => d.isDirectory() && existsSync(new URL(`${d.name}/${d.name}.elf`, dir)))
      .map((d) => d.name);
    expect(elfs.length).toBeGreaterThanOrEqual(10);
    for (const g of elfs) expect(() => parseElf(new Uint8Array(readFileSync(new URL(`${g}/${g}.elf`, dir)))), g).not.toThrow();
  });

  it('reads arch strings as GCC, binutils and people write them', () => {
    expect(lackedExtensions('rv32i2p1_m2p0_zicsr2p0_zifencei2p0_zmmul1p0')).toEqual([]);
    expect(lackedExtensions('rv32im')).toEqual([]);
    expect(lackedExtensions('rv32imac')).toEqual(['a', 'c']);
    expect(lackedExtensions('rv32i2p1_m2p0_zba1p0_zve32x1p0')).toEqual(['zba', 'zve32x']);
    expect(lackedExtensions('rv32gc')).toEqual(['g (imafd_zicsr_zifencei)', 'c']);
    expect(lackedExtensions('rv32e2p0_m2p0')).toEqual(['e']);
    expect(lackedExtensions('rv64imac')).toEqual(['RV64', 'a', 'c']);
  });

  it('throws nothing but ElfError on a corrupted attributes section', () => {
    const img = fixture('hello-rv32ima.elf');
    const dv = new DataView(img.buffer, img.byteOffset, img.byteLength);
    // The attributes section: the section header of type SHT_RISCV_ATTRIBUTES.
    const shoff = dv.getUint32(32, true);
    let at = -1, size = 0;
    for (let i = 0; i < dv.getUint16(48, true); i++) {
      const h = shoff + i * 40;
      if (dv.getUint32(h + 4, true) === 0x7000_0003) { at = dv.getUint32(h + 16, true); size = dv.getUint32(h + 20, true); }
    }
    expect(at).toBeGreaterThan(0);
    fc.assert(fc.property(fc.array(fc.tuple(fc.nat({ max: size - 1 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (edits) => {
      const c = img.slice();
      for (const [o, v] of edits) c[at + o] = v;
      try { parseElf(c); } catch (e) {
        if (!(e instanceof ElfError)) throw e;
      }
    }), { numRuns: 1000 });
  });
});
