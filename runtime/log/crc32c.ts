// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), slicing-by-8 over a table built once.
// Castagnoli rather than IEEE because it detects more error patterns at the frame sizes the
// log uses; a table keeps it cheap enough to run on every frame (DESIGN §2: a bad frame is an
// error, never a guess).

const POLY = 0x82f63b78;

const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let k = 0; k < 256; k++) {
    let c = k;
    for (let i = 0; i < 8; i++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0]![k] = c >>> 0;
  }
  for (let k = 0; k < 256; k++) {
    for (let s = 1; s < 8; s++) t[s]![k] = (t[s - 1]![k]! >>> 8) ^ t[0]![t[s - 1]![k]! & 0xff]!;
  }
  return t;
})();

/** CRC-32C of `buf[start, end)`, as an unsigned 32-bit number. */
export function crc32c(buf: Uint8Array, start = 0, end = buf.length): number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = TABLES as [
    Uint32Array, Uint32Array, Uint32Array, Uint32Array,
    Uint32Array, Uint32Array, Uint32Array, Uint32Array,
  ];
  let crc = ~0;
  let i = start;
  for (; i + 8 <= end; i += 8) {
    crc ^= buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24);
    crc =
      t7[crc & 0xff]! ^ t6[(crc >>> 8) & 0xff]! ^ t5[(crc >>> 16) & 0xff]! ^ t4[crc >>> 24]! ^
      t3[buf[i + 4]!]! ^ t2[buf[i + 5]!]! ^ t1[buf[i + 6]!]! ^ t0[buf[i + 7]!]!;
  }
  for (; i < end; i++) crc = t0[(crc ^ buf[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}
