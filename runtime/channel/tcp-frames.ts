// What travels on the TCP logging channel besides log frames, and the pre-shared key.
//
// Primary -> backup: log frames exactly as runtime/log/codec.ts writes them (one Encoder per
// connection, so the first frame is absolute). Backup -> primary: control frames of this file:
//   [magic u8 = 0xF8][version u8 = 1][kind u8][body][crc32c u32 LE]
//   kind 1 = ack, body = seq (uvarint): "every entry up to seq was received";
//   kind 2 = bye, empty body: the backup closes in order (BackupEnd.close).
// One exception flows primary -> backup: a primary that is already running (re-protection,
// DESIGN §3) opens every connection with one hello control frame before its log frames:
//   kind 3 = hello, body = [mode u8: 1 join, 2 busy][generation uvarint][memory MiB uvarint]
// `join`: this primary takes the caller as its new backup; the caller must claim `generation`
// (the live primary's current one) and restore a snapshot into a machine of that memory size.
// `busy`: it has a backup (or is not alone yet) and closes the connection. A primary booting a
// pair with its first backup sends no hello: its first byte is a log frame's magic (0xF7).
// The CRC covers everything before it. A bad control frame fails the channel: as for the log,
// an error, never a guess (DESIGN §2). The magic differs from the log's (0xF7), so a stream
// sent the wrong way round fails on its first byte.

import { readFileSync } from 'node:fs';
import { LogFrameError } from '../log/codec.js';
import { crc32c } from '../log/crc32c.js';
import { MAX_VARINT_BYTES, uvarintSize, VarintReader, writeUvarint } from '../log/varint.js';

export const CONTROL_MAGIC = 0xf8;
export const CONTROL_VERSION = 1;
const KIND_ACK = 1;
const KIND_BYE = 2;
const KIND_HELLO = 3;

export type ControlFrame = { type: 'ack'; seq: number } | { type: 'bye' };

function seal(frame: Uint8Array, crcAt: number): Uint8Array {
  const crc = crc32c(frame, 0, crcAt);
  frame[crcAt] = crc & 0xff;
  frame[crcAt + 1] = (crc >>> 8) & 0xff;
  frame[crcAt + 2] = (crc >>> 16) & 0xff;
  frame[crcAt + 3] = crc >>> 24;
  return frame;
}

export function encodeAck(seq: number): Uint8Array {
  if (!(Number.isSafeInteger(seq) && seq >= 0)) throw new RangeError(`ack seq ${seq}`);
  const frame = new Uint8Array(3 + uvarintSize(seq) + 4);
  frame[0] = CONTROL_MAGIC;
  frame[1] = CONTROL_VERSION;
  frame[2] = KIND_ACK;
  return seal(frame, writeUvarint(frame, 3, seq));
}

export function encodeBye(): Uint8Array {
  const frame = new Uint8Array(7);
  frame[0] = CONTROL_MAGIC;
  frame[1] = CONTROL_VERSION;
  frame[2] = KIND_BYE;
  return seal(frame, 3);
}

export interface Hello {
  mode: 'join' | 'busy';
  /** The generation a joining backup claims if this primary goes silent (its chart's current one). */
  generation: number;
  memoryMiB: number;
}

export function encodeHello(h: Hello): Uint8Array {
  if (!(Number.isSafeInteger(h.generation) && h.generation >= 1 && Number.isSafeInteger(h.memoryMiB) && h.memoryMiB >= 1)) throw new RangeError('hello: bad generation or memory size');
  const frame = new Uint8Array(4 + uvarintSize(h.generation) + uvarintSize(h.memoryMiB) + 4);
  frame[0] = CONTROL_MAGIC;
  frame[1] = CONTROL_VERSION;
  frame[2] = KIND_HELLO;
  frame[3] = h.mode === 'join' ? 1 : 2;
  const at = writeUvarint(frame, writeUvarint(frame, 4, h.generation), h.memoryMiB);
  return seal(frame, at);
}

/**
 * A hello at the start of `buf`: the hello and the bytes it took, or undefined while
 * incomplete. Throws LogFrameError for anything else that starts with the control magic.
 */
export function decodeHello(buf: Uint8Array): { hello: Hello; used: number } | undefined {
  if (buf.length >= 1 && buf[0] !== CONTROL_MAGIC) throw new LogFrameError('magic', 0, `hello: expected 0x${CONTROL_MAGIC.toString(16)}, got 0x${buf[0]!.toString(16)}`);
  if (buf.length >= 2 && buf[1] !== CONTROL_VERSION) throw new LogFrameError('version', 0, `hello: expected version ${CONTROL_VERSION}, got ${buf[1]}`);
  if (buf.length >= 3 && buf[2] !== KIND_HELLO) throw new LogFrameError('type', 0, `hello: expected kind ${KIND_HELLO}, got ${buf[2]}`);
  if (buf.length >= 4 && buf[3] !== 1 && buf[3] !== 2) throw new LogFrameError('payload', 0, `hello: unknown mode ${buf[3]}`);
  let at = 4;
  for (let n = 0; n < 2; n++) {
    const start = at;
    for (;;) {
      if (at >= buf.length) return undefined;
      if (at - start >= MAX_VARINT_BYTES) throw new LogFrameError('length', 0, 'hello: varint too long');
      if (buf[at++]! < 0x80) break;
    }
  }
  if (at + 4 > buf.length) return undefined;
  const want = (buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24)) >>> 0;
  if (want !== crc32c(buf, 0, at)) throw new LogFrameError('crc', 0, 'hello: bad crc');
  const r = new VarintReader(buf, 4, at);
  const generation = r.uvarint();
  const memoryMiB = r.uvarint();
  if (!r.ok || !Number.isSafeInteger(generation) || !Number.isSafeInteger(memoryMiB)) throw new LogFrameError('payload', 0, 'hello: overflow');
  return { hello: { mode: buf[3] === 1 ? 'join' : 'busy', generation, memoryMiB }, used: at + 4 };
}

