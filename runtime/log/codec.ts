// Binary frames of the log (DESIGN §2: "a length, a version and a CRC; a bad frame is an
// error, never a guess").
//
// Frame layout:
//   [magic u8 = 0xF7][version u8 = 1][type u8][length varint]
//   [seq varint][icount varint][payload][crc32c u32 LE]
// - `type` bits 0-6 name the entry type (value entries carry their kind in it); bit 7 marks an
//   ABSOLUTE frame. In an absolute frame seq, icount and values are written as they are; in a
//   DELTA frame seq and icount are differences from the previous frame of the same stream, and
//   a value is the difference from the previous value of the same kind (mtime and rtc grow
//   slowly, so deltas take 2-3 bytes instead of 6-8). An Encoder writes its first frame and
//   every snapshot frame absolute, so a reader can start decoding at any snapshot (seeking).
//   `encodeEntry` writes a lone absolute frame.
// - `length` counts the bytes after the length field, CRC included.
// - the CRC covers everything before it, from the magic byte on.
// Within a stream seq rises by exactly 1 per frame and icount never decreases; the decoder
// checks both.

import { crc32c } from './crc32c.js';
import type { EndReason, LogEntry, LogPayload, OutputKind } from './entry.js';
import type { ValueKind } from '../types.js';
import { svarintSize, uvarintSize, VarintReader, writeSvarint, writeUvarint } from './varint.js';

export const FRAME_MAGIC = 0xf7;
export const FRAME_VERSION = 1;
/** Frames above this are rejected as a corrupt length rather than awaited. */
export const MAX_FRAME_BYTES = 512 * 1024 * 1024;

const ABSOLUTE = 0x80;
const T = {
  timer: 1, mtime: 2, rtc: 3, seed: 4, console: 5, netRx: 6, diskRead: 7, diskDone: 8,
  progress: 9, output: 10, digest: 11, snapshot: 12, end: 13,
} as const;
const VALUE_KINDS: readonly ValueKind[] = ['mtime', 'rtc', 'seed'];
const OUTPUT_KINDS: readonly OutputKind[] = ['console', 'power', 'net', 'disk-write'];
/** An end frame's payload is its code, then a reason byte only when the entry names one. */
const END_REASONS: readonly EndReason[] = ['halt', 'fault', 'stopped'];
const DIGEST_RE = /^(?:[0-9a-f]{2}){0,32}$/;
/** magic, version, type, CRC. */
const FIXED_BYTES = 7;
/** Smallest `length`: seq and icount varints (1 byte each) and the CRC. */
const MIN_LENGTH = 6;

export type LogFrameErrorCode = 'magic' | 'version' | 'length' | 'crc' | 'seq-gap' | 'type' | 'payload';

/** A frame failed a check. Carries the stream offset of the frame and the entries decoded before it. */
export class LogFrameError extends Error {
  override readonly name = 'LogFrameError';
  constructor(
    readonly code: LogFrameErrorCode,
    /** Byte offset of the bad frame's first byte within the decoded stream. */
    readonly offset: number,
    readonly detail: string,
    /** Valid entries from the same `push` that precede the bad frame, so none are lost. */
    readonly entries: readonly LogEntry[] = [],
  ) {
    super(`log frame ${code} error at byte ${offset}: ${detail}`);
  }
}

function bad(what: string): never {
  throw new RangeError(`log entry: ${what}`);
}

const isUint = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

/** Encodes a stream of entries, keeping the delta state (seq, icount, values) between frames. */
export class Encoder {
  private hasPrev = false;
  private prevSeq = 0;
  private prevIcount = 0;
  private readonly prevValue = [0, 0, 0];
  private scratch = new Uint8Array(256);

  /** Encodes `e` as one frame. Throws RangeError for an invalid entry or a seq/icount out of order. */
  encode(e: LogEntry, forceAbsolute = false): Uint8Array {
    return this.encodeAt(e, e.seq, e.icount, forceAbsolute);
  }

