// The NAT of UDP forwarding across a failover: a frame carries its client after the IPv4
// datagram, the guest's stack reads only the datagram, and a table learned from logged frames
// sends the guest's reply to the client the other node mapped; a joining backup gets the
// table from the snapshot (ft/snapshot-wire.ts), for the clients from before its log starts.
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { UdpNat, UdpNet } from '../runtime/io/net-udp.js';
import { clientTrailer, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, parseFrame, udpFrame } from '../runtime/io/frames.js';
import { DEFAULT_MAC } from '../devices/virtio-net.js';
import fc from 'fast-check';
import { Machine } from '../runtime/machine.js';
import { LiveEnv } from '../runtime/env/live.js';
import { DeferredNet } from '../runtime/io/deferred-net.js';
import { decodeNatSection, encodeNatSection, NAT_VERSION, packSnapshot, restoreJoinSnapshot, unpackJoinSnapshot, unpackSnapshot } from '../runtime/ft/snapshot-wire.js';

const open: { close(): unknown }[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
});

async function client(): Promise<Socket> {
  const s = createSocket('udp4');
  open.push(s);
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return s;
}

const nextFrame = (net: UdpNet): Promise<Uint8Array> => new Promise((r) => { net.onFrame = r; });
const nextMessage = (s: Socket): Promise<Buffer> => new Promise((r) => s.once('message', (b) => r(b)));

/** What the guest sends back: a UDP reply from its port to the gateway's `dstPort`. */
const reply = (srcPort: number, dstPort: number, text: string): Uint8Array => udpFrame({
  dstMac: GATEWAY_MAC, srcMac: DEFAULT_MAC, srcIp: GUEST_IP, dstIp: GATEWAY_IP, srcPort, dstPort, payload: Buffer.from(text),
});

