// What travels on the TCP logging channel besides log frames, and the pre-shared key.
//
// Primary -> backup: log frames exactly as runtime/log/codec.ts writes them (one Encoder per
// connection, so the first frame is absolute). Backup -> primary: control frames of this file:
//   [magic u8 = 0xF8][version u8 = 2][kind u8][body][crc32c u32 LE]
//   kind 1 = ack, body = seq (uvarint): "every entry up to seq was received";
//   kind 2 = bye, empty body: the backup closes in order (BackupEnd.close).
// Every connection opens with a handshake that decides membership (DESIGN §3):
//   kind 4 = request, backup -> primary, first after TLS: [length uvarint][JSON JoinRequest]
//   kind 3 = hello, primary -> backup, the answer:        [length uvarint][JSON Hello]
// A hello that admits the backup (`boot` or `join`) names the pair instance and the generation
// the backup claims; the log frames follow it. `busy` and `refused` end the connection. The
// CRC covers everything before it. A bad control frame fails the channel: as for the log, an
// error, never a guess (DESIGN §2). The magic differs from the log's (0xF7), so a stream sent
// the wrong way round fails on its first byte.

import { readFileSync } from 'node:fs';
import { LogFrameError } from '../log/codec.js';
import { crc32c } from '../log/crc32c.js';
import { MAX_VARINT_BYTES, uvarintSize, VarintReader, writeUvarint } from '../log/varint.js';

export const CONTROL_MAGIC = 0xf8;
export const CONTROL_VERSION = 2;
const KIND_ACK = 1;
const KIND_BYE = 2;
const KIND_HELLO = 3;
const KIND_REQUEST = 4;

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

/**
 * Who may join this pair (DESIGN §3 Identity, Membership): the pair instance, made by its
 * primary at first start, and what a replica must run to be one of its members.
 */
export interface PairIdentity {
  /** The pair instance id: every arbiter key of this pair starts with it. */
  instance: string;
  /** sha-256 of the guest image, first 32 hex digits (commands/common.ts imageDigest). */
  imageDigest: string;
  memoryMiB: number;
  /** The shared disk and the service forwards it serves (absent: none). */
  io?: IoIdentity;
}

/**
 * The shared disk a node names (DESIGN §3 One writer per disk): a backup that goes live opens
 * the disk it names and serves the ports it names, so both must be the primary's, or a
 * takeover writes to another disk (acknowledged writes lost) or serves another port.
 */
export interface DiskIdentity {
  /** Capacity in 512-byte sectors. */
  sectors: number;
  /** An NBD disk: the export's name (the server's address may be written differently on each host). */
  export?: string;
  /** A file disk: its inode number, the same on one host and on shared storage (a copy has its own). */
  ino?: number;
  /** sha-256 (32 hex) of the first 64 KiB, read when the node started (before its guest ran). */
  head: string;
}

export interface IoIdentity {
  disk: DiskIdentity | null;
  /** The service forwards in order, [host port, guest port] (the host address may differ per host). */
  net: [number, number][];
  /** It runs an `--on-live` hook (which moves the service address to the node that serves). */
  onLive?: boolean;
}

/**
 * Backup -> primary, first thing after TLS: what this backup is and how it wants to join.
 * `boot`: booted from the image, replays the log from instruction 0; `join`: a blank machine
 * that restores the primary's snapshot (re-protection). `instance` names the pair the
 * operator means (empty: whichever the primary runs).
 */
export interface JoinRequest {
  mode: 'boot' | 'join';
  instance: string;
  imageDigest: string;
  memoryMiB: number;
  /** The disk and forwards this backup will take over at go-live (absent: none). */
  io?: IoIdentity;
}

/**
 * Primary -> backup, the answer. `boot`/`join`: admitted; the log follows, and the backup
 * claims `generation` of `instance` if this primary goes silent. `busy`: it has a backup.
 * `refused`: not a member of this pair (`reason` says why). Then the primary closes.
 */
export interface Hello extends PairIdentity {
  mode: 'boot' | 'join' | 'busy' | 'refused';
  generation: number;
  reason: string;
}

/** A hello or request body is small JSON; anything longer is not one. */
const MAX_MESSAGE_BYTES = 4096;
const HEX32 = /^[0-9a-f]{32}$/;
const INSTANCE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;

function encodeMessage(kind: number, body: object): Uint8Array {
  const json = Buffer.from(JSON.stringify(body), 'utf8');
  if (json.length > MAX_MESSAGE_BYTES) throw new RangeError('control message too long');
  const frame = new Uint8Array(3 + uvarintSize(json.length) + json.length + 4);
  frame[0] = CONTROL_MAGIC;
  frame[1] = CONTROL_VERSION;
  frame[2] = kind;
  const at = writeUvarint(frame, 3, json.length);
  frame.set(json, at);
  return seal(frame, at + json.length);
}

