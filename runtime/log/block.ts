// Blocks: the log file's framing from file version 2 on (runtime/log/file.ts). The wire between
// primary and backup keeps codec.ts's one frame per entry; only the file uses blocks.
//
// A block holds the entries of one write (the recorder writes every 500 k instructions or
// 64 KiB), so the fixed costs of a frame (magic, length, CRC) and the seq are paid once per
// write instead of once per entry: a 1 kHz timer tick is 2-4 bytes instead of 12.
//
// Block layout:
//   [magic u8 = 0xF8][length varint][first seq varint][entry]...[crc32c u32 LE]
//   entry: [head varint = icount delta * 16 + type][payload]
// - `length` counts the bytes after the length field, CRC included; the CRC covers everything
//   before it, from the magic byte on.
// - seq is implied: the entries of a block are numbered from `first seq` on, and a block's
//   first seq must follow the previous block's last one.
// - icount is a difference from the previous entry's (across blocks; 0 before the first).
//   Type 0 is a gap (icount moves by its delta, no entry): for a delta too large to share a
//   safe integer with the type (2^48 instructions and more, which no recording reaches).
// - Payloads (type numbers as in codec.ts):
//     timer                  nothing
//     mtime, rtc, seed       svarint: the value less the previous value of the same kind
//     console                u8 byte
//     net-rx                 uvarint length, frame
//     disk-read              uvarint tag, uvarint length, data
//     disk-done              uvarint tag, uvarint status
//     progress               uvarint released
//     output                 u8 kind, svarint: count less the previous count of that kind
//     digest                 u8 length (<= 32), bytes
//     snapshot               uvarint length, data
//     end                    svarint code, u8 reason (0: none, else 1 + index)
//   The "previous" values and counts run across blocks (0 before the first).
// A block is decoded whole or not at all: a bad or cut block ends the readable log there.

import { crc32c } from './crc32c.js';
import { LogFrameError } from './codec.js';
import type { EndReason, LogEntry, LogPayload, OutputKind } from './entry.js';
import type { ValueKind } from '../types.js';
import { uvarintSize, VarintReader, writeSvarint, writeUvarint } from './varint.js';

export const BLOCK_MAGIC = 0xf8;
/** Blocks above this are rejected as a corrupt length rather than read. */
export const MAX_BLOCK_BYTES = 512 * 1024 * 1024;

const T = {
  gap: 0, timer: 1, mtime: 2, rtc: 3, seed: 4, console: 5, netRx: 6, diskRead: 7, diskDone: 8,
  progress: 9, output: 10, digest: 11, snapshot: 12, end: 13,
} as const;
const VALUE_KINDS: readonly ValueKind[] = ['mtime', 'rtc', 'seed'];
const OUTPUT_KINDS: readonly OutputKind[] = ['console', 'power', 'net', 'disk-write'];
const END_REASONS: readonly EndReason[] = ['halt', 'fault', 'stopped'];
const DIGEST_RE = /^(?:[0-9a-f]{2}){0,32}$/;
/** Largest icount delta that shares a safe integer with a type: delta * 16 + 15 < 2^53. */
const MAX_DELTA = 2 ** 48;
/** Room before the entries for the header (magic, a 5-byte length, an 8-byte seq), written at seal. */
const HEADROOM = 16;
/** The smallest block: magic, 1-byte length, 1-byte seq, one 1-byte entry, CRC. */
const MIN_LENGTH = 1 + 1 + 4;

const isUint = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

function bad(what: string): never {
  throw new RangeError(`log entry: ${what}`);
}

/**
 * Gathers entries into one block per `seal`, keeping the stream's state (seq, icount, values,
 * output counts) across blocks. Entries are written straight into one reused buffer: no
 * object or array per entry.
 */
export class BlockEncoder {
  private buf = new Uint8Array(64 * 1024);
  private pos = HEADROOM;
  private firstSeq = -1;
  private hasPrev = false;
  private prevSeq = 0;
  private prevIcount = 0;
  private readonly prevValue = [0, 0, 0];
  private readonly prevOutput = [0, 0, 0, 0];

  /** Bytes of the entries appended since the last seal. */
  get pendingBytes(): number {
    return this.pos - HEADROOM;
  }

