// A TCP proxy between primary and backup that injects channel faults (DESIGN §6): cut the
// stream, stall it for a while, or corrupt a byte. It forwards bytes blindly (the channel is
// TLS inside), so a corrupted byte surfaces as a TLS record failure at the receiver.
// It relays the nodes' heartbeat datagrams too (runtime/channel/heartbeat.ts: UDP on the
// channel's port number), and a stall drops them: the link is down for that long, as for a
// partition that heals (TCP delivers its bytes late, UDP loses them).

import { createServer, connect, type Server, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';

export class FaultProxy {
  private readonly pairs: { client: Socket; upstream: Socket }[] = [];
  private stalledUntil = 0;
  private corruptNext = false;
  /** Stall once a chunk from the client carries these bytes (holdWhen). */
  private hold: { pattern: Buffer; ms: number } | undefined;
  /** Bytes forwarded primary -> backup and back. */
  readonly bytes = { down: 0, up: 0 };

  /** Heartbeat datagrams relayed each way, and dropped by stalls. */
  readonly datagrams = { down: 0, up: 0, dropped: 0 };
  private udp: UdpSocket[] = [];

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(targetHost: string, targetPort: number, host = '127.0.0.1'): Promise<FaultProxy> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, host, r));
    const proxy = new FaultProxy(server, (server.address() as { port: number }).port);
    server.on('connection', (client) => proxy.accept(client, targetHost, targetPort));
    await proxy.relayDatagrams(host, targetHost, targetPort);
    return proxy;
  }

  /** UDP on the proxy's port number to the target's, and the answers back to the last sender. */
  private async relayDatagrams(host: string, targetHost: string, targetPort: number): Promise<void> {
    const front = createSocket('udp4');
    const back = createSocket('udp4');
    const bind = (s: UdpSocket, port: number): Promise<boolean> => new Promise((resolve) => {
      s.once('error', () => resolve(false));
      s.bind(port, host, () => resolve(true));
    });
    // The port may be taken: then the nodes' beats go nowhere, and detection is the log's.
    if (!(await bind(front, this.port)) || !(await bind(back, 0))) {
      front.close();
      back.close();
      return;
    }
    front.on('error', () => undefined);
    back.on('error', () => undefined);
    let client: { address: string; port: number } | undefined;
    const pass = (): boolean => {
      if (this.stalledUntil > Date.now()) {
        this.datagrams.dropped++;
        return false;
      }
      return true;
    };
    front.on('message', (d, from) => {
      client = { address: from.address, port: from.port };
      if (!pass()) return;
      this.datagrams.up++;
      back.send(d, targetPort, targetHost);
    });
    back.on('message', (d) => {
      if (!client || !pass()) return;
      this.datagrams.down++;
      front.send(d, client.port, client.address);
    });
    this.udp = [front, back];
  }

  private accept(client: Socket, host: string, port: number): void {
    const upstream = connect({ host, port });
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    this.pairs.push({ client, upstream });
    const kill = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', kill);
    upstream.on('close', kill);
    // Backup -> primary (acks); or a disk client's requests when this proxies a disk.
    client.on('data', (d: Buffer) => {
      if (this.hold && d.includes(this.hold.pattern)) {
        this.stall(this.hold.ms);
        this.hold = undefined;
      }
      this.forward(upstream, d, 'up');
    });
    // Primary -> backup (log frames): the direction faults corrupt.
    upstream.on('data', (d: Buffer) => {
      if (this.corruptNext && d.length > 0) {
        this.corruptNext = false;
        d = Buffer.from(d);
        d[d.length >> 1]! ^= 0x20;
      }
      this.forward(client, d, 'down');
    });
  }

  private readonly queued = new Map<Socket, Buffer[]>();
  /** Releases of stalled bytes still due: a closed proxy cancels them (a long stall must not keep the process). */
  private readonly releases = new Set<NodeJS.Timeout>();

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.releases.delete(t);
      fn();
    }, ms);
    this.releases.add(t);
  }

  private forward(to: Socket, d: Buffer, dir: 'up' | 'down'): void {
    this.bytes[dir] += d.length;
    const q = this.queued.get(to);
    // A stall keeps bytes in order: while anything waits, later bytes queue behind it.
    if (q) {
      q.push(d);
      return;
    }
    const wait = this.stalledUntil - Date.now();
    if (wait <= 0) {
      to.write(d);
      return;
    }
    this.queued.set(to, [d]);
    const release = (): void => {
      const left = this.stalledUntil - Date.now();
      if (left > 0) {
        this.later(release, left);
        return;
      }
      const all = this.queued.get(to) ?? [];
      this.queued.delete(to);
      if (!to.destroyed) to.write(Buffer.concat(all));
    };
    this.later(release, wait);
  }

  /** Drop every connection at once (both directions), as a broken link would. */
  cut(): void {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
  }

  /** Hold all traffic for `ms` (both directions), then deliver it in order. */
  stall(ms: number): void {
    this.stalledUntil = Math.max(this.stalledUntil, Date.now() + ms);
  }

  /**
   * Hold all traffic for `ms` from the first chunk from the client that carries `pattern` (that
   * chunk included): e.g. one disk write, with the writes before it through. A pattern split
   * across two chunks is not seen.
   */
  holdWhen(pattern: Buffer, ms: number): void {
    this.hold = { pattern, ms };
  }

  /** Flip one bit in the next chunk from the primary to the backup. */
  corrupt(): void {
    this.corruptNext = true;
  }

  async close(): Promise<void> {
    for (const t of this.releases) clearTimeout(t);
    this.releases.clear();
    this.cut();
    for (const u of this.udp) u.close();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