/** One message of `kind` at the start of `buf`: its JSON body and the bytes it took, or undefined while incomplete. */
function decodeMessage(buf: Uint8Array, kind: number, what: string): { body: Record<string, unknown>; used: number } | undefined {
  if (buf.length >= 1 && buf[0] !== CONTROL_MAGIC) throw new LogFrameError('magic', 0, `${what}: expected 0x${CONTROL_MAGIC.toString(16)}, got 0x${buf[0]!.toString(16)}`);
  if (buf.length >= 2 && buf[1] !== CONTROL_VERSION) throw new LogFrameError('version', 0, `${what}: expected version ${CONTROL_VERSION}, got ${buf[1]}`);
  if (buf.length >= 3 && buf[2] !== kind) throw new LogFrameError('type', 0, `${what}: expected kind ${kind}, got ${buf[2]}`);
  let at = 3;
  for (;;) {
    if (at >= buf.length) return undefined;
    if (at - 3 >= MAX_VARINT_BYTES) throw new LogFrameError('length', 0, `${what}: varint too long`);
    if (buf[at++]! < 0x80) break;
  }
  const r = new VarintReader(buf, 3, at);
  const len = r.uvarint();
  if (!r.ok || len > MAX_MESSAGE_BYTES) throw new LogFrameError('length', 0, `${what}: body of ${len} bytes`);
  if (at + len + 4 > buf.length) return undefined;
  const crcAt = at + len;
  const want = (buf[crcAt]! | (buf[crcAt + 1]! << 8) | (buf[crcAt + 2]! << 16) | (buf[crcAt + 3]! << 24)) >>> 0;
  if (want !== crc32c(buf, 0, crcAt)) throw new LogFrameError('crc', 0, `${what}: bad crc`);
  let body: unknown;
  try {
    body = JSON.parse(Buffer.from(buf.subarray(at, crcAt)).toString('utf8'));
  } catch {
    throw new LogFrameError('payload', 0, `${what}: body is not JSON`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new LogFrameError('payload', 0, `${what}: body is not an object`);
  return { body: body as Record<string, unknown>, used: crcAt + 4 };
}

const bad = (what: string, field: string): never => {
  throw new LogFrameError('payload', 0, `${what}: bad ${field}`);
};
const posInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 1;

export function encodeHello(h: Hello): Uint8Array {
  if (!posInt(h.generation) || !posInt(h.memoryMiB)) throw new RangeError('hello: bad generation or memory size');
  return encodeMessage(KIND_HELLO, h);
}

/** A hello at the start of `buf`, or undefined while incomplete. Throws LogFrameError for anything else. */
export function decodeHello(buf: Uint8Array): { hello: Hello; used: number } | undefined {
  const m = decodeMessage(buf, KIND_HELLO, 'hello');
  if (!m) return undefined;
  const b = m.body;
  if (b.mode !== 'boot' && b.mode !== 'join' && b.mode !== 'busy' && b.mode !== 'refused') bad('hello', 'mode');
  if (!posInt(b.generation)) bad('hello', 'generation');
  if (!posInt(b.memoryMiB)) bad('hello', 'memoryMiB');
  if (typeof b.instance !== 'string' || !INSTANCE.test(b.instance)) bad('hello', 'instance');
  if (typeof b.imageDigest !== 'string' || !HEX32.test(b.imageDigest)) bad('hello', 'imageDigest');
  if (typeof b.reason !== 'string' || b.reason.length > 512) bad('hello', 'reason');
  return { hello: { mode: b.mode, generation: b.generation, memoryMiB: b.memoryMiB, instance: b.instance, imageDigest: b.imageDigest, reason: b.reason } as Hello, used: m.used };
}

export function encodeRequest(r: JoinRequest): Uint8Array {
  if (!posInt(r.memoryMiB)) throw new RangeError('request: bad memory size');
  return encodeMessage(KIND_REQUEST, r);
}

/** A join request at the start of `buf`, or undefined while incomplete. Throws LogFrameError for anything else. */
export function decodeRequest(buf: Uint8Array): { request: JoinRequest; used: number } | undefined {
  const m = decodeMessage(buf, KIND_REQUEST, 'join request');
  if (!m) return undefined;
  const b = m.body;
  if (b.mode !== 'boot' && b.mode !== 'join') bad('join request', 'mode');
  if (!posInt(b.memoryMiB)) bad('join request', 'memoryMiB');
  if (typeof b.instance !== 'string' || (b.instance !== '' && !INSTANCE.test(b.instance))) bad('join request', 'instance');
  if (typeof b.imageDigest !== 'string' || !HEX32.test(b.imageDigest)) bad('join request', 'imageDigest');
  const io = b.io === undefined ? undefined : ioIdentity(b.io) ?? bad('join request', 'io');
  return { request: { mode: b.mode, memoryMiB: b.memoryMiB, instance: b.instance, imageDigest: b.imageDigest, ...(io ? { io } : {}) } as JoinRequest, used: m.used };
}

const nat = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const portPair = (v: unknown): v is [number, number] => Array.isArray(v) && v.length === 2 && nat(v[0]) && v[0] <= 65535 && nat(v[1]) && v[1] <= 65535;

/** A join request's `io`, checked field by field; undefined if anything is off. */
function ioIdentity(v: unknown): IoIdentity | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const { disk, net } = v as Record<string, unknown>;
  const { onLive } = v as Record<string, unknown>;
  if (!Array.isArray(net) || net.length > 64 || !net.every(portPair)) return undefined;
  if (onLive !== undefined && typeof onLive !== 'boolean') return undefined;
  const hook = onLive === true ? { onLive } : {};
  if (disk === null) return { disk: null, net, ...hook };
  if (typeof disk !== 'object' || disk === undefined) return undefined;
  const d = disk as Record<string, unknown>;
  if (!nat(d.sectors) || typeof d.head !== 'string' || !HEX32.test(d.head)) return undefined;
  if (d.export !== undefined && (typeof d.export !== 'string' || d.export.length > 256)) return undefined;
  if (d.ino !== undefined && !nat(d.ino)) return undefined;
  return { disk: { sectors: d.sectors, head: d.head, ...(d.export !== undefined ? { export: d.export as string } : {}), ...(d.ino !== undefined ? { ino: d.ino as number } : {}) }, net, ...hook };
}

const NO_IO: IoIdentity = { disk: null, net: [] };
const forwardsText = (net: readonly [number, number][]): string => (net.length === 0 ? 'no --net' : net.map(([h, g]) => `${h}->${g}`).join(', '));

/**
 * Why a backup's disk and forwards are not this pair's, or undefined. A backup goes live on
 * what it names: another disk would lose every write the pair acknowledged, another forward
 * would serve clients nothing. The first blocks are compared only when the backup boots with
 * the pair (neither guest has run: they must be equal); a joiner comes while the guest writes.
 */
function ioRefusal(self: IoIdentity, offer: 'boot' | 'join', other: IoIdentity): string | undefined {
  const a = self.disk;
  const b = other.disk;
  if (a === null && b !== null) return 'another disk: this primary has no --disk, the backup names one';
  if (a !== null && b === null) return 'no disk: this primary has a --disk, the backup names none';
  if (a !== null && b !== null) {
    const kind = (d: DiskIdentity): string => (d.export !== undefined ? 'nbd' : 'file');
    if (kind(a) !== kind(b)) return `another disk: this primary has a ${kind(a)} disk, the backup a ${kind(b)} disk`;
    if (a.sectors !== b.sectors) return `another disk: this primary's has ${a.sectors} sectors, the backup's ${b.sectors}`;
    if (a.export !== b.export) return `another disk: this primary's is NBD export '${a.export}', the backup's '${b.export}'`;
    if (a.ino !== b.ino) return "another disk: the backup's file is not this primary's (another inode: a copy?); name the same file on the shared storage";
    if (offer === 'boot' && a.head !== b.head) return 'another disk: its first 64 KiB differ from this primary\'s disk (a copy, or another export)';
  }
  const fa = forwardsText(self.net);
  const fb = forwardsText(other.net);
  if (fa !== fb) return `other service forwards: this primary has ${fa}, the backup ${fb} (host port->guest port, in order)`;
  // The service address moves with the live replica only if both run the hook that moves it.
  if ((self.onLive ?? false) !== (other.onLive ?? false)) {
    return self.onLive
      ? 'no --on-live: this primary runs a hook when it serves (it moves the service address), the backup none, so at go-live the address would not follow it'
      : 'an --on-live this primary does not run: give the hook to both nodes or to neither';
  }
  return undefined;
}

/**
 * Why `request` may not join the pair `self` (DESIGN §3 Membership), or undefined if it may.
 * `mode` is what the primary offers now: `boot` to its first backup, `join` when running alone.
 */
export function refusal(self: PairIdentity, offer: 'boot' | 'join', request: JoinRequest): string | undefined {
  if (request.instance !== '' && request.instance !== self.instance) return `another pair instance: this primary runs ${self.instance}, the backup asked for ${request.instance}`;
  if (request.imageDigest !== self.imageDigest) return `another guest image: this primary runs image ${self.imageDigest}, the backup has ${request.imageDigest}`;
  if (request.memoryMiB !== self.memoryMiB) return `another memory size: this primary runs ${self.memoryMiB} MiB, the backup ${request.memoryMiB} MiB`;
  if (request.mode !== offer) {
    return offer === 'join'
      ? 'this primary is running alone and takes a new backup only as a joining one (--join)'
      : 'this primary is booting a new pair with its first backup, not taking a joining one (use --connect)';
  }
  return ioRefusal(self.io ?? NO_IO, offer, request.io ?? NO_IO);
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