  /** Appends the entry `seq` at `icount`. Throws RangeError for an invalid or out-of-order entry (nothing is appended then). */
  append(e: LogPayload, seq: number, icount: number): void {
    if (!(isUint(seq) && isUint(icount))) bad(`seq and icount must be safe integers >= 0 (seq ${seq})`);
    if (this.hasPrev) {
      if (!(seq === this.prevSeq + 1)) bad(`seq ${seq} does not follow ${this.prevSeq}`);
      if (!(icount >= this.prevIcount)) bad(`icount ${icount} < previous ${this.prevIcount}`);
    }
    let type: number;
    let bytes: Uint8Array | undefined;
    let max = 32;
    switch (e.type) {
      case 'timer': type = T.timer; break;
      case 'progress': if (!isUint(e.released)) bad(`progress released ${e.released}`); type = T.progress; break;
      case 'value': {
        const k = VALUE_KINDS.indexOf(e.kind);
        if (!(k >= 0)) bad(`value kind ${String(e.kind)}`);
        if (!isUint(e.value)) bad(`value ${e.value} must be a safe integer >= 0`);
        type = T.mtime + k;
        break;
      }
      case 'console':
        if (!(Number.isInteger(e.byte) && e.byte >= 0 && e.byte <= 255)) bad(`console byte ${e.byte}`);
        type = T.console; break;
      case 'net-rx': type = T.netRx; bytes = e.frame; break;
      case 'disk-read': if (!isUint(e.tag)) bad(`disk tag ${e.tag}`); type = T.diskRead; bytes = e.data; break;
      case 'disk-done':
        if (!(isUint(e.tag) && isUint(e.status))) bad(`disk tag ${e.tag} status ${e.status}`);
        type = T.diskDone; break;
      case 'output':
        if (!(OUTPUT_KINDS.includes(e.kind) && isUint(e.count))) bad(`output ${String(e.kind)} x${e.count}`);
        type = T.output; break;
      case 'digest':
        if (!(typeof e.digest === 'string' && DIGEST_RE.test(e.digest))) bad('digest must be lowercase hex of <= 32 bytes');
        type = T.digest; bytes = Buffer.from(e.digest, 'hex'); break;
      case 'snapshot': type = T.snapshot; bytes = e.data; break;
      case 'end':
        if (!Number.isSafeInteger(e.code)) bad(`end code ${e.code}`);
        if (e.reason !== undefined && !END_REASONS.includes(e.reason)) bad(`end reason ${String(e.reason)}`);
        type = T.end; break;
      default: {
        const never: never = e;
        throw new RangeError(`log entry: unknown type ${String((never as { type: unknown }).type)}`);
      }
    }
    if (bytes !== undefined) {
      if (!(bytes instanceof Uint8Array)) bad(`${e.type} bytes must be a Uint8Array`);
      max += bytes.length;
    }
    // Gaps (one per 2^48 instructions), head, payload.
    let delta = this.hasPrev ? icount - this.prevIcount : icount;
    const gaps = delta < MAX_DELTA ? 0 : Math.ceil(delta / (MAX_DELTA - 1));
    if (this.pos + max + 8 * gaps + HEADROOM + 4 > MAX_BLOCK_BYTES) bad(`a block would exceed ${MAX_BLOCK_BYTES} bytes`);
    this.reserve(max + 8 * gaps);
    const s = this.buf;
    let p = this.pos;
    while (delta >= MAX_DELTA) {
      p = writeUvarint(s, p, (MAX_DELTA - 1) * 16 + T.gap);
      delta -= MAX_DELTA - 1;
    }
    p = writeUvarint(s, p, delta * 16 + type);
    switch (e.type) {
      case 'value': {
        const k = type - T.mtime;
        p = writeSvarint(s, p, e.value - this.prevValue[k]!);
        this.prevValue[k] = e.value;
        break;
      }
      case 'console': s[p++] = e.byte; break;
      case 'net-rx': p = writeUvarint(s, p, bytes!.length); break;
      case 'disk-read': p = writeUvarint(s, writeUvarint(s, p, e.tag), bytes!.length); break;
      case 'disk-done': p = writeUvarint(s, writeUvarint(s, p, e.tag), e.status); break;
      case 'progress': p = writeUvarint(s, p, e.released); break;
      case 'output': {
        const k = OUTPUT_KINDS.indexOf(e.kind);
        s[p++] = k;
        p = writeSvarint(s, p, e.count - this.prevOutput[k]!);
        this.prevOutput[k] = e.count;
        break;
      }
      case 'digest': s[p++] = bytes!.length; break;
      case 'snapshot': p = writeUvarint(s, p, bytes!.length); break;
      case 'end':
        p = writeSvarint(s, p, e.code);
        s[p++] = e.reason === undefined ? 0 : 1 + END_REASONS.indexOf(e.reason);
        break;
      default: break;
    }
    if (bytes !== undefined) {
      s.set(bytes, p);
      p += bytes.length;
    }
    this.pos = p;
    if (this.firstSeq < 0) this.firstSeq = seq;
    this.hasPrev = true;
    this.prevSeq = seq;
    this.prevIcount = icount;
  }

