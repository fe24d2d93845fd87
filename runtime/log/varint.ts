// LEB128-style varints for the log codec. Values are JS numbers up to 2^53 - 1 (DESIGN §2:
// 64-bit values are logged as exact numbers < 2^53), so the slow path uses arithmetic, not
// 32-bit bit operations.

/** Longest unsigned varint accepted: 8 bytes hold 56 bits, enough for 2^53 - 1. */
export const MAX_VARINT_BYTES = 8;

export function uvarintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/** Writes unsigned `v` (a safe integer >= 0) at `pos`; returns the position after it. */
export function writeUvarint(buf: Uint8Array, pos: number, v: number): number {
  while (v >= 0x80000000) {
    buf[pos++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  while (v >= 0x80) {
    buf[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[pos++] = v;
  return pos;
}

/**
 * Signed varint: the first byte holds 6 magnitude bits and the sign, the rest is an unsigned
 * varint of the remaining magnitude. Unlike zigzag this stays exact for |v| up to 2^53 - 1,
 * because it never doubles the magnitude past 2^53.
 */
export function svarintSize(v: number): number {
  const m = Math.abs(v);
  return m < 0x40 ? 1 : 1 + uvarintSize(Math.floor(m / 0x40));
}

export function writeSvarint(buf: Uint8Array, pos: number, v: number): number {
  const neg = v < 0;
  const m = neg ? -v : v;
  const low = (m % 0x40) | (neg ? 0x40 : 0);
  if (m < 0x40) {
    buf[pos++] = low;
    return pos;
  }
  buf[pos++] = low | 0x80;
  return writeUvarint(buf, pos, Math.floor(m / 0x40));
}

/** Reads varints from `buf[pos, end)`; `ok` turns false on overrun or an over-long varint. */
export class VarintReader {
  ok = true;
  constructor(
    public buf: Uint8Array,
    public pos: number,
    public end: number,
  ) {}

  uvarint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < MAX_VARINT_BYTES; i++) {
      if (this.pos >= this.end) break;
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * mul;
      if (b < 0x80) {
        if (!Number.isSafeInteger(v)) break;
        return v;
      }
      mul *= 0x80;
    }
    this.ok = false;
    return 0;
  }

  svarint(): number {
    if (this.pos >= this.end) {
      this.ok = false;
      return 0;
    }
    const b = this.buf[this.pos++]!;
    let m = b & 0x3f;
    if (b & 0x80) {
      const hi = this.uvarint();
      m += hi * 0x40;
      if (!Number.isSafeInteger(m)) this.ok = false;
    }
    return b & 0x40 ? 0 - m : m; // 0 - m, not -m: never yields -0
  }

  u8(): number {
    if (this.pos >= this.end) {
      this.ok = false;
      return 0;
    }
    return this.buf[this.pos++]!;
  }

  /** The rest of the window, copied so the caller owns it. */
  rest(): Uint8Array {
    // NOTE: not buf.slice(): on a Node Buffer that is a view, not a copy.
    const out = new Uint8Array(this.end - this.pos);
    out.set(this.buf.subarray(this.pos, this.end));
    this.pos = this.end;
    return out;
  }
}
