// The M extension's non-trivial operations (Unprivileged ISA ch. 13) on int32 values,
// without BigInt: shared by the interpreter and, by reference, the translated blocks.

/** Upper 32 bits of the unsigned 64-bit product, from 16-bit halves (every partial < 2^32). */
export function mulhu(a: number, b: number): number {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const ll = al * bl, lh = al * bh, hl = ah * bl, hh = ah * bh;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (hh + Math.floor(lh / 65536) + Math.floor(hl / 65536) + Math.floor(mid / 65536)) | 0;
}

/** Signed × signed: the unsigned high word minus the sign corrections (mod 2^32). */
export function mulh(a: number, b: number): number {
  return (mulhu(a, b) - (a < 0 ? b : 0) - (b < 0 ? a : 0)) | 0;
}

/** Signed rs1 × unsigned rs2. */
export function mulhsu(a: number, b: number): number {
  return (mulhu(a, b) - (a < 0 ? b : 0)) | 0;
}

// §13.2: division by zero gives all ones (quotient) or the dividend (remainder);
// INT_MIN / -1 overflows to INT_MIN with remainder 0. No trap either way.
export function div(a: number, b: number): number {
  if (b === 0) return -1;
  if (a === -0x80000000 && b === -1) return a;
  return (a / b) | 0;
}
export function divu(a: number, b: number): number {
  if (b === 0) return -1;
  return ((a >>> 0) / (b >>> 0)) | 0;
}
export function rem(a: number, b: number): number {
  if (b === 0) return a;
  if (b === -1) return 0;
  return a % b | 0;
}
export function remu(a: number, b: number): number {
  if (b === 0) return a;
  return (a >>> 0) % (b >>> 0) | 0;
}
