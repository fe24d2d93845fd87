// Can a joiner's NAT table send a reply to another client than the live node would (RELIABILITY
// "dns wrong answer, resolved", the candidates ruled out)? The table a joiner takes live with is
// the snapshot's (the live node's, exported with the machine state) plus what every frame of the
// log after it names. Under client ports the OS hands out again (the resolvers' new socket per
// query) and mapped ports reused oldest first after 16 384 clients, with the snapshot taken at
// any point: for every port the guest can reply to, the joiner's table names the client the live
// node's names.
import { describe, expect, it } from 'vitest';
import { FIRST_MAPPED_PORT, MAPPED_PORTS, UdpNat } from '../runtime/io/net-udp.js';
import { CLIENT_TRAILER_BYTES, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, putClientTrailer, udpFrame } from '../runtime/io/frames.js';
import { DEFAULT_MAC } from '../devices/virtio-net.js';
import { prng } from '../runtime/demo/dns-load.js';

/** The frame the live node's forward makes for a datagram (net-udp.ts fromClient). */
function frameFor(mapped: number, ip: number, port: number, fwd: number): Uint8Array {
  const f = udpFrame({
    dstMac: DEFAULT_MAC, srcMac: GATEWAY_MAC, srcIp: GATEWAY_IP, dstIp: GUEST_IP, srcPort: mapped, dstPort: 53,
    payload: Buffer.from('q'), trailerBytes: CLIENT_TRAILER_BYTES,
  });
  putClientTrailer(f, ip, port, fwd);
  return f;
}

const who = (m: { fwd: number; addr: string; port: number } | undefined): string | undefined => (m ? `${m.fwd}|${m.addr}|${m.port}` : undefined);

describe('a joiner\'s NAT table against the live node\'s', () => {
  for (const seed of [1, 2, 3]) {
    it(`names the same client for every port the guest saw (seed ${seed}: port reuse, a wrap, a snapshot anywhere)`, () => {
      const random = prng(seed);
      const live = new UdpNat();
      // More datagrams than mapped ports: the table wraps and reuses its oldest ports.
      const total = MAPPED_PORTS + 6000;
      const snapshotAt = Math.floor(random() * total);
      let joiner: UdpNat | undefined;
      /** Mapped ports whose newest mapping's frame reached the guest (the ports it can reply to with that client). */
      const guestSaw = new Map<number, string>();
      let fresh = 0;
      for (let i = 0; i < total; i++) {
        if (i === snapshotAt) {
          joiner = new UdpNat(4096 + Math.floor(random() * 8192));
          joiner.import(live.export());
        }
        // A few busy clients, ports the OS hands out again, and a stream of new ones.
        const r = random();
        const [addr, ip, port] = r < 0.2 ? ['127.0.0.1', 0x7f00_0001, 40000 + Math.floor(random() * 20)]
          : r < 0.3 ? ['10.0.0.1', 0x0a00_0001, 50000 + Math.floor(random() * 300)]
            : ['10.0.0.2', 0x0a00_0002, 1024 + (fresh++ % 60000)];
        const fwd = random() < 0.1 ? 1 : 0;
        const m = live.map(fwd, addr, port)!;
        // One datagram in 50 is dropped before the guest (a full NIC queue): never logged. The last one arrives.
        if (random() < 0.02 && i < total - 1) continue;
        guestSaw.set(m.mapped, who(m)!);
        const f = frameFor(m.mapped, ip, port, fwd);
        joiner?.learn(f);
      }
      expect(joiner).toBeDefined();
      let checked = 0;
      for (const [mapped, client] of guestSaw) {
        // Ports the live node gave to a client whose datagram never reached the guest: no reply
        // of the guest is owed there to that client.
        if (who(live.client(mapped)) !== client) continue;
        expect(who(joiner!.client(mapped)), `port ${mapped}`).toBe(client);
        checked++;
      }
      expect(checked).toBeGreaterThan(MAPPED_PORTS * 0.9);
      // Allocation goes on where the live node's did (its last datagram reached the guest).
      const next = joiner!.map(0, '192.0.2.7', 7);
      const liveNext = live.map(0, '192.0.2.7', 7);
      expect(next!.mapped).toBe(liveNext!.mapped);
      expect(next!.mapped).toBeGreaterThanOrEqual(FIRST_MAPPED_PORT);
    });
  }
});
