import { createSocket, type Socket } from 'node:dgram';
import type { NetBackend } from './backend.js';
import { DEFAULT_MAC } from '../../devices/virtio-net.js';
import { arpReply, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, parseFrame, udpFrame } from './frames.js';

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
  port: number;
}

/** Source ports the guest sees for clients: 49152–65535, reused oldest first. */
const FIRST_MAPPED_PORT = 49152;
const MAPPED_PORTS = 65536 - FIRST_MAPPED_PORT;

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
  private readonly byClient = new Map<string, number>();
  private readonly byPort = new Map<number, Mapping>();
  private nextPort = 0;
  private ipId = 0;

  private constructor(
    private readonly sockets: Socket[],
    readonly forwards: readonly UdpForward[],
  ) {
    sockets.forEach((s, i) => s.on('message', (msg, rinfo) => this.fromClient(i, msg, rinfo.address, rinfo.port)));
  }

  static async open(forwards: readonly UdpForward[]): Promise<UdpNet> {
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
    return new UdpNet(sockets, forwards);
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
    if (msg.length > 1500 - 28) return this.drop('datagram larger than the MTU');
    const key = `${fwd}|${addr}|${port}`;
    let mapped = this.byClient.get(key);
    if (mapped === undefined) {
      mapped = FIRST_MAPPED_PORT + this.nextPort;
      this.nextPort = (this.nextPort + 1) % MAPPED_PORTS;
      const old = this.byPort.get(mapped);
      if (old) this.byClient.delete(`${old.fwd}|${old.addr}|${old.port}`);
      this.byPort.set(mapped, { fwd, addr, port });
      this.byClient.set(key, mapped);
    }
    this.stats.datagramsIn++;
    this.onFrame?.(udpFrame({
      dstMac: this.guestMac, srcMac: GATEWAY_MAC, srcIp: GATEWAY_IP, dstIp: GUEST_IP,
      srcPort: mapped, dstPort: this.forwards[fwd]!.guestPort, payload: msg, ipId: this.ipId++,
    }));
  }

  send(frame: Uint8Array): void {
    const p = parseFrame(frame);
    switch (p.kind) {
      case 'arp-request':
        if (p.arp.targetIp !== GATEWAY_IP) return this.drop('ARP for another address');
        this.guestMac = p.arp.senderMac;
        this.stats.arpReplies++;
        this.onFrame?.(arpReply(p.arp, GATEWAY_MAC, GATEWAY_IP));
        return;
      case 'udp': {
        const u = p.udp;
        if (u.dstIp !== GATEWAY_IP) return this.drop('UDP to another address');
        const m = this.byPort.get(u.dstPort);
        if (!m) return this.drop('UDP to an unmapped port');
        this.guestMac = u.srcMac;
        this.stats.datagramsOut++;
        this.sockets[m.fwd]!.send(u.payload, m.port, m.addr);
        return;
      }
      case 'other':
        return this.drop(p.why);
    }
  }

  private drop(why: string): void {
    this.stats.dropped++;
    this.stats.dropReasons[why] = (this.stats.dropReasons[why] ?? 0) + 1;
  }

  async close(): Promise<void> {
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => {
      try { s.close(() => r()); } catch { r(); }
    })));
  }
}
