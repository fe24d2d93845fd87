import { createSocket, type Socket } from 'node:dgram';
import type { NetBackend } from './backend.js';
import { DEFAULT_MAC } from '../../devices/virtio-net.js';
import {
  arpReply, CLIENT_TRAILER_BYTES, clientTrailer, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, ipv4Number, ipv4Text, newUdpSpan, NOT_UDP_ARP, parseFrame,
  putClientTrailer, readUdp, udpFrame,
} from './frames.js';

/** One `hostfwd=udp:ADDR:HOSTPORT-:GUESTPORT` rule. */
export interface UdpForward {
  hostAddr: string;
  /** 0 binds any free port (tests); see `UdpNet.boundPorts`. */
  hostPort: number;
  guestPort: number;
}

export interface UdpNetStats {
  datagramsIn: number;
  datagramsOut: number;
  arpReplies: number;
  /** Frames from the guest that were not ARP for the gateway or UDP to a known client. */
  dropped: number;
  dropReasons: Record<string, number>;
}

interface Mapping {
  fwd: number;
  addr: string;
  /** `addr` as a number, for the frame's client trailer. */
  ip: number;
  port: number;
  /** The source port the guest sees for this client. */
  mapped: number;
}

/** Source ports the guest sees for clients: 49152–65535, reused oldest first. */
export const FIRST_MAPPED_PORT = 49152;
export const MAPPED_PORTS = 65536 - FIRST_MAPPED_PORT;

/** One mapping of a NAT table as a join snapshot carries it: the port the guest sees, and its client. */
export interface NatRow {
  mappedPort: number;
  fwd: number;
  /** IPv4 address as a number. */
  ip: number;
  port: number;
}

/** A NAT table and the offset (in 0..MAPPED_PORTS) of the next port it would allocate. */
export interface NatTable {
  next: number;
  rows: NatRow[];
}
/** The largest datagram forwarded: an Ethernet payload of 1500 bytes holds the IPv4 and UDP headers and the client trailer. */
export const MAX_FORWARDED_PAYLOAD = 1500 - 28 - CLIENT_TRAILER_BYTES;

/**
 * The NAT table of UDP forwarding: client (forward, address, port) <-> the source port the
 * guest sees. A live node fills it as datagrams arrive; a replaying backup learns the very same
 * entries from the frames its log brings (each frame carries its client, frames.ts), so the
 * table it takes live with answers every client the guest can still reply to.
 */
export class UdpNat {
  private readonly byClient = new Map<string, number>();
  private readonly byPort = new Map<number, Mapping>();
  private nextPort: number;
  /** Mappings learned from replayed frames. */
  learned = 0;
  /** Mappings taken over from a join snapshot. */
  imported = 0;
  /** The client mapped last: a busy client (dnsperf) sends from one port, so no key is built per datagram. */
  private last: Mapping | undefined;

  constructor(firstMapped = 0) {
    this.nextPort = firstMapped % MAPPED_PORTS;
  }

  /**
   * This client's mapping (the port the guest sees for it), made (oldest port reused first) if
   * it has none; undefined for an address that is not IPv4 (the sockets are udp4: never, in practice).
   */
  map(fwd: number, addr: string, port: number): Mapping | undefined {
    const last = this.last;
    // Still its port's mapping: not replaced since (ports are reused oldest first).
    if (last !== undefined && last.port === port && last.addr === addr && last.fwd === fwd && this.byPort.get(last.mapped) === last) return last;
    const key = `${fwd}|${addr}|${port}`;
    const known = this.byClient.get(key);
    let m = known === undefined ? undefined : this.byPort.get(known);
    if (m === undefined) {
      const ip = ipv4Number(addr);
      if (ip === undefined) return undefined;
      m = { fwd, addr, ip, port, mapped: FIRST_MAPPED_PORT + this.nextPort };
      this.set(m, key);
    }
    this.last = m;
    return m;
  }

  client(mappedPort: number): Mapping | undefined {
    return this.byPort.get(mappedPort);
  }

