// Ethernet II, ARP (RFC 826), IPv4 (RFC 791) and UDP (RFC 768) framing for the host side of
// user networking: just what turning datagrams into frames and back needs. Parsers return
// undefined on anything malformed; they never throw on guest bytes.

export const ETH_HDR = 14;
export const IP_HDR = 20;
export const UDP_HDR = 8;
export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_ARP = 0x0806;
export const IPPROTO_UDP = 17;

/** QEMU user networking: guest 10.0.2.15, gateway 10.0.2.2 with MAC 52:55:0a:00:02:02. */
export const GUEST_IP = 0x0a00_020f;
export const GATEWAY_IP = 0x0a00_0202;
export const GATEWAY_MAC: readonly number[] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
export const BROADCAST_MAC: readonly number[] = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

const get16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const get32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
const put16 = (b: Uint8Array, o: number, v: number): void => { b[o] = (v >>> 8) & 0xff; b[o + 1] = v & 0xff; };
const put32 = (b: Uint8Array, o: number, v: number): void => { put16(b, o, v >>> 16); put16(b, o + 2, v & 0xffff); };

/** RFC 1071 one's-complement sum of `len` bytes at `off`, added to `sum` (not folded). */
function sum16(b: Uint8Array, off: number, len: number, sum = 0): number {
  let i = 0;
  for (; i + 1 < len; i += 2) sum += (b[off + i]! << 8) | b[off + i + 1]!;
  if (i < len) sum += b[off + i]! << 8;
  return sum;
}
const fold = (sum: number): number => {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
};

function ethHeader(f: Uint8Array, dst: readonly number[], src: readonly number[], type: number): void {
  f.set(dst, 0);
  f.set(src, 6);
  put16(f, 12, type);
}

/** An IPv4/UDP datagram in an Ethernet frame, with header and UDP checksums. */
export function udpFrame(o: {
  dstMac: readonly number[]; srcMac: readonly number[];
  srcIp: number; dstIp: number; srcPort: number; dstPort: number; payload: Uint8Array; ipId?: number;
  /** Bytes left zero after the datagram, for `putClientTrailer`. */
  trailerBytes?: number;
}): Uint8Array {
  const udpLen = UDP_HDR + o.payload.length;
  const f = new Uint8Array(ETH_HDR + IP_HDR + udpLen + (o.trailerBytes ?? 0));
  ethHeader(f, o.dstMac, o.srcMac, ETHERTYPE_IPV4);
  const ip = ETH_HDR;
  f[ip] = 0x45;
  put16(f, ip + 2, IP_HDR + udpLen);
  put16(f, ip + 4, (o.ipId ?? 0) & 0xffff);
  put16(f, ip + 6, 0x4000); // don't fragment
  f[ip + 8] = 64;
  f[ip + 9] = IPPROTO_UDP;
  put32(f, ip + 12, o.srcIp);
  put32(f, ip + 16, o.dstIp);
  put16(f, ip + 10, fold(sum16(f, ip, IP_HDR)));
  const u = ip + IP_HDR;
  put16(f, u, o.srcPort);
  put16(f, u + 2, o.dstPort);
  put16(f, u + 4, udpLen);
  f.set(o.payload, u + UDP_HDR);
  // Pseudo-header: source, destination, protocol, UDP length.
  let s = sum16(f, ip + 12, 8) + IPPROTO_UDP + udpLen;
  s = sum16(f, u, udpLen, s);
  const c = fold(s);
  put16(f, u + 6, c === 0 ? 0xffff : c);
  return f;
}

export interface ArpRequest {
  senderMac: number[];
  senderIp: number;
  targetIp: number;
}

export interface UdpDatagram {
  srcMac: number[];
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  payload: Uint8Array;
}

export type ParsedFrame =
  | { kind: 'arp-request'; arp: ArpRequest }
  | { kind: 'udp'; udp: UdpDatagram }
  | { kind: 'other'; why: string };

/** Where `readUdp` found a datagram in a frame: filled in place, so reading allocates nothing. */
export interface UdpSpan {
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** The payload is `frame[payloadStart, payloadEnd)`. */
  payloadStart: number;
  payloadEnd: number;
}

export const newUdpSpan = (): UdpSpan => ({ srcIp: 0, dstIp: 0, srcPort: 0, dstPort: 0, payloadStart: 0, payloadEnd: 0 });

/** `readUdp`'s answer for an ARP frame: parseFrame tells requests from the rest. */
export const NOT_UDP_ARP = 'ARP';

/**
 * Read an Ethernet/IPv4/UDP frame into `out` (checksums verified): undefined when it is one;
 * otherwise why not (NOT_UDP_ARP for ARP). Never throws, allocates nothing: the guest's
 * every reply goes through here.
 */
