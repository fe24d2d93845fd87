// The NAT's ports are reused oldest first once 16384 clients have been seen: a client that
// comes back after its port went to another one gets a new port, and the other one keeps its own.
import { describe, expect, it } from 'vitest';
import { UdpNat } from '../runtime/io/net-udp.js';
import { CLIENT_TRAILER_BYTES, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, putClientTrailer, udpFrame } from '../runtime/io/frames.js';
import { DEFAULT_MAC } from '../devices/virtio-net.js';

const PORTS = 65536 - 49152;

describe('UDP forwarding NAT, ports reused', () => {
  it('a client seen again after its port was reused gets a new one; replies still reach the new owner', () => {
    const nat = new UdpNat();
    const first = nat.map(0, '127.0.0.1', 4000)!;
    // The same client again: the same mapping.
    expect(nat.map(0, '127.0.0.1', 4000)).toBe(first);
    for (let i = 1; i < PORTS; i++) nat.map(0, '10.0.0.1', 10_000 + i);
    // Every port is taken now; the next new client takes the oldest one, the first client's.
    const newcomer = nat.map(0, '10.0.0.2', 5000)!;
    expect(newcomer.mapped).toBe(first.mapped);
    expect(nat.client(first.mapped)).toEqual({ fwd: 0, addr: '10.0.0.2', ip: 0x0a00_0002, port: 5000, mapped: first.mapped });
    // The first client comes back: a port of its own again, not the newcomer's.
    const back = nat.map(0, '127.0.0.1', 4000)!;
    expect(back.mapped).not.toBe(first.mapped);
    expect(nat.client(back.mapped)?.port).toBe(4000);
    expect(nat.client(first.mapped)?.addr).toBe('10.0.0.2');
    // A client only ever differs by forward: a mapping of its own too.
    expect(nat.map(1, '127.0.0.1', 4000)!.mapped).not.toBe(back.mapped);
  });

  it('a mapping learned from a replayed frame replaces the one a live client had, even the last one used', () => {
    const nat = new UdpNat();
    const a = nat.map(0, '127.0.0.1', 4000)!;
    // The log says the other node gave that port to another client (a frame the guest received).
    const f = udpFrame({
      dstMac: DEFAULT_MAC, srcMac: GATEWAY_MAC, srcIp: GATEWAY_IP, dstIp: GUEST_IP, srcPort: a.mapped, dstPort: 53,
      payload: Buffer.from('q'), trailerBytes: CLIENT_TRAILER_BYTES,
    });
    putClientTrailer(f, 0x0a00_0009, 7000, 0);
    nat.learn(f);
    expect(nat.client(a.mapped)).toMatchObject({ addr: '10.0.0.9', port: 7000 });
    const again = nat.map(0, '127.0.0.1', 4000)!;
    expect(again.mapped).not.toBe(a.mapped);
    expect(nat.client(again.mapped)).toMatchObject({ addr: '127.0.0.1', port: 4000 });
  });
});