  /**
   * A frame the guest received: if it came through a forward, record its mapping as the node
   * that forwarded it made it. Allocation only for a mapping not known yet.
   */
  learn(frame: Uint8Array): void {
    const c = clientTrailer(frame);
    if (!c || c.mappedPort < FIRST_MAPPED_PORT) return;
    const m = this.byPort.get(c.mappedPort);
    if (m && m.ip === c.ip && m.port === c.port && m.fwd === c.fwd) return;
    const addr = ipv4Text(c.ip);
    this.set({ fwd: c.fwd, addr, ip: c.ip, port: c.port, mapped: c.mappedPort }, `${c.fwd}|${addr}|${c.port}`);
    this.learned++;
  }

  /**
   * The whole table and where allocation goes on: what a join snapshot carries to a new backup
   * (ft/snapshot-wire.ts), whose log starts after every mapping made so far.
   */
  export(): NatTable {
    const rows: NatRow[] = [];
    for (const [mappedPort, m] of this.byPort) rows.push({ mappedPort, fwd: m.fwd, ip: m.ip, port: m.port });
    return { next: this.nextPort, rows };
  }

  /** Take over the table of the node that made it (a join snapshot's): its clients, its next port. */
  import(t: NatTable): void {
    for (const r of t.rows) {
      const addr = ipv4Text(r.ip);
      this.set({ fwd: r.fwd, addr, ip: r.ip, port: r.port, mapped: r.mappedPort }, `${r.fwd}|${addr}|${r.port}`);
    }
    this.nextPort = t.next % MAPPED_PORTS;
    this.imported += t.rows.length;
  }

  private set(m: Mapping, key: string): void {
    // Allocation continues after the newest mapping, as on the node that made it.
    this.nextPort = (m.mapped - FIRST_MAPPED_PORT + 1) % MAPPED_PORTS;
    const old = this.byPort.get(m.mapped);
    if (old) this.byClient.delete(`${old.fwd}|${old.addr}|${old.port}`);
    this.byPort.set(m.mapped, m);
    this.byClient.set(key, m.mapped);
  }
}

/**
 * UDP port forwarding into the guest, as QEMU's user networking does it (DESIGN §4): each
 * datagram a client sends to HOSTPORT becomes an Ethernet/IPv4/UDP frame from the gateway
 * 10.0.2.2 to 10.0.2.15:GUESTPORT, with a source port that maps back to the client (a NAT
 * table). The guest's replies to 10.0.2.2 go back to that client from the same socket. The
 * host answers the guest's ARP requests for the gateway itself. Anything else the guest sends
 * is dropped and counted; malformed frames included, never a crash.
 */
export class UdpNet implements NetBackend {
  onFrame: ((frame: Uint8Array) => void) | undefined;
  readonly stats: UdpNetStats = { datagramsIn: 0, datagramsOut: 0, arpReplies: 0, dropped: 0, dropReasons: {} };
  private guestMac: readonly number[] = DEFAULT_MAC;
  private ipId = 0;
  private closing: Promise<void> | undefined;
  /** The guest's reply being sent, read in place. */
  private readonly span = newUdpSpan();

  private constructor(
    private readonly sockets: Socket[],
    readonly forwards: readonly UdpForward[],
    readonly nat: UdpNat,
  ) {
    sockets.forEach((s, i) => s.on('message', (msg, rinfo) => this.fromClient(i, msg, rinfo.address, rinfo.port)));
  }

  /**
   * Bind every rule's socket. `opts.nat` is the table to go on with: the one a backup learned
   * from its log, so that replies its guest re-issues at go-live reach their clients.
   */
  static async open(forwards: readonly UdpForward[], opts: { nat?: UdpNat } = {}): Promise<UdpNet> {
    const sockets: Socket[] = [];
    try {
      for (const f of forwards) {
        const s = createSocket({ type: 'udp4' });
        sockets.push(s);
        await new Promise<void>((resolve, reject) => {
          s.once('error', (e: NodeJS.ErrnoException) => reject(
            e.code === 'EADDRINUSE' ? new Error(`--net: udp ${f.hostAddr}:${f.hostPort} is in use`)
              : e.code === 'EADDRNOTAVAIL' ? new Error(`--net: ${f.hostAddr} is not an address of this host`)
                : e.code === 'EACCES' ? new Error(`--net: udp port ${f.hostPort} needs privileges`) : e,
          ));
          s.bind(f.hostPort, f.hostAddr, () => {
            s.removeAllListeners('error');
            // A send error (e.g. ICMP port unreachable) must not kill the host.
            s.on('error', () => {});
            resolve();
          });
        });
      }
    } catch (e) {
      for (const s of sockets) s.close();
      throw e;
    }
    return new UdpNet(sockets, forwards, opts.nat ?? new UdpNat());
  }

