// The heartbeat link's datagram (runtime/channel/heartbeat.ts): 38 bytes, authenticated with
// a key that belongs to one TLS session of the log channel (RFC 5705 keying material), so a
// beat proves "the peer of this very channel is alive" and nothing else:
//
//   'FTHB' | version 1 | sender role (1 primary, 2 backup) | session tag (8) | seq (u64 BE) | MAC (16)
//
// session tag: the first 8 bytes of SHA-256("ftvm-heartbeat-session" || key): tells a beat of
// another session (a backup given up earlier, another pair) from garbage without the key.
// MAC: HMAC-SHA-256(key, the 22 bytes before it), truncated to 16. seq rises by one per beat;
// the receiver takes only a seq above the last it took (no replay of a captured beat).
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';

export const BEAT_BYTES = 38;
const MAGIC = Buffer.from('FTHB', 'latin1');
const VERSION = 1;
const MAC_AT = 22;
export type BeatRole = 'primary' | 'backup';
const ROLE_BYTE: Record<BeatRole, number> = { primary: 1, backup: 2 };
/** RFC 5705 label: both ends of one TLS session derive the same key from it, nobody else can. */
export const BEAT_KEY_LABEL = 'EXPERIMENTAL-ftvm-heartbeat-v1';
export const BEAT_KEY_BYTES = 32;

export const sessionTag = (key: Uint8Array): Buffer =>
  createHash('sha256').update('ftvm-heartbeat-session').update(key).digest().subarray(0, 8);

const mac = (key: Uint8Array, head: Uint8Array): Buffer => createHmac('sha256', key).update(head).digest().subarray(0, 16);

export function encodeBeat(key: Uint8Array, tag: Buffer, role: BeatRole, seq: bigint): Buffer {
  const b = Buffer.alloc(BEAT_BYTES);
  MAGIC.copy(b, 0);
  b[4] = VERSION;
  b[5] = ROLE_BYTE[role];
  b.set(tag.subarray(0, 8), 6);
  b.writeBigUInt64BE(seq, 14);
  mac(key, b.subarray(0, MAC_AT)).copy(b, MAC_AT);
  return b;
}

/**
 * The seq of a beat that `from` sent in the session of `key`, or why the datagram is not one
 * (one line's worth: it is reported, and changes nothing).
 */
export function decodeBeat(b: Uint8Array, key: Uint8Array | undefined, tag: Buffer | undefined, from: BeatRole): bigint | string {
  if (b.length !== BEAT_BYTES || !MAGIC.equals(b.subarray(0, 4))) return `not an ftvm heartbeat (${b.length} bytes)`;
  if (b[4] !== VERSION) return `heartbeat version ${b[4]}, this node speaks ${VERSION}`;
  if (b[5] !== ROLE_BYTE[from]) return `a heartbeat that does not come from a ${from}`;
  if (!key || !tag) return 'a heartbeat while no peer is attached';
  if (!tag.equals(b.subarray(6, 14))) return 'a heartbeat of another channel session (a peer given up, or another pair)';
  if (!timingSafeEqual(mac(key, b.subarray(0, MAC_AT)), b.subarray(MAC_AT))) return 'a heartbeat with a bad MAC (wrong key, or damaged)';
  return Buffer.from(b.buffer, b.byteOffset, b.length).readBigUInt64BE(14);
}
