import { connect, type Socket } from 'node:net';
import type { DiskBackend } from './backend.js';

// An NBD client (the NBD protocol document, "newstyle" negotiation): fixed newstyle
// handshake, NBD_OPT_GO (falling back to NBD_OPT_EXPORT_NAME on servers that lack it),
// then transmission with simple replies: READ, WRITE, FLUSH, DISC, matched by handle.
// A bad handshake at start never hangs and never crashes: connect rejects.
//
// A server that restarts (or a cut connection, or one that stops answering) does not end the
// disk: like QEMU's NBD client with `reconnect-delay`, the client reconnects with bounded
// exponential backoff and re-sends every unanswered request, in the order the guest issued
// them (reads and writes of whole sectors, and flushes, are idempotent). Requests wait while
// it reconnects; only after `reconnectDelayMs` without the server do they fail, so the guest
// sees VIRTIO_BLK_S_IOERR after a bounded time, and later ones fail at once until a
// background attempt finds the server again. Each step is one line on stderr.

const NBDMAGIC = 0x4e42_444d_4147_4943n; // "NBDMAGIC"
const IHAVEOPT = 0x4948_4156_454f_5054n; // "IHAVEOPT"
const OPT_REPLY_MAGIC = 0x0003_e889_0455_65a9n;
const REQUEST_MAGIC = 0x2560_9513;
const SIMPLE_REPLY_MAGIC = 0x6744_6698;

const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_EXPORT_NAME = 1;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const REP_ERR_BIT = 0x8000_0000;
const REP_ERR_UNSUP = REP_ERR_BIT + 1;
const INFO_EXPORT = 0;
const TFLAG_SEND_FLUSH = 1 << 2;
const TFLAG_READ_ONLY = 1 << 1;

const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;
const CMD_FLUSH = 3;

const SECTOR_BYTES = 512;
const DEFAULT_TIMEOUT_MS = 5000;
/** How long requests wait for a lost server before they fail (QEMU's `reconnect-delay`). */
export const DEFAULT_RECONNECT_DELAY_MS = 30_000;
const FIRST_RETRY_MS = 50;
const MAX_RETRY_MS = 2000;

export class NbdError extends Error {
  override readonly name = 'NbdError';
  /** For a command that cannot open its disk: 1, the server out of reach (a run-time failure); 2, the spec names what the server does not have. */
  constructor(message: string, readonly exitCode = 1) {
    super(message);
  }
}

export interface NbdTarget {
  host: string;
  port: number;
  export: string;
  /** Handshake and per-request timeout (a server that stops answering counts as lost). */
  timeoutMs?: number;
  /** After losing the server, how long requests wait for it to come back before failing. */
  reconnectDelayMs?: number;
  /** Where the reconnect lines go; by default `ftvm: …` lines on stderr. */
  report?: (line: string) => void;
}

/** Bytes from a socket, read by exact lengths (the handshake and reply parser). */
class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private error: Error | undefined;
  /** Once set, data goes to this callback instead (transmission phase). */
  onData: (() => void) | undefined;

  push(b: Buffer): void {
    this.chunks.push(b);
    this.have += b.length;
    this.serve();
    this.onData?.();
  }

  fail(e: Error): void {
    this.error ??= e;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.error);
  }

  get available(): number {
    return this.have;
  }

  /** Take exactly `n` bytes now (the caller checked `available`). */
  take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.have -= n;
    return out;
  }

  peek(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = all.length > 0 ? [all] : [];
    return all.subarray(0, n);
  }

  read(n: number): Promise<Buffer> {
    if (this.have >= n) return Promise.resolve(this.take(n));
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => { this.waiter = { n, resolve, reject }; });
  }

  private serve(): void {
    const w = this.waiter;
    if (w && this.have >= w.n) {
      this.waiter = undefined;
      w.resolve(this.take(w.n));
    }
  }
}

