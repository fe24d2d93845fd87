// Decoded instructions, kept per RAM word in flat typed arrays so the interpreter's hot loop
// reads op/rd/rs1/rs2/imm by word index and never unpacks a field (STYLE: "the hot loop runs
// over instructions pre-decoded into typed arrays").
// NOTE: the arrays span all of RAM but stay zero-filled except where code was decoded; the
// OS backs untouched zero pages lazily, so only code pages cost resident memory. For that
// reason nothing here ever fills a whole array: drops go granule by granule.
import { CODE_SHIFT, type Bus } from '../bus.js';
import { decode, newDecoded, Op } from './decode.js';

const WORDS_PER_GRANULE = 1 << (CODE_SHIFT - 2);

export class DecodeCache {
  /** Per RAM word: Op, or Op.Undecoded (0) when the word has not been decoded since it changed. */
  readonly op: Uint8Array;
  readonly rd: Uint8Array;
  readonly rs1: Uint8Array;
  readonly rs2: Uint8Array;
  /** Immediate (zimm for the csr*i forms, shift amount for shifts by constant). */
  readonly imm: Int32Array;
  /** CSR number for Zicsr ops. */
  readonly csr: Uint16Array;
  private readonly d = newDecoded();

  constructor(private readonly bus: Bus) {
    const words = bus.ramBytes >>> 2;
    this.op = new Uint8Array(words);
    this.rd = new Uint8Array(words);
    this.rs1 = new Uint8Array(words);
    this.rs2 = new Uint8Array(words);
    this.imm = new Int32Array(words);
    this.csr = new Uint16Array(words);
  }

  /** Decode RAM word `w` into the slots; returns its Op. */
  decodeAt(w: number): number {
    const d = this.d;
    decode(this.bus.ram32[w]!, d);
    this.rd[w] = d.rd;
    this.rs1[w] = d.rs1;
    this.rs2[w] = d.rs2;
    this.imm[w] = d.imm;
    this.csr[w] = d.csr;
    this.op[w] = d.op;
    // Stores into this granule must now tell us (Bus.noteWrite, JIT store checks).
    this.bus.code[w >>> (CODE_SHIFT - 2)] = 1;
    return d.op;
  }

  dropGranule(g: number): void {
    const w0 = g * WORDS_PER_GRANULE;
    this.op.fill(Op.Undecoded, w0, w0 + WORDS_PER_GRANULE);
  }

  /** Forget every decoded word. Only granules marked in bus.code can hold any. */
  dropAll(): void {
    const code = this.bus.code;
    for (let g = 0; g < code.length; g++) if (code[g] !== 0) this.dropGranule(g);
  }
}