  /**
   * Encodes `payload` as the frame of entry `seq` at `icount`: what `encode` does, for a writer
   * that numbers entries itself and so need not build an entry object per input.
   */
  encodeAt(e: LogPayload, seq: number, icount: number, forceAbsolute = false): Uint8Array {
    if (!(isUint(seq) && isUint(icount))) bad(`seq and icount must be safe integers >= 0 (seq ${seq})`);
    const absolute = forceAbsolute || !this.hasPrev || e.type === 'snapshot';
    if (this.hasPrev) {
      if (!(seq === this.prevSeq + 1)) bad(`seq ${seq} does not follow ${this.prevSeq}`);
      if (!(icount >= this.prevIcount)) bad(`icount ${icount} < previous ${this.prevIcount}`);
    }
    if (absolute) this.prevValue.fill(0);
    const seqField = absolute ? seq : seq - this.prevSeq;
    const icountField = absolute ? icount : icount - this.prevIcount;

    let type: number;
    let payloadMax: number;
    let bytes: Uint8Array | undefined;
    switch (e.type) {
      case 'timer': type = T.timer; payloadMax = 0; break;
      case 'progress':
        if (!isUint(e.released)) bad(`progress released ${e.released}`);
        type = T.progress; payloadMax = 9; break;
      case 'value': {
        const k = VALUE_KINDS.indexOf(e.kind);
        if (!(k >= 0)) bad(`value kind ${String(e.kind)}`);
        if (!(isUint(e.value))) bad(`value ${e.value} must be a safe integer >= 0`);
        type = T.mtime + k; payloadMax = 9; break;
      }
      case 'console':
        if (!(Number.isInteger(e.byte) && e.byte >= 0 && e.byte <= 255)) bad(`console byte ${e.byte}`);
        type = T.console; payloadMax = 1; break;
      case 'net-rx': type = T.netRx; bytes = e.frame; payloadMax = 0; break;
      case 'disk-read':
        if (!(isUint(e.tag))) bad(`disk tag ${e.tag}`);
        type = T.diskRead; bytes = e.data; payloadMax = 8; break;
      case 'disk-done':
        if (!(isUint(e.tag) && isUint(e.status))) bad(`disk tag ${e.tag} status ${e.status}`);
        type = T.diskDone; payloadMax = 16; break;
      case 'output': {
        if (!(OUTPUT_KINDS.includes(e.kind) && isUint(e.count))) bad(`output ${String(e.kind)} x${e.count}`);
        type = T.output; payloadMax = 9; break;
      }
      case 'digest':
        if (!(typeof e.digest === 'string' && DIGEST_RE.test(e.digest))) bad(`digest must be lowercase hex of <= 32 bytes`);
        type = T.digest; bytes = Buffer.from(e.digest, 'hex'); payloadMax = 0; break;
      case 'snapshot': type = T.snapshot; bytes = e.data; payloadMax = 0; break;
      case 'end':
        if (!(Number.isSafeInteger(e.code))) bad(`end code ${e.code}`);
        if (e.reason !== undefined && !END_REASONS.includes(e.reason)) bad(`end reason ${String(e.reason)}`);
        type = T.end; payloadMax = 10; break;
      default: {
        const never: never = e;
        throw new RangeError(`log entry: unknown type ${String((never as { type: unknown }).type)}`);
      }
    }
    if (bytes) if (!(bytes instanceof Uint8Array)) bad(`${e.type} bytes must be a Uint8Array`);

    // Body = seq, icount, payload; written into scratch, then framed.
    const need = 16 + payloadMax + (bytes?.length ?? 0);
    if (this.scratch.length < need) this.scratch = new Uint8Array(Math.max(need, this.scratch.length * 2));
    const s = this.scratch;
    let p = writeUvarint(s, 0, seqField);
    p = writeUvarint(s, p, icountField);
    switch (e.type) {
      case 'value': {
        const k = type - T.mtime;
        p = writeSvarint(s, p, e.value - this.prevValue[k]!);
        this.prevValue[k] = e.value;
        break;
      }
      case 'console': s[p++] = e.byte; break;
      case 'disk-read': p = writeUvarint(s, p, e.tag); break;
      case 'disk-done': p = writeUvarint(s, writeUvarint(s, p, e.tag), e.status); break;
      case 'output': s[p++] = OUTPUT_KINDS.indexOf(e.kind); p = writeUvarint(s, p, e.count); break;
      case 'end':
        p = writeSvarint(s, p, e.code);
        if (e.reason !== undefined) s[p++] = END_REASONS.indexOf(e.reason);
        break;
      case 'progress': p = writeUvarint(s, p, e.released); break;
      default: break;
    }
    if (bytes) {
      s.set(bytes, p);
      p += bytes.length;
    }
    const length = p + 4;
    if (!(length + FIXED_BYTES + 5 <= MAX_FRAME_BYTES)) bad(`frame of ${length} bytes exceeds MAX_FRAME_BYTES`);
    const frame = new Uint8Array(3 + uvarintSize(length) + length);
    frame[0] = FRAME_MAGIC;
    frame[1] = FRAME_VERSION;
    frame[2] = type | (absolute ? ABSOLUTE : 0);
    const bodyAt = writeUvarint(frame, 3, length);
    frame.set(s.subarray(0, p), bodyAt);
    const crcAt = bodyAt + p;
    const crc = crc32c(frame, 0, crcAt);
    frame[crcAt] = crc & 0xff;
    frame[crcAt + 1] = (crc >>> 8) & 0xff;
    frame[crcAt + 2] = (crc >>> 16) & 0xff;
    frame[crcAt + 3] = crc >>> 24;

    this.hasPrev = true;
    this.prevSeq = seq;
    this.prevIcount = icount;
    return frame;
  }
}