export function readUdp(f: Uint8Array, out: UdpSpan): string | undefined {
  if (f.length < ETH_HDR) return 'runt frame';
  const type = get16(f, 12);
  if (type === ETHERTYPE_ARP) return NOT_UDP_ARP;
  if (type !== ETHERTYPE_IPV4) return `ethertype 0x${type.toString(16)}`;
  const ip = ETH_HDR;
  if (f.length < ip + IP_HDR) return 'short IPv4';
  const vihl = f[ip]!;
  const ihl = (vihl & 15) * 4;
  if (vihl >> 4 !== 4 || ihl < IP_HDR || f.length < ip + ihl) return 'bad IPv4 header';
  const total = get16(f, ip + 2);
  if (total < ihl || ip + total > f.length) return 'bad IPv4 length';
  if (fold(sum16(f, ip, ihl)) !== 0) return 'bad IPv4 checksum';
  if ((get16(f, ip + 6) & 0x3fff) !== 0) return 'IPv4 fragment';
  if (f[ip + 9] !== IPPROTO_UDP) return `IP protocol ${f[ip + 9]}`;
  const u = ip + ihl;
  if (total - ihl < UDP_HDR) return 'short UDP';
  const ulen = get16(f, u + 4);
  if (ulen < UDP_HDR || ulen > total - ihl) return 'bad UDP length';
  if (get16(f, u + 6) !== 0) {
    let s = sum16(f, ip + 12, 8) + IPPROTO_UDP + ulen;
    s = sum16(f, u, ulen, s);
    if (fold(s) !== 0) return 'bad UDP checksum';
  }
  out.srcIp = get32(f, ip + 12);
  out.dstIp = get32(f, ip + 16);
  out.srcPort = get16(f, u);
  out.dstPort = get16(f, u + 2);
  out.payloadStart = u + UDP_HDR;
  out.payloadEnd = u + ulen;
  return undefined;
}

/** Classify a frame the guest sent. Malformed input gives `other` with a reason, never a throw. */
export function parseFrame(f: Uint8Array): ParsedFrame {
  const span = newUdpSpan();
  const why = readUdp(f, span);
  if (why === undefined) {
    const { srcIp, dstIp, srcPort, dstPort } = span;
    return { kind: 'udp', udp: { srcMac: Array.from(f.subarray(6, 12)), srcIp, dstIp, srcPort, dstPort, payload: f.slice(span.payloadStart, span.payloadEnd) } };
  }
  if (why !== NOT_UDP_ARP) return { kind: 'other', why };
  const a = ETH_HDR;
  if (f.length < a + 28) return { kind: 'other', why: 'short ARP' };
  // Ethernet/IPv4 ARP only: htype 1, ptype 0x0800, hlen 6, plen 4.
  if (get16(f, a) !== 1 || get16(f, a + 2) !== ETHERTYPE_IPV4 || f[a + 4] !== 6 || f[a + 5] !== 4) return { kind: 'other', why: 'ARP not for IPv4 over Ethernet' };
  if (get16(f, a + 6) !== 1) return { kind: 'other', why: 'ARP reply' };
  return { kind: 'arp-request', arp: { senderMac: Array.from(f.subarray(a + 8, a + 14)), senderIp: get32(f, a + 14), targetIp: get32(f, a + 24) } };
}

/** The reply to an ARP request for `ip`, owned by `mac`. */
export function arpReply(req: ArpRequest, mac: readonly number[], ip: number): Uint8Array {
  const f = new Uint8Array(ETH_HDR + 28);
  ethHeader(f, req.senderMac, mac, ETHERTYPE_ARP);
  const a = ETH_HDR;
  put16(f, a, 1);
  put16(f, a + 2, ETHERTYPE_IPV4);
  f[a + 4] = 6;
  f[a + 5] = 4;
  put16(f, a + 6, 2);
  f.set(mac, a + 8);
  put32(f, a + 14, ip);
  f.set(req.senderMac, a + 18);
  put32(f, a + 24, req.senderIp);
  return f;
}

/**
 * The client a forwarded datagram came from, carried after the IPv4 datagram inside its frame
 * (where Ethernet puts padding: every stack, the guests' included, reads only the IPv4 total
 * length). The frame is what the log records for a `net-rx`, so a backup replaying it learns
 * the NAT mapping the primary made, and a reply its guest re-issues after go-live reaches the
 * right client (DESIGN §3 Duplicate outputs: re-issued, never lost).
 * Layout: client IPv4 (4), client port (2), forward index (1), TRAILER_TAG (1).
 */
export const CLIENT_TRAILER_BYTES = 8;
const TRAILER_TAG = 0xf7;

export function putClientTrailer(f: Uint8Array, ip: number, port: number, fwd: number): void {
  const t = f.length - CLIENT_TRAILER_BYTES;
  put32(f, t, ip);
  put16(f, t + 4, port);
  f[t + 6] = fwd;
  f[t + 7] = TRAILER_TAG;
}

export interface FrameClient {
  /** The UDP source port the guest saw (the NAT's mapped port). */
  mappedPort: number;
  ip: number;
  port: number;
  fwd: number;
}

/**
 * The client trailer of a frame built by `udpFrame` + `putClientTrailer`, or undefined for any
 * other frame. Allocation-free apart from the result; never throws on guest-visible bytes.
 */
export function clientTrailer(f: Uint8Array): FrameClient | undefined {
  const ip = ETH_HDR;
  if (f.length < ip + IP_HDR + UDP_HDR + CLIENT_TRAILER_BYTES || get16(f, 12) !== ETHERTYPE_IPV4) return undefined;
  if (f[ip] !== 0x45 || f[ip + 9] !== IPPROTO_UDP) return undefined;
  const t = ip + get16(f, ip + 2);
  if (t + CLIENT_TRAILER_BYTES !== f.length || f[t + 7] !== TRAILER_TAG) return undefined;
  return { mappedPort: get16(f, ip + IP_HDR), ip: get32(f, t), port: get16(f, t + 4), fwd: f[t + 6]! };
}

export const ipv4Text = (ip: number): string => `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;

export function ipv4Number(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255)) return undefined;
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}