/** One unanswered request: kept across reconnects until its reply or its failure. */
interface Request {
  type: number;
  offset: number;
  length: number;
  data: Uint8Array | undefined;
  resolve: (data: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout | undefined;
}

/** A negotiated connection. */
interface Link {
  sock: Socket;
  reader: ByteReader;
  size: bigint;
  flags: number;
}

/** Connect and negotiate once. Rejects with NbdError on a refused connection, a bad handshake or a timeout. */
async function dial(target: NbdTarget, where: string, timeoutMs: number): Promise<Link> {
  const reader = new ByteReader();
  const sock = connect({ host: target.host, port: target.port });
  sock.setNoDelay(true);
  sock.on('data', (b: Buffer) => reader.push(b));
  sock.on('error', (e) => reader.fail(new NbdError(`${where}: ${e.message}`)));
  sock.on('close', () => reader.fail(new NbdError(`${where}: connection closed during the handshake`)));
  const timer = setTimeout(() => {
    reader.fail(new NbdError(`${where}: no handshake within ${timeoutMs} ms`));
    sock.destroy();
  }, timeoutMs);
  try {
    const { size, flags } = await handshake(sock, reader, target.export, where);
    sock.removeAllListeners('error');
    sock.removeAllListeners('close');
    return { sock, reader, size, flags };
  } catch (e) {
    sock.destroy();
    throw e instanceof NbdError ? e : new NbdError(`${where}: ${(e as Error).message}`);
  } finally {
    clearTimeout(timer);
  }
}

/** A disk exported by an NBD server (Debian `nbd-server`, `qemu-nbd`): DESIGN §4's shared disk. */
export class NbdDisk implements DiskBackend {
  readonly name: string;
  readonly sectors: number;
  readonly sizeBytes: bigint;
  readonly flags: number;
  /** Unanswered requests in the order they were issued (a Set keeps insertion order). */
  private readonly unanswered = new Set<Request>();
  /** The current connection's requests by handle. */
  private readonly byHandle = new Map<bigint, Request>();
  private nextHandle = 1n;
  private link: Link | undefined;
  /** 'up': connected; 'reconnecting': requests wait; 'down': gave up, requests fail, retrying behind. */
  private state: 'up' | 'reconnecting' | 'down' | 'closed' = 'up';
  private lostAt = 0;
  private lostWhy = '';
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly where: string;
  private readonly timeoutMs: number;
  private readonly reconnectDelayMs: number;
  private readonly report: (line: string) => void;
  /** Reconnections so far (for tests and stats). */
  reconnects = 0;

  private constructor(private readonly target: NbdTarget, first: Link) {
    this.name = `nbd://${target.host}:${target.port}/${target.export}`;
    this.where = `${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port}`;
    this.sizeBytes = first.size;
    this.flags = first.flags;
    this.sectors = Number(first.size / BigInt(SECTOR_BYTES));
    this.timeoutMs = target.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.reconnectDelayMs = target.reconnectDelayMs ?? DEFAULT_RECONNECT_DELAY_MS;
    this.report = target.report ?? ((line) => { process.stderr.write(`ftvm: ${line}\n`); });
    this.install(first);
  }

  /** Connect and negotiate. Rejects with NbdError on a refused connection, a bad handshake or a timeout. */
  static async connect(target: NbdTarget): Promise<NbdDisk> {
    const where = `nbd://${target.host}:${target.port}/${target.export}`;
    return new NbdDisk(target, await dial(target, where, target.timeoutMs ?? DEFAULT_TIMEOUT_MS));
  }

  read(sector: number, count: number): Promise<Uint8Array> {
    return this.request(CMD_READ, sector * SECTOR_BYTES, count * SECTOR_BYTES);
  }

  async write(sector: number, data: Uint8Array): Promise<void> {
    if (this.flags & TFLAG_READ_ONLY) throw new NbdError(`${this.name}: export is read-only`);
    await this.request(CMD_WRITE, sector * SECTOR_BYTES, data.length, data);
  }

  async flush(): Promise<void> {
    // A server that does not ask for flushes writes through: nothing to wait for.
    if (!(this.flags & TFLAG_SEND_FLUSH)) return;
    await this.request(CMD_FLUSH, 0, 0);
  }

  private request(type: number, offset: number, length: number, data?: Uint8Array): Promise<Uint8Array> {
    if (this.state === 'closed') return Promise.reject(new NbdError(`${this.name}: closed`));
    if (this.state === 'down') return Promise.reject(new NbdError(`${this.name}: server lost ${Math.round(performance.now() - this.lostAt)} ms ago (${this.lostWhy})`));
    return new Promise<Uint8Array>((resolve, reject) => {
      const req: Request = { type, offset, length, data, resolve, reject, timer: undefined };
      this.unanswered.add(req);
      // While reconnecting it waits in `unanswered`, and is sent with the others once back.
      if (this.state === 'up') this.send(req);
    });
  }