  /**
   * The block of everything appended since the last seal, or undefined if nothing was. The
   * bytes are a view of the encoder's buffer, valid until the next `append`: write them first.
   */
  seal(): Uint8Array | undefined {
    if (this.firstSeq < 0) return undefined;
    this.reserve(4);
    const s = this.buf;
    // The header goes right before the entries: magic, length, first seq.
    const seqSize = uvarintSize(this.firstSeq);
    const length = seqSize + (this.pos - HEADROOM) + 4;
    const start = HEADROOM - seqSize - uvarintSize(length) - 1;
    s[start] = BLOCK_MAGIC;
    writeUvarint(s, writeUvarint(s, start + 1, length), this.firstSeq);
    const crc = crc32c(s, start, this.pos);
    let p = this.pos;
    s[p++] = crc & 0xff;
    s[p++] = (crc >>> 8) & 0xff;
    s[p++] = (crc >>> 16) & 0xff;
    s[p++] = crc >>> 24;
    const block = s.subarray(start, p);
    this.pos = HEADROOM;
    this.firstSeq = -1;
    // A full snapshot may have grown the buffer a lot: give that back at the next append.
    if (s.length > 4 * 1024 * 1024) this.shrink = true;
    return block;
  }

  private shrink = false;

  private reserve(n: number): void {
    if (this.shrink && this.pos === HEADROOM) {
      this.buf = new Uint8Array(64 * 1024);
      this.shrink = false;
    }
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    const grown = new Uint8Array(Math.max(need, this.buf.length * 2));
    grown.set(this.buf.subarray(0, this.pos));
    this.buf = grown;
  }
}

/** What `decodeBlocks` read: every entry of the whole, valid blocks, and why it stopped early. */
export interface BlockScan {
  entries: LogEntry[];
  /** Offset (as `base` counts) just past the last valid block. */
  end: number;
  /** A bad block, or (with `truncated`) the bytes ending inside one. */
  error?: LogFrameError;
  /** The bytes end inside a block (a torn tail, as a killed writer leaves), not a bad one. */
  truncated: boolean;
}

/**
 * Decodes the blocks of `bytes[at, ...)`. Offsets in errors count from `base` + 0 at `bytes[0]`.
 * Never throws for bad bytes: it stops at the first bad or cut block and says why.
 */
export function decodeBlocks(bytes: Uint8Array, at: number, base = 0): BlockScan {
  const st = new BlockState();
  const entries: LogEntry[] = [];
  while (at < bytes.length) {
    const off = base + at;
    let end: number;
    try {
      end = st.block(bytes, at, off, entries);
    } catch (err) {
      if (!(err instanceof LogFrameError)) throw err;
      return { entries, end: off, error: err, truncated: false };
    }
    if (end < 0) {
      return {
        entries, end: off, truncated: true,
        error: new LogFrameError('length', off, `the log ends inside a block (${bytes.length - at} bytes left)`, entries),
      };
    }
    at = end;
  }
  return { entries, end: base + at, truncated: false };
}

/** The stream's state as blocks are read: what the next block's deltas are relative to. */
class BlockState {
  private nextSeq = -1;
  private icount = 0;
  private readonly values = [0, 0, 0];
  private readonly outputs = [0, 0, 0, 0];