/** One self-contained (absolute) frame. */
export const encodeEntry = (e: LogEntry): Uint8Array => new Encoder().encode(e, true);

/**
 * Decodes frames from arbitrarily chunked bytes. After an error the decoder stays failed and
 * rethrows it: it never guesses where the next good frame starts.
 */
export class Decoder {
  private buf: Uint8Array = new Uint8Array(0);
  /** Stream offset of buf[0]. */
  private base = 0;
  private hasPrev = false;
  private prevSeq = 0;
  private prevIcount = 0;
  private readonly prevValue = [0, 0, 0];
  private failed: LogFrameError | undefined;

  /** Bytes received but not yet part of a complete frame. */
  get pendingBytes(): number {
    return this.buf.length;
  }

  /** Stream offset of the next frame. */
  get offset(): number {
    return this.base;
  }

  push(chunk: Uint8Array): LogEntry[] {
    if (this.failed) throw this.failed;
    if (this.buf.length === 0) this.buf = chunk;
    else if (chunk.length > 0) {
      const joined = new Uint8Array(this.buf.length + chunk.length);
      joined.set(this.buf);
      joined.set(chunk, this.buf.length);
      this.buf = joined;
    }
    const out: LogEntry[] = [];
    const buf = this.buf;
    let at = 0;
    try {
      for (;;) {
        const n = this.frameAt(buf, at, out);
        if (n === 0) break;
        at += n;
      }
    } catch (err) {
      if (!(err instanceof LogFrameError)) throw err;
      this.failed = new LogFrameError(err.code, err.offset, err.detail, out);
      this.buf = new Uint8Array(0);
      throw this.failed;
    }
    // Keep only the incomplete tail; copy it so the caller's chunk is not retained whole.
    this.buf = at === buf.length ? new Uint8Array(0) : at === 0 ? buf : Uint8Array.from(buf.subarray(at));
    this.base += at;
    return out;
  }

  /** The stream ended: throws a 'length' error if a frame was cut short. */
  finish(): void {
    if (this.failed) throw this.failed;
    if (this.buf.length > 0) {
      this.failed = new LogFrameError('length', this.base, `stream ended inside a frame (${this.buf.length} bytes left)`);
      throw this.failed;
    }
  }

  /** Decodes the frame at buf[at]; returns its size, or 0 if it is not complete yet. */
  private frameAt(buf: Uint8Array, at: number, out: LogEntry[]): number {
    const avail = buf.length - at;
    const off = this.base + at;
    if (avail < 1) return 0;
    if (buf[at] !== FRAME_MAGIC) throw new LogFrameError('magic', off, `expected 0x${FRAME_MAGIC.toString(16)}, got 0x${buf[at]!.toString(16)}`);
    if (avail < 2) return 0;
    if (buf[at + 1] !== FRAME_VERSION) throw new LogFrameError('version', off, `expected ${FRAME_VERSION}, got ${buf[at + 1]}`);
    if (avail < 4) return 0;
    // Length varint, at most 5 bytes (MAX_FRAME_BYTES < 2^35).
    let length = 0;
    let p = at + 3;
    let mul = 1;
    for (;;) {
      if (p >= buf.length) return 0;
      if (p - (at + 3) >= 5) throw new LogFrameError('length', off, 'length varint longer than 5 bytes');
      const b = buf[p++]!;
      length += (b & 0x7f) * mul;
      mul *= 0x80;
      if (b < 0x80) break;
    }
    if (length < MIN_LENGTH || length > MAX_FRAME_BYTES) {
      throw new LogFrameError('length', off, `expected ${MIN_LENGTH}..${MAX_FRAME_BYTES}, got ${length}`);
    }
    const end = p + length;
    if (end > buf.length) return 0;
    const crcAt = end - 4;
    const want = (buf[crcAt]! | (buf[crcAt + 1]! << 8) | (buf[crcAt + 2]! << 16) | (buf[crcAt + 3]! << 24)) >>> 0;
    const got = crc32c(buf, at, crcAt);
    if (want !== got) {
      throw new LogFrameError('crc', off, `expected 0x${want.toString(16).padStart(8, '0')}, got 0x${got.toString(16).padStart(8, '0')}`);
    }
    out.push(this.body(buf[at + 2]!, new VarintReader(buf, p, crcAt), off));
    return end - at;
  }

