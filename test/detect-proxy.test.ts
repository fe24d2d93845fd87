// The fault proxy in a process of its own (runtime/faults/proxy-process.ts, proxy-child.ts):
// real TCP and UDP through a forked child. It relays bytes both ways and datagrams both ways
// (answers to the last sender), a stall holds bytes and drops datagrams, a cut ends the
// connection, and close() reports the counts and leaves no process behind.
// Runs the built entry (dist/): `npm run build` first, as the other process tests.
import { createServer, connect, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { ProcessProxy } from '../runtime/faults/proxy-child.js';
import { alive } from './helpers/cli-procs.js';

const waitFor = async (what: () => boolean, ms = 5000): Promise<void> => {
  const t0 = Date.now();
  while (!what()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

const closers: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** A target: a TCP server that echoes upper-cased, and a UDP socket on the same port that answers 'ack:'+datagram. */
async function target(): Promise<{ port: number; udpSeen: Buffer[] }> {
  const sockets: Socket[] = [];
  const server = createServer((s) => {
    sockets.push(s);
    s.on('data', (d) => s.write(d.toString().toUpperCase()));
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const udp = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(port, '127.0.0.1', r));
  const udpSeen: Buffer[] = [];
  udp.on('message', (d, from) => {
    udpSeen.push(d);
    udp.send(Buffer.concat([Buffer.from('ack:'), d]), from.port, from.address);
  });
  closers.push(() => new Promise<void>((r) => {
    for (const s of sockets) s.destroy();
    udp.close();
    server.close(() => r());
  }));
  return { port, udpSeen };
}

async function client(port: number): Promise<{ sock: Socket; got: () => string; closed: () => boolean }> {
  const sock = connect({ host: '127.0.0.1', port });
  let text = '';
  let closed = false;
  sock.on('data', (d) => { text += d.toString(); });
  sock.on('close', () => { closed = true; });
  sock.on('error', () => undefined);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  closers.push(() => sock.destroy());
  return { sock, got: () => text, closed: () => closed };
}

async function udpClient(): Promise<{ sock: UdpSocket; got: string[] }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const got: string[] = [];
  sock.on('message', (d) => got.push(d.toString()));
  closers.push(() => sock.close());
  return { sock, got };
}

describe('ProcessProxy (the fault proxy in its own process)', () => {
  it('relays bytes and datagrams both ways, counts them, and leaves no process after close', async () => {
    const t = await target();
    const proxy = await ProcessProxy.start('127.0.0.1', t.port);
    const pid = proxy.pid;
    expect(pid).toBeGreaterThan(0);
    expect(proxy.port).not.toBe(t.port);
    const c = await client(proxy.port);
    c.sock.write('hello');
    await waitFor(() => c.got() === 'HELLO');
    const u = await udpClient();
    for (let i = 0; i < 5; i++) u.sock.send(Buffer.from(`beat${i}`), proxy.port, '127.0.0.1');
    await waitFor(() => u.got.length === 5);
    expect(u.got.sort()).toEqual([0, 1, 2, 3, 4].map((i) => `ack:beat${i}`));
    const counts = await proxy.close();
    expect(counts.bytes).toEqual({ up: 5, down: 5 });
    expect(counts.datagrams).toEqual({ up: 5, down: 5, dropped: 0 });
    await waitFor(() => !alive(pid));
  });

  it('a stall holds the bytes (delivered after it, in order) and drops the datagrams', async () => {
    const t = await target();
    const proxy = await ProcessProxy.start('127.0.0.1', t.port);
    const c = await client(proxy.port);
    const u = await udpClient();
    c.sock.write('a');
    await waitFor(() => c.got() === 'A');
    proxy.stall(400);
    // The stall is a message to the child: give it a moment to land.
    await new Promise((r) => setTimeout(r, 100));
    c.sock.write('b');
    u.sock.send(Buffer.from('lost'), proxy.port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, 100));
    expect(c.got()).toBe('A');
    expect(t.udpSeen).toHaveLength(0);
    await waitFor(() => c.got() === 'AB', 3000);
    const counts = await proxy.close();
    expect(counts.datagrams.dropped).toBe(1);
    expect(counts.datagrams.up).toBe(0);
  });

  it('a cut ends the connection; a corrupt byte reaches the client changed', async () => {
    const t = await target();
    const proxy = await ProcessProxy.start('127.0.0.1', t.port);
    const c = await client(proxy.port);
    proxy.corrupt();
    await new Promise((r) => setTimeout(r, 100));
    c.sock.write('xyz');
    await waitFor(() => c.got().length === 3);
    expect(c.got()).not.toBe('XYZ');
    proxy.cut();
    await waitFor(() => c.closed());
    await proxy.close();
  });
});
