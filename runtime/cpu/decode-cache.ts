// Decoded instructions, kept per RAM word so the interpreter decodes each word once (STYLE:
// "the hot loop runs over instructions pre-decoded into typed arrays"). Allocated per 4 KiB
// page on first use: code is a small part of RAM.
import { CODE_SHIFT, PAGE_SHIFT, type Bus } from '../bus.js';
import { decode, newDecoded, Op } from './decode.js';

const WORDS_PER_PAGE = 1 << (PAGE_SHIFT - 2);
const WORDS_PER_GRANULE = 1 << (CODE_SHIFT - 2);

/**
 * Per word, two int32 slots: `meta` = 1 (valid) | op << 1 | rd << 8 | rs1 << 13 | rs2 << 18,
 * and `imm` (the CSR number for Zicsr ops, whose zimm is rs1). meta 0 = not decoded.
 */
export class DecodeCache {
  private readonly pages: (Int32Array | undefined)[] = [];
  private readonly d = newDecoded();

  constructor(private readonly bus: Bus) {}

  /** The page's slots for RAM word `w`, decoding the word if needed; the slot index is (w % 1024) * 2. */
  page(w: number): Int32Array {
    const p = w >>> (PAGE_SHIFT - 2);
    const pg = this.pages[p] ?? (this.pages[p] = new Int32Array(2 * WORDS_PER_PAGE));
    const i = (w & (WORDS_PER_PAGE - 1)) * 2;
    if (pg[i] === 0) {
      const d = this.d;
      decode(this.bus.ram32[w]!, d);
      pg[i] = 1 | (d.op << 1) | (d.rd << 8) | (d.rs1 << 13) | (d.rs2 << 18);
      pg[i + 1] = d.op >= Op.Csrrw ? d.csr : d.imm;
      // Stores into this granule must now tell us (Bus.noteWrite, JIT store checks).
      this.bus.code[w >>> (CODE_SHIFT - 2)] = 1;
    }
    return pg;
  }

  dropGranule(g: number): void {
    const w0 = g * WORDS_PER_GRANULE;
    const pg = this.pages[w0 >>> (PAGE_SHIFT - 2)];
    if (pg === undefined) return;
    const i = (w0 & (WORDS_PER_PAGE - 1)) * 2;
    pg.fill(0, i, i + 2 * WORDS_PER_GRANULE);
  }

  dropAll(): void {
    this.pages.length = 0;
  }
}