  private body(typeByte: number, r: VarintReader, off: number): LogEntry {
    const absolute = (typeByte & ABSOLUTE) !== 0;
    const type = typeByte & ~ABSOLUTE;
    if (type < T.timer || type > T.end) throw new LogFrameError('type', off, `unknown type ${type}`);
    const seqField = r.uvarint();
    const icountField = r.uvarint();
    if (!r.ok) throw new LogFrameError('payload', off, 'seq/icount varint overruns the frame');
    if (!absolute && !this.hasPrev) throw new LogFrameError('seq-gap', off, 'delta frame with no preceding frame');
    const seq = absolute ? seqField : this.prevSeq + seqField;
    const icount = absolute ? icountField : this.prevIcount + icountField;
    if (this.hasPrev && seq !== this.prevSeq + 1) throw new LogFrameError('seq-gap', off, `expected seq ${this.prevSeq + 1}, got ${seq}`);
    if (this.hasPrev && icount < this.prevIcount) throw new LogFrameError('payload', off, `icount ${icount} < previous ${this.prevIcount}`);
    if (!Number.isSafeInteger(seq) || !Number.isSafeInteger(icount)) throw new LogFrameError('payload', off, 'seq/icount overflow');
    const values = absolute ? [0, 0, 0] : this.prevValue;

    let e: LogEntry;
    switch (type) {
      case T.timer: e = { seq, icount, type: 'timer' }; break;
      case T.progress: e = { seq, icount, type: 'progress', released: r.uvarint() }; break;
      case T.mtime: case T.rtc: case T.seed: {
        const k = type - T.mtime;
        const value = values[k]! + r.svarint();
        if (!isUint(value)) throw new LogFrameError('payload', off, `value ${value} out of range`);
        values[k] = value;
        e = { seq, icount, type: 'value', kind: VALUE_KINDS[k]!, value };
        break;
      }
      case T.console: e = { seq, icount, type: 'console', byte: r.u8() }; break;
      case T.netRx: e = { seq, icount, type: 'net-rx', frame: r.rest() }; break;
      case T.diskRead: { const tag = r.uvarint(); e = { seq, icount, type: 'disk-read', tag, data: r.rest() }; break; }
      case T.diskDone: { const tag = r.uvarint(); e = { seq, icount, type: 'disk-done', tag, status: r.uvarint() }; break; }
      case T.output: {
        const kind = OUTPUT_KINDS[r.u8()];
        if (kind === undefined) throw new LogFrameError('payload', off, 'unknown output kind');
        e = { seq, icount, type: 'output', kind, count: r.uvarint() };
        break;
      }
      case T.digest: {
        const bytes = r.rest();
        if (bytes.length > 32) throw new LogFrameError('payload', off, `digest of ${bytes.length} bytes > 32`);
        e = { seq, icount, type: 'digest', digest: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('hex') };
        break;
      }
      case T.snapshot: e = { seq, icount, type: 'snapshot', data: r.rest() }; break;
      default: {
        const code = r.svarint();
        if (r.ok && r.pos < r.end) {
          const reason = END_REASONS[r.u8()];
          if (reason === undefined) throw new LogFrameError('payload', off, 'unknown end reason');
          e = { seq, icount, type: 'end', code, reason };
        } else e = { seq, icount, type: 'end', code };
        break;
      }
    }
    if (!r.ok) throw new LogFrameError('payload', off, `${e.type} payload overruns the frame`);
    if (r.pos !== r.end) throw new LogFrameError('payload', off, `${r.end - r.pos} stray bytes after the ${e.type} payload`);
    // Commit state only once the frame is known good.
    if (absolute) this.prevValue.splice(0, 3, ...values);
    this.hasPrev = true;
    this.prevSeq = seq;
    this.prevIcount = icount;
    return e;
  }
}