describe('UDP forwarding NAT across processes', () => {
  it('a forwarded frame parses as the datagram alone and names its client in the trailer', async () => {
    const net = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }]);
    open.push(net);
    const c = await client();
    const got = nextFrame(net);
    c.send(Buffer.from('query'), net.boundPorts[0]!, '127.0.0.1');
    const f = await got;
    const p = parseFrame(f);
    expect(p.kind).toBe('udp');
    if (p.kind !== 'udp') return;
    expect(Buffer.from(p.udp.payload).toString()).toBe('query');
    expect(p.udp.dstPort).toBe(53);
    expect(clientTrailer(f)).toEqual({ mappedPort: p.udp.srcPort, ip: 0x7f00_0001, port: c.address().port, fwd: 0 });
    // A frame without the trailer (the guest's own) is not taken for one.
    expect(clientTrailer(reply(53, p.udp.srcPort, 'answer'))).toBeUndefined();
  });

  it('a table learned from the frames answers the old node\'s clients and maps new ones after them', async () => {
    const old = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }]);
    open.push(old);
    const a = await client();
    const b = await client();
    const frames: Uint8Array[] = [];
    for (const [s, text] of [[a, 'from a'], [b, 'from b'], [a, 'a again']] as const) {
      const got = nextFrame(old);
      s.send(Buffer.from(text), old.boundPorts[0]!, '127.0.0.1');
      frames.push(await got);
    }
    const ports = frames.map((f) => (parseFrame(f) as { udp: { srcPort: number } }).udp.srcPort);
    expect(ports[0]).toBe(ports[2]);
    expect(ports[1]).not.toBe(ports[0]);
    await old.close();
    open.splice(open.indexOf(old), 1);

    // The backup's replay delivers the logged frames; then it binds the port itself.
    const nat = new UdpNat(9000);
    for (const f of frames) nat.learn(f);
    expect(nat.learned).toBe(2);
    const next = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }], { nat });
    open.push(next);
    const toB = nextMessage(b);
    next.send(reply(53, ports[1]!, 'answer for b'));
    expect((await toB).toString()).toBe('answer for b');
    expect(next.stats.dropped).toBe(0);
    // A new client gets the port after the newest learned one, not one a known client holds.
    const c = await client();
    const got = nextFrame(next);
    c.send(Buffer.from('new'), next.boundPorts[0]!, '127.0.0.1');
    const p = parseFrame(await got) as { udp: { srcPort: number } };
    expect(p.udp.srcPort).toBe(ports[1]! + 1);
    // Unlearned, the reply has nowhere to go: dropped and counted.
    const blank = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }], { nat: new UdpNat(9000) });
    open.push(blank);
    blank.send(reply(53, ports[1]!, 'lost'));
    expect(blank.stats.dropReasons).toEqual({ 'UDP to an unmapped port': 1 });
  });

  it('a join snapshot carries the table: the joiner answers the clients the primary mapped before it, and maps new ones after them', async () => {
    const primaryNet = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }]);
    open.push(primaryNet);
    const primary = new Machine({ env: new LiveEnv(), net: { backend: primaryNet } });
    const a = await client();
    const b = await client();
    const ports: number[] = [];
    for (const s of [a, b]) {
      const got = nextFrame(primaryNet);
      s.send(Buffer.from('before the join'), primaryNet.boundPorts[0]!, '127.0.0.1');
      ports.push((parseFrame(await got) as { udp: { srcPort: number } }).udp.srcPort);
    }
    const packed = packSnapshot(primary);
    await primaryNet.close();
    open.splice(open.indexOf(primaryNet), 1);

    // The joiner's machine has the same NIC, no backend: its network binds at go-live.
    const lines: string[] = [];
    const deferred = new DeferredNet([{ hostAddr: '127.0.0.1', hostPort: primaryNet.forwards[0]!.hostPort, guestPort: 53 }], { report: (l) => lines.push(l) });
    open.push(deferred);
    const joiner = new Machine({ env: new LiveEnv(), net: { onDelivered: (f) => deferred.learn(f) } });
    restoreJoinSnapshot(joiner, packed, deferred);
    expect(lines).toEqual([]);
    expect(deferred.nat.imported).toBe(2);
    expect(deferred.nat.learned).toBe(0);
    const udp = await deferred.open();
    const toA = nextMessage(a);
    deferred.send(reply(53, ports[0]!, 'answer for a'));
    expect((await toA).toString()).toBe('answer for a');
    expect(udp.stats.dropped).toBe(0);
    const c = await client();
    const got = nextFrame(udp);
    c.send(Buffer.from('new'), udp.boundPorts[0]!, '127.0.0.1');
    expect((parseFrame(await got) as { udp: { srcPort: number } }).udp.srcPort).toBe(ports[1]! + 1);
    // A replay has no network: the machine part reads alone, as does a snapshot without a NIC.
    expect(unpackSnapshot(packed).icount).toBe(primary.icount);
    expect(unpackJoinSnapshot(packSnapshot(new Machine({ env: new LiveEnv() }))).nat).toBeUndefined();
  });

  it('a truncated or damaged NAT section is one line and the join goes on; the machine state is restored either way', async () => {
    const net = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }]);
    open.push(net);
    const primary = new Machine({ memoryMiB: 1, env: new LiveEnv(), net: { backend: net } });
    for (let i = 0; i < 3; i++) {
      const s = await client();
      const got = nextFrame(net);
      s.send(Buffer.from('q'), net.boundPorts[0]!, '127.0.0.1');
      await got;
    }
    const packed = packSnapshot(primary);
    const { nat } = unpackJoinSnapshot(packed);
    const natAt = packed.length - nat!.length;
    expect(decodeNatSection(nat!, 1).rows).toHaveLength(3);
    const joinWith = (bytes: Uint8Array): { lines: string[]; imported: number; icount: number } => {
      const lines: string[] = [];
      const deferred = new DeferredNet([{ hostAddr: '127.0.0.1', hostPort: 1, guestPort: 53 }], { report: (l) => lines.push(l) });
      const m = new Machine({ memoryMiB: 1, env: new LiveEnv(), net: {} });
      restoreJoinSnapshot(m, bytes, deferred);
      return { lines, imported: deferred.nat.imported, icount: m.icount };
    };
    const unusable = /^the join snapshot's NAT table is unusable \(.+\); clients from before the join get replies only when they ask again$/;
    fc.assert(fc.property(
      fc.oneof(
        fc.nat({ max: nat!.length - 1 }).map((n) => packed.subarray(0, natAt + n)),
        fc.tuple(fc.nat({ max: nat!.length - 1 }), fc.integer({ min: 1, max: 255 })).map(([at, x]) => {
          const b = Uint8Array.from(packed);
          b[natAt + at]! ^= x;
          return b;
        }),
      ),
      (bytes) => {
        const r = joinWith(bytes);
        expect(r.lines).toHaveLength(1);
        expect(r.lines[0]).toMatch(unusable);
        expect(r.imported).toBe(0);
        expect(r.icount).toBe(primary.icount);
      },
    ), { numRuns: 300 });
    // Another version says so; a table for more forwards than this node has is not taken.
    const v2 = Uint8Array.from(packed);
    v2[natAt + 3] = NAT_VERSION + 1;
    expect(joinWith(v2).lines[0]).toMatch(/NAT section version 2 \(this ftvm reads version 1\)/);
    const wide = encodeNatSection({ next: 0, rows: [{ mappedPort: 50000, fwd: 1, ip: 0x7f00_0001, port: 4000 }] });
    expect(() => decodeNatSection(wide, 1)).toThrow(/through forward 1, this node has 1/);
    expect(decodeNatSection(wide, 2).rows).toEqual([{ mappedPort: 50000, fwd: 1, ip: 0x7f00_0001, port: 4000 }]);
  });
});
