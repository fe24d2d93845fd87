/** A minimal RV32 ELF: one PT_LOAD of `words` at 0x8000_0000, entry there. */
export function elfOf(words: number[]): Buffer {
  const b = Buffer.alloc(84 + words.length * 4);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  b.writeUInt16LE(2, 16); b.writeUInt16LE(243, 18); b.writeUInt32LE(1, 20);
  b.writeUInt32LE(0x8000_0000, 24); b.writeUInt32LE(52, 28);
  b.writeUInt16LE(52, 40); b.writeUInt16LE(32, 42); b.writeUInt16LE(1, 44);
  b.writeUInt32LE(1, 52); b.writeUInt32LE(84, 56); b.writeUInt32LE(0x8000_0000, 60); b.writeUInt32LE(0x8000_0000, 64);
  b.writeUInt32LE(words.length * 4, 68); b.writeUInt32LE(words.length * 4, 72);
  words.forEach((w, i) => b.writeInt32LE(w | 0, 84 + 4 * i));
  return b;
}
