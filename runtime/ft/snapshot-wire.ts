import { deflateSync, inflateSync } from 'node:zlib';
import type { Machine } from '../machine.js';
import { decodeSnapshot, encodeSnapshot, type MachineSnapshot } from '../snapshot.js';
import { crc32c } from '../log/crc32c.js';
import type { NetBackend } from '../io/backend.js';
import { FIRST_MAPPED_PORT, MAPPED_PORTS, UdpNat, UdpNet, type NatRow, type NatTable } from '../io/net-udp.js';
import { DeferredNet } from '../io/deferred-net.js';

// A join snapshot (DESIGN §3 re-protection) is the machine's state plus the host state a new
// backup needs to serve the same clients after go-live: the NAT table of the UDP forwards.
// The log after the snapshot teaches the joiner only the clients seen from then on (each
// forwarded frame names its client, io/frames.ts); without the table, a reply its guest owes a
// client from before the join would have nowhere to go.
//
//   join snapshot:  "FTJ1" | u32 machine bytes | machine (deflated, as packMachine) | NAT section
//   NAT section:    "NAT" u8 version | u32 body bytes | body | u32 crc32c(body)
//   body, v1:       u16 next port offset | u32 rows | rows × (u16 mapped port, u8 forward, u32 IPv4, u16 port)
//
// All numbers little-endian. A machine without a NIC backend keeps the bare form (a zlib
// stream, 0x78 ...), which is also what `ftvm record` logs: unpackSnapshot reads both.

const JOIN_MAGIC = [0x46, 0x54, 0x4a, 0x31] as const; // "FTJ1"
const NAT_TAG = [0x4e, 0x41, 0x54] as const; // "NAT"
export const NAT_VERSION = 1;
const NAT_HEADER_BYTES = 8;
const NAT_ROW_BYTES = 9;
const NAT_BODY_HEADER_BYTES = 6;

/** A NAT section that cannot be read: truncated, damaged, of another version, or not this node's forwards. */
export class NatSectionError extends Error {}

const packMachine = (m: Machine): Uint8Array => deflateSync(encodeSnapshot(m.snapshot()), { level: 1 });

/** The NAT table behind a live node's NIC: a primary's forwards, or a backup's gone live. */
function natOf(net: NetBackend | undefined): UdpNat | undefined {
  return net instanceof UdpNet || net instanceof DeferredNet ? net.nat : undefined;
}

/**
 * A snapshot as it travels to a joining backup: zero pages are already dropped by
 * encodeSnapshot, deflate (fastest level) takes the rest; with the NAT table of the node's
 * forwards when it has any.
 */
export function packSnapshot(m: Machine): Uint8Array {
  const machine = packMachine(m);
  const nat = natOf(m.io?.netAttached);
  if (!nat) return machine;
  const section = encodeNatSection(nat.export());
  const out = new Uint8Array(8 + machine.length + section.length);
  out.set(JOIN_MAGIC);
  new DataView(out.buffer).setUint32(4, machine.length, true);
  out.set(machine, 8);
  out.set(section, 8 + machine.length);
  return out;
}

const isJoinSnapshot = (data: Uint8Array): boolean => data.length >= 4 && JOIN_MAGIC.every((b, i) => data[i] === b);

/**
 * The machine part and the raw NAT section (undefined in the bare form). Throws on an envelope
 * that does not hold its machine part; the NAT section is checked by decodeNatSection.
 */
export function unpackJoinSnapshot(data: Uint8Array): { machine: MachineSnapshot; nat: Uint8Array | undefined } {
  if (!isJoinSnapshot(data)) return { machine: decodeSnapshot(inflateSync(data)), nat: undefined };
  if (data.length < 8) throw new Error('truncated join snapshot');
  const machineBytes = new DataView(data.buffer, data.byteOffset, data.byteLength).getUint32(4, true);
  if (8 + machineBytes > data.length) throw new Error(`truncated join snapshot: ${machineBytes} bytes of machine state announced, ${data.length - 8} there`);
  return { machine: decodeSnapshot(inflateSync(data.subarray(8, 8 + machineBytes))), nat: data.subarray(8 + machineBytes) };
}

/** The machine state of a snapshot entry, either form (host state ignored: a replay has no network). */
export const unpackSnapshot = (data: Uint8Array): MachineSnapshot => unpackJoinSnapshot(data).machine;