  private send(req: Request): void {
    const link = this.link!;
    const handle = this.nextHandle++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(0, 4);
    h.writeUInt16BE(req.type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(req.offset), 16);
    h.writeUInt32BE(req.length, 24);
    req.timer = setTimeout(() => this.lose(link, `no reply within ${this.timeoutMs} ms`), this.timeoutMs);
    this.byHandle.set(handle, req);
    link.sock.write(req.data ? Buffer.concat([h, req.data]) : h);
  }

  private install(link: Link): void {
    this.link = link;
    link.reader.onData = () => this.parseReplies(link);
    link.sock.on('close', () => this.lose(link, 'connection closed'));
    link.sock.on('error', (e) => this.lose(link, e.message));
  }

  private parseReplies(link: Link): void {
    const r = link.reader;
    while (this.link === link && this.state === 'up' && r.available >= 16) {
      const head = r.peek(16);
      const magic = head.readUInt32BE(0);
      if (magic !== SIMPLE_REPLY_MAGIC) return this.lose(link, `bad reply magic 0x${magic.toString(16)}`);
      const error = head.readUInt32BE(4);
      const handle = head.readBigUInt64BE(8);
      const req = this.byHandle.get(handle);
      if (!req) return this.lose(link, `reply for unknown handle ${handle}`);
      const payload = req.type === CMD_READ && error === 0 ? req.length : 0;
      if (r.available < 16 + payload) return;
      r.take(16);
      const data = payload > 0 ? new Uint8Array(r.take(payload)) : new Uint8Array(0);
      this.byHandle.delete(handle);
      this.unanswered.delete(req);
      clearTimeout(req.timer);
      if (error !== 0) req.reject(new NbdError(`${this.name}: server error ${error}`));
      else req.resolve(data);
    }
  }

  /** The connection is unusable: keep its requests and reconnect (once per connection). */
  private lose(link: Link, why: string): void {
    if (this.link !== link || this.state !== 'up') return;
    this.link = undefined;
    link.sock.destroy();
    for (const req of this.byHandle.values()) clearTimeout(req.timer);
    this.byHandle.clear();
    this.state = 'reconnecting';
    this.lostAt = performance.now();
    this.lostWhy = why;
    this.report(`nbd ${this.where} lost: ${why}; reconnecting (requests wait up to ${this.reconnectDelayMs} ms)`);
    this.retry(FIRST_RETRY_MS);
  }

  private retry(delayMs: number): void {
    this.retryTimer = setTimeout(() => void this.attempt(delayMs), delayMs);
    // Only waiting requests keep the process alive; a disk given up on does not.
    if (this.state === 'down') this.retryTimer.unref();
  }

  private async attempt(delayMs: number): Promise<void> {
    this.retryTimer = undefined;
    if (this.state !== 'reconnecting' && this.state !== 'down') return;
    let link: Link;
    try {
      link = await dial(this.target, this.name, Math.min(this.timeoutMs, Math.max(this.reconnectDelayMs, FIRST_RETRY_MS)));
    } catch (e) {
      if (this.state !== 'reconnecting' && this.state !== 'down') return;
      this.lostWhy = (e as Error).message.replace(`${this.name}: `, '');
      const waited = performance.now() - this.lostAt;
      if (this.state === 'reconnecting' && waited >= this.reconnectDelayMs) this.giveUp(waited);
      const next = Math.min(delayMs * 2, MAX_RETRY_MS);
      // While requests wait, the last attempt lands at the bound, not a whole backoff later.
      this.retry(this.state === 'reconnecting' ? Math.max(1, Math.min(next, this.reconnectDelayMs - waited)) : next);
      return;
    }
    if (this.state !== 'reconnecting' && this.state !== 'down') {
      link.sock.destroy();
      return;
    }
    const waited = Math.round(performance.now() - this.lostAt);
    if (link.size !== this.sizeBytes) {
      // Another export (or a resized one) behind the same name: not the guest's disk.
      link.sock.destroy();
      this.lostWhy = `export is now ${link.size} bytes, was ${this.sizeBytes}`;
      if (this.state === 'reconnecting') this.giveUp(waited);
      this.retry(MAX_RETRY_MS);
      return;
    }
    this.state = 'up';
    this.reconnects++;
    this.install(link);
    const resent = this.unanswered.size;
    for (const req of this.unanswered) this.send(req);
    this.report(`nbd ${this.where} reconnected after ${waited} ms${resent > 0 ? `; re-sent ${resent} request${resent === 1 ? '' : 's'}` : ''}`);
  }