/**
 * Decodes control frames from arbitrarily chunked bytes. Acks must not go backwards (a
 * replayed ack is refused); failures throw LogFrameError and stay failed.
 */
export class ControlDecoder {
  private buf: Uint8Array = new Uint8Array(0);
  private base = 0;
  private lastAck = -1;
  private failed: LogFrameError | undefined;

  push(chunk: Uint8Array): ControlFrame[] {
    if (this.failed) throw this.failed;
    if (this.buf.length === 0) this.buf = chunk;
    else {
      const joined = new Uint8Array(this.buf.length + chunk.length);
      joined.set(this.buf);
      joined.set(chunk, this.buf.length);
      this.buf = joined;
    }
    const out: ControlFrame[] = [];
    let at = 0;
    try {
      for (;;) {
        const n = this.frameAt(this.buf, at, out);
        if (n === 0) break;
        at += n;
      }
    } catch (err) {
      if (!(err instanceof LogFrameError)) throw err;
      this.failed = err;
      throw err;
    }
    this.buf = at === this.buf.length ? new Uint8Array(0) : Uint8Array.from(this.buf.subarray(at));
    this.base += at;
    return out;
  }

  get pendingBytes(): number {
    return this.buf.length;
  }

  private frameAt(buf: Uint8Array, at: number, out: ControlFrame[]): number {
    const off = this.base + at;
    const avail = buf.length - at;
    if (avail < 1) return 0;
    if (buf[at] !== CONTROL_MAGIC) throw new LogFrameError('magic', off, `control frame: expected 0x${CONTROL_MAGIC.toString(16)}, got 0x${buf[at]!.toString(16)}`);
    if (avail < 2) return 0;
    if (buf[at + 1] !== CONTROL_VERSION) throw new LogFrameError('version', off, `control frame: expected ${CONTROL_VERSION}, got ${buf[at + 1]}`);
    if (avail < 3) return 0;
    const kind = buf[at + 2]!;
    let bodyEnd = at + 3;
    if (kind === KIND_ACK) {
      // The varint ends at the first byte below 0x80.
      for (;;) {
        if (bodyEnd >= buf.length) return 0;
        if (bodyEnd - (at + 3) >= MAX_VARINT_BYTES) throw new LogFrameError('length', off, 'ack seq varint too long');
        if (buf[bodyEnd++]! < 0x80) break;
      }
    } else if (kind !== KIND_BYE) {
      throw new LogFrameError('type', off, `control frame: unknown kind ${kind}`);
    }
    const end = bodyEnd + 4;
    if (end > buf.length) return 0;
    const want = (buf[bodyEnd]! | (buf[bodyEnd + 1]! << 8) | (buf[bodyEnd + 2]! << 16) | (buf[bodyEnd + 3]! << 24)) >>> 0;
    const got = crc32c(buf, at, bodyEnd);
    if (want !== got) throw new LogFrameError('crc', off, `control frame: expected crc 0x${want.toString(16)}, got 0x${got.toString(16)}`);
    if (kind === KIND_BYE) {
      out.push({ type: 'bye' });
    } else {
      const r = new VarintReader(buf, at + 3, bodyEnd);
      const seq = r.uvarint();
      if (!r.ok || !Number.isSafeInteger(seq)) throw new LogFrameError('payload', off, 'ack seq overflow');
      // Acks are coalesced and only rise: one that does not is a replay or a bug, never news.
      if (seq <= this.lastAck) throw new LogFrameError('seq-gap', off, `ack ${seq} after ack ${this.lastAck}`);
      this.lastAck = seq;
      out.push({ type: 'ack', seq });
    }
    return end - at;
  }
}

/** Shortest key accepted: 128 bits. OpenSSL takes at most 256 bytes of PSK in TLS 1.2 here. */
export const MIN_KEY_BYTES = 16;
export const MAX_KEY_BYTES = 256;

/**
 * A pre-shared key from a key file's contents. A file that holds only hex digits (an even
 * number, at least 32, surrounding whitespace ignored) is read as hex, e.g. the output of
 * `openssl rand -hex 32`; anything else is taken as raw bytes, e.g. `head -c 32 /dev/urandom`.
 * Throws RangeError for a key shorter than 16 or longer than 256 bytes.
 */
export function parseKey(contents: Uint8Array): Buffer {
  const text = Buffer.from(contents).toString('latin1').trim();
  const key = /^(?:[0-9a-fA-F]{2}){16,}$/.test(text) ? Buffer.from(text, 'hex') : Buffer.from(contents);
  if (key.length < MIN_KEY_BYTES) throw new RangeError(`pre-shared key: ${key.length} bytes, need at least ${MIN_KEY_BYTES}`);
  if (key.length > MAX_KEY_BYTES) throw new RangeError(`pre-shared key: ${key.length} bytes, at most ${MAX_KEY_BYTES}`);
  return key;
}

export function readKeyFile(file: string): Buffer {
  return parseKey(readFileSync(file));
}