  /**
   * The bound sockets' file descriptors, for a process that holds the ports a moment longer
   * than this one (on-live.ts guardServicePorts). NOTE Node does not expose a dgram socket's
   * fd; its handle has it on Unix. Empty where it cannot be read.
   */
  get fds(): number[] {
    return this.sockets.flatMap((s) => {
      const state = Object.getOwnPropertySymbols(s).find((k) => k.description === 'state symbol');
      const fd = state === undefined ? undefined : (s as unknown as Record<symbol, { handle?: { fd?: unknown } }>)[state]?.handle?.fd;
      return typeof fd === 'number' && fd >= 0 ? [fd] : [];
    });
  }

  /** The host ports actually bound, in rule order. */
  get boundPorts(): number[] {
    return this.sockets.map((s) => s.address().port);
  }

  /** One line per rule with the port really bound (a rule for port 0 gets one from the host). */
  describe(): string[] {
    return this.forwards.map((f, i) => `forwarding udp ${f.hostAddr}:${this.boundPorts[i]} -> guest port ${f.guestPort}`);
  }

  private fromClient(fwd: number, msg: Buffer, addr: string, port: number): void {
    // An IPv4 datagram carries at most 65507 bytes of UDP payload; the guest's MTU far less.
    if (msg.length > MAX_FORWARDED_PAYLOAD) return this.drop('datagram larger than the MTU');
    const m = this.nat.map(fwd, addr, port);
    if (m === undefined) return this.drop('client not IPv4');
    this.stats.datagramsIn++;
    const f = udpFrame({
      dstMac: this.guestMac, srcMac: GATEWAY_MAC, srcIp: GATEWAY_IP, dstIp: GUEST_IP,
      srcPort: m.mapped, dstPort: this.forwards[fwd]!.guestPort, payload: msg, ipId: this.ipId++, trailerBytes: CLIENT_TRAILER_BYTES,
    });
    putClientTrailer(f, m.ip, port, fwd);
    this.onFrame?.(f);
  }

  send(frame: Uint8Array): void {
    // Closed (a crashed replica's, pair.ts): the frame goes nowhere, as from a dead host.
    if (this.closing) return;
    const u = this.span;
    const why = readUdp(frame, u);
    if (why !== undefined) return why === NOT_UDP_ARP ? this.arp(frame) : this.drop(why);
    if (u.dstIp !== GATEWAY_IP) return this.drop('UDP to another address');
    const m = this.nat.client(u.dstPort);
    if (!m) return this.drop('UDP to an unmapped port');
    this.noteGuestMac(frame);
    this.stats.datagramsOut++;
    // A view, not a copy: a released frame is never written again.
    this.sockets[m.fwd]!.send(frame.subarray(u.payloadStart, u.payloadEnd), m.port, m.addr);
  }

  private arp(frame: Uint8Array): void {
    const p = parseFrame(frame);
    if (p.kind !== 'arp-request') return this.drop(p.kind === 'other' ? p.why : 'ARP');
    if (p.arp.targetIp !== GATEWAY_IP) return this.drop('ARP for another address');
    this.guestMac = p.arp.senderMac;
    this.stats.arpReplies++;
    this.onFrame?.(arpReply(p.arp, GATEWAY_MAC, GATEWAY_IP));
  }

  /** Frames to the guest go to the MAC it sends from (a copy only when that changes). */
  private noteGuestMac(f: Uint8Array): void {
    const mac = this.guestMac;
    for (let i = 0; i < 6; i++) {
      if (mac[i] !== f[6 + i]) {
        this.guestMac = Array.from(f.subarray(6, 12));
        return;
      }
    }
  }

  private drop(why: string): void {
    this.stats.dropped++;
    this.stats.dropReasons[why] = (this.stats.dropReasons[why] ?? 0) + 1;
  }

  /**
   * Unbinds every port at once (the descriptors close now; the callbacks come later): also
   * what a killed process's exit does (backend.ts `abandon`). A second call waits for the first.
   */
  close(): Promise<void> {
    this.closing ??= Promise.all(this.sockets.map((s) => new Promise<void>((r) => {
      try { s.close(() => r()); } catch { r(); }
    }))).then(() => undefined);
    return this.closing;
  }
}