  /** Decodes the block at bytes[at] into `out`; returns the offset after it, or -1 if the bytes end inside it. */
  block(bytes: Uint8Array, at: number, off: number, out: LogEntry[]): number {
    if (bytes[at] !== BLOCK_MAGIC) throw new LogFrameError('magic', off, `expected 0x${BLOCK_MAGIC.toString(16)}, got 0x${bytes[at]!.toString(16)}`);
    let length = 0;
    let p = at + 1;
    let mul = 1;
    for (;;) {
      if (p >= bytes.length) return -1;
      if (p - (at + 1) >= 5) throw new LogFrameError('length', off, 'length varint longer than 5 bytes');
      const b = bytes[p++]!;
      length += (b & 0x7f) * mul;
      mul *= 0x80;
      if (b < 0x80) break;
    }
    if (length < MIN_LENGTH || length > MAX_BLOCK_BYTES) throw new LogFrameError('length', off, `expected ${MIN_LENGTH}..${MAX_BLOCK_BYTES}, got ${length}`);
    const end = p + length;
    if (end > bytes.length) return -1;
    const crcAt = end - 4;
    const want = (bytes[crcAt]! | (bytes[crcAt + 1]! << 8) | (bytes[crcAt + 2]! << 16) | (bytes[crcAt + 3]! << 24)) >>> 0;
    const got = crc32c(bytes, at, crcAt);
    if (want !== got) {
      throw new LogFrameError('crc', off, `expected 0x${want.toString(16).padStart(8, '0')}, got 0x${got.toString(16).padStart(8, '0')}`);
    }
    // Decoded into a copy of the state and committed only once the whole block is good.
    const r = new VarintReader(bytes, p, crcAt);
    let seq = r.uvarint();
    if (!r.ok) throw new LogFrameError('payload', off, 'first seq overruns the block');
    if (this.nextSeq >= 0 && seq !== this.nextSeq) throw new LogFrameError('seq-gap', off, `expected seq ${this.nextSeq}, got ${seq}`);
    let icount = this.icount;
    const values = [...this.values];
    const outputs = [...this.outputs];
    const entries: LogEntry[] = [];
    // NOTE a plain function of its arguments, not a closure over `seq`: a captured loop
    // variable would live in a heap context and slow every entry down.
    const fail = (what: string): never => failAt(off, what);
    let gap = false;
    while (r.pos < crcAt) {
      const head = r.uvarint();
      if (!r.ok) fail(`entry seq ${seq}: head overruns the block`);
      // Integer operations while the head fits 31 bits, so icount stays a small integer
      // (a V8 Smi) as in the entries the frame decoder makes.
      const type = head <= 0x7fffffff ? head & 15 : head % 16;
      icount += head <= 0x7fffffff ? head >>> 4 : (head - type) / 16;
      if (!Number.isSafeInteger(icount)) fail(`entry seq ${seq}: icount overflow`);
      gap = type === T.gap;
      if (gap) continue;
      if (!Number.isSafeInteger(seq)) fail(`entry seq ${seq}: seq overflow`);
      let e: LogEntry;
      switch (type) {
        case T.timer: e = { seq, icount, type: 'timer' }; break;
        case T.mtime: case T.rtc: case T.seed: {
          const k = type - T.mtime;
          const value = values[k]! + r.svarint();
          if (!isUint(value)) fail(`entry seq ${seq}: value ${value} out of range`);
          values[k] = value;
          e = { seq, icount, type: 'value', kind: VALUE_KINDS[k]!, value };
          break;
        }
        case T.console: e = { seq, icount, type: 'console', byte: r.u8() }; break;
        case T.netRx: e = { seq, icount, type: 'net-rx', frame: take(r, r.uvarint(), fail) }; break;
        case T.diskRead: { const tag = r.uvarint(); e = { seq, icount, type: 'disk-read', tag, data: take(r, r.uvarint(), fail) }; break; }
        case T.diskDone: { const tag = r.uvarint(); e = { seq, icount, type: 'disk-done', tag, status: r.uvarint() }; break; }
        case T.progress: e = { seq, icount, type: 'progress', released: r.uvarint() }; break;
        case T.output: {
          const k = r.u8();
          const kind = OUTPUT_KINDS[k];
          if (kind === undefined) fail(`entry seq ${seq}: unknown output kind`);
          const count = outputs[k]! + r.svarint();
          if (!isUint(count)) fail(`entry seq ${seq}: output count ${count} out of range`);
          outputs[k] = count;
          e = { seq, icount, type: 'output', kind: kind!, count };
          break;
        }
        case T.digest: {
          const n = r.u8();
          if (n > 32) fail(`entry seq ${seq}: digest of ${n} bytes > 32`);
          const b = take(r, n, fail);
          e = { seq, icount, type: 'digest', digest: Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex') };
          break;
        }
        case T.snapshot: e = { seq, icount, type: 'snapshot', data: take(r, r.uvarint(), fail) }; break;
        case T.end: {
          const code = r.svarint();
          const reason = r.u8();
          if (reason > END_REASONS.length) fail(`entry seq ${seq}: unknown end reason`);
          e = reason === 0 ? { seq, icount, type: 'end', code } : { seq, icount, type: 'end', code, reason: END_REASONS[reason - 1]! };
          break;
        }
        default: return fail(`entry seq ${seq}: unknown type ${type}`);
      }
      if (!r.ok || r.pos > crcAt) fail(`entry seq ${seq}: ${e.type} payload overruns the block`);
      entries.push(e);
      seq++;
    }
    if (entries.length === 0 || gap) throw new LogFrameError('payload', off, entries.length === 0 ? 'a block without entries' : 'a gap after the last entry');
    for (const e of entries) out.push(e);
    this.nextSeq = seq;
    this.icount = icount;
    this.values.splice(0, 3, ...values);
    this.outputs.splice(0, 4, ...outputs);
    return end;
  }
}

function failAt(off: number, what: string): never {
  throw new LogFrameError('payload', off, what);
}

/** `n` bytes from the reader, copied so the caller owns them (the log's bytes can be let go). */
function take(r: VarintReader, n: number, fail: (what: string) => never): Uint8Array {
  if (!r.ok || n > r.end - r.pos) fail(`${n} bytes overrun the block`);
  const out = new Uint8Array(n);
  out.set(r.buf.subarray(r.pos, r.pos + n));
  r.pos += n;
  return out;
}