  /** No server within the bound: fail what waits, and fail later requests at once until it is back. */
  private giveUp(waited: number): void {
    this.state = 'down';
    const e = new NbdError(`${this.name}: server lost for ${Math.round(waited)} ms (${this.lostWhy})`);
    const failed = this.unanswered.size;
    for (const req of this.unanswered) req.reject(e);
    this.unanswered.clear();
    this.report(`nbd ${this.where} still lost after ${Math.round(waited)} ms: ${this.lostWhy}; failed ${failed} request${failed === 1 ? '' : 's'}, I/O fails until it is back`);
  }

  /**
   * The process died (backend.ts): the connection drops as the kernel would drop it (no
   * NBD_CMD_DISC, no waiting for replies); waiting requests fail.
   */
  async abandon(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    const link = this.link;
    this.link = undefined;
    link?.sock.destroy();
    for (const req of this.byHandle.values()) clearTimeout(req.timer);
    this.byHandle.clear();
    const e = new NbdError(`${this.name}: closed`);
    for (const req of this.unanswered) req.reject(e);
    this.unanswered.clear();
  }

  async close(): Promise<void> {
    if (this.state === 'closed') return;
    // NBD_CMD_DISC has no reply: send it once the requests before it are answered (or failed).
    while (this.unanswered.size > 0 && (this.state === 'up' || this.state === 'reconnecting')) await new Promise((r) => setTimeout(r, 1));
    const link = this.link;
    const wasUp = this.state === 'up';
    this.state = 'closed';
    clearTimeout(this.retryTimer);
    this.link = undefined;
    if (!link) return;
    if (wasUp) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD_DISC, 6);
      h.writeBigUInt64BE(this.nextHandle++, 8);
      await new Promise<void>((r) => link.sock.end(h, () => r()));
    }
    link.sock.destroy();
  }
}

async function handshake(sock: Socket, r: ByteReader, exportName: string, where: string): Promise<{ size: bigint; flags: number }> {
  const greet = await r.read(18);
  if (greet.readBigUInt64BE(0) !== NBDMAGIC) throw new NbdError(`${where}: not an NBD server (no NBDMAGIC)`);
  if (greet.readBigUInt64BE(8) !== IHAVEOPT) throw new NbdError(`${where}: oldstyle server; only newstyle negotiation is supported`);
  const serverFlags = greet.readUInt16BE(16);
  if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new NbdError(`${where}: server lacks fixed newstyle negotiation`);
  const noZeroes = (serverFlags & FLAG_NO_ZEROES) !== 0;
  const cf = Buffer.alloc(4);
  cf.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (noZeroes ? FLAG_NO_ZEROES : 0));
  sock.write(cf);

  const name = Buffer.from(exportName, 'utf8');
  // NBD_OPT_GO: export name length, name, zero information requests.
  const goData = Buffer.alloc(4 + name.length + 2);
  goData.writeUInt32BE(name.length, 0);
  name.copy(goData, 4);
  sock.write(option(OPT_GO, goData));
  let size: bigint | undefined;
  let flags = 0;
  for (;;) {
    const h = await r.read(20);
    if (h.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new NbdError(`${where}: bad option reply magic`);
    const type = h.readUInt32BE(12);
    const len = h.readUInt32BE(16);
    if (len > 1 << 20) throw new NbdError(`${where}: option reply of ${len} bytes`);
    const data = await r.read(len);
    if (type === REP_INFO) {
      if (len >= 12 && data.readUInt16BE(0) === INFO_EXPORT) {
        size = data.readBigUInt64BE(2);
        flags = data.readUInt16BE(10);
      }
      continue;
    }
    if (type === REP_ACK) {
      if (size === undefined) throw new NbdError(`${where}: NBD_OPT_GO acknowledged without export information`);
      return { size, flags };
    }
    if (type === REP_ERR_UNSUP) break; // an older server: NBD_OPT_EXPORT_NAME below
    if (type & REP_ERR_BIT) {
      const msg = data.toString('utf8');
      throw new NbdError(`${where}: server refused export '${exportName}' (error ${type - REP_ERR_BIT}${msg ? `: ${msg}` : ''})`, 2);
    }
    throw new NbdError(`${where}: unexpected option reply ${type}`);
  }
  sock.write(option(OPT_EXPORT_NAME, name));
  const ex = await r.read(10 + (noZeroes ? 0 : 124));
  return { size: ex.readBigUInt64BE(0), flags: ex.readUInt16BE(8) };
}

function option(opt: number, data: Buffer): Buffer {
  const b = Buffer.alloc(16 + data.length);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(opt, 8);
  b.writeUInt32BE(data.length, 12);
  data.copy(b, 16);
  return b;
}
