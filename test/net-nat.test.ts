// The NAT of UDP forwarding across a failover: a frame carries its client after the IPv4
// datagram, the guest's stack reads only the datagram, and a table learned from logged frames
// sends the guest's reply to the client the other node mapped.
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { UdpNat, UdpNet } from '../runtime/io/net-udp.js';
import { clientTrailer, GATEWAY_IP, GATEWAY_MAC, GUEST_IP, parseFrame, udpFrame } from '../runtime/io/frames.js';
import { DEFAULT_MAC } from '../devices/virtio-net.js';

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
});