/**
 * A joining backup restores the primary's snapshot into its machine and hands the NAT table to
 * its deferred network, which binds the forwards at go-live with it. A NAT section that cannot
 * be read costs only retries (the clients ask again, and the log teaches their mappings): the
 * network says so in one line and the join goes on.
 */
export function restoreJoinSnapshot(m: Machine, data: Uint8Array, net: NetBackend | undefined): void {
  const { machine, nat } = unpackJoinSnapshot(data);
  m.restore(machine);
  if (nat === undefined || !(net instanceof DeferredNet)) return;
  let table: NatTable | NatSectionError;
  try {
    table = decodeNatSection(nat, net.forwards.length);
  } catch (e) {
    table = e instanceof NatSectionError ? e : new NatSectionError((e as Error).message);
  }
  net.adoptNat(table);
}

export function encodeNatSection(t: NatTable): Uint8Array {
  const body = NAT_BODY_HEADER_BYTES + t.rows.length * NAT_ROW_BYTES;
  const out = new Uint8Array(NAT_HEADER_BYTES + body + 4);
  const dv = new DataView(out.buffer);
  out.set(NAT_TAG);
  out[3] = NAT_VERSION;
  dv.setUint32(4, body, true);
  let at = NAT_HEADER_BYTES;
  dv.setUint16(at, t.next, true);
  dv.setUint32(at + 2, t.rows.length, true);
  at += NAT_BODY_HEADER_BYTES;
  for (const r of t.rows) {
    dv.setUint16(at, r.mappedPort, true);
    out[at + 2] = r.fwd;
    dv.setUint32(at + 3, r.ip, true);
    dv.setUint16(at + 7, r.port, true);
    at += NAT_ROW_BYTES;
  }
  dv.setUint32(at, crc32c(out, NAT_HEADER_BYTES, at), true);
  return out;
}

/** Reads a NAT section whose rows name `forwards` forwards at most; throws NatSectionError saying what is wrong. */
export function decodeNatSection(s: Uint8Array, forwards: number): NatTable {
  const bad = (why: string): never => {
    throw new NatSectionError(why);
  };
  if (s.length < NAT_HEADER_BYTES) bad(`truncated NAT section: ${s.length} bytes`);
  if (!NAT_TAG.every((b, i) => s[i] === b)) bad('no NAT section where one was announced');
  if (s[3] !== NAT_VERSION) bad(`NAT section version ${s[3]!} (this ftvm reads version ${NAT_VERSION})`);
  const dv = new DataView(s.buffer, s.byteOffset, s.byteLength);
  const body = dv.getUint32(4, true);
  if (NAT_HEADER_BYTES + body + 4 !== s.length) bad(`NAT section of ${body} bytes in ${s.length - NAT_HEADER_BYTES - 4} (truncated or padded)`);
  const end = NAT_HEADER_BYTES + body;
  const want = dv.getUint32(end, true);
  const got = crc32c(s, NAT_HEADER_BYTES, end);
  if (want !== got) bad(`NAT section checksum 0x${got.toString(16)}, expected 0x${want.toString(16)}`);
  if (body < NAT_BODY_HEADER_BYTES) bad(`NAT section body of ${body} bytes`);
  const next = dv.getUint16(NAT_HEADER_BYTES, true);
  const count = dv.getUint32(NAT_HEADER_BYTES + 2, true);
  if (NAT_BODY_HEADER_BYTES + count * NAT_ROW_BYTES !== body) bad(`NAT section says ${count} mappings in ${body} bytes`);
  if (next >= MAPPED_PORTS) bad(`NAT next port offset ${next} beyond ${MAPPED_PORTS - 1}`);
  const rows: NatRow[] = [];
  const seen = new Set<number>();
  for (let at = NAT_HEADER_BYTES + NAT_BODY_HEADER_BYTES; at < end; at += NAT_ROW_BYTES) {
    const r: NatRow = { mappedPort: dv.getUint16(at, true), fwd: s[at + 2]!, ip: dv.getUint32(at + 3, true), port: dv.getUint16(at + 7, true) };
    if (r.mappedPort < FIRST_MAPPED_PORT) bad(`NAT mapping to port ${r.mappedPort}, below ${FIRST_MAPPED_PORT}`);
    if (seen.has(r.mappedPort)) bad(`NAT port ${r.mappedPort} mapped twice`);
    if (r.fwd >= forwards) bad(`NAT mapping through forward ${r.fwd}, this node has ${forwards}`);
    seen.add(r.mappedPort);
    rows.push(r);
  }
  return { next, rows };
}
