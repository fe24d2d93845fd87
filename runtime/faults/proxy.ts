// A TCP proxy between primary and backup that injects channel faults (DESIGN §6): cut the
// stream, stall it for a while, or corrupt a byte. It forwards bytes blindly (the channel is
// TLS inside), so a corrupted byte surfaces as a TLS record failure at the receiver.

import { createServer, connect, type Server, type Socket } from 'node:net';

export class FaultProxy {
  private readonly pairs: { client: Socket; upstream: Socket }[] = [];
  private stalledUntil = 0;
  private corruptNext = false;
  /** Stall once a chunk from the client carries these bytes (holdWhen). */
  private hold: { pattern: Buffer; ms: number } | undefined;
  /** Bytes forwarded primary -> backup and back. */
  readonly bytes = { down: 0, up: 0 };

  private constructor(private readonly server: Server, readonly port: number) {}

  static async start(targetHost: string, targetPort: number, host = '127.0.0.1'): Promise<FaultProxy> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, host, r));
    const proxy = new FaultProxy(server, (server.address() as { port: number }).port);
    server.on('connection', (client) => proxy.accept(client, targetHost, targetPort));
    return proxy;
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
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
