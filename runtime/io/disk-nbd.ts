import { connect, type Socket } from 'node:net';
import type { DiskBackend } from './backend.js';

// An NBD client (the NBD protocol document, "newstyle" negotiation): fixed newstyle
// handshake, NBD_OPT_GO (falling back to NBD_OPT_EXPORT_NAME on servers that lack it),
// then transmission with simple replies: READ, WRITE, FLUSH, DISC, matched by handle.
// A dead server or a bad handshake never hangs and never crashes: pending and later
// requests fail, and the guest sees VIRTIO_BLK_S_IOERR.

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

export class NbdError extends Error {
  override readonly name = 'NbdError';
}

export interface NbdTarget {
  host: string;
  port: number;
  export: string;
  /** Handshake and per-request timeout (a server that stops answering fails requests). */
  timeoutMs?: number;
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

interface Inflight {
  type: number;
  length: number;
  resolve: (data: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** A disk exported by an NBD server (Debian `nbd-server`, `qemu-nbd`): DESIGN §4's shared disk. */
export class NbdDisk implements DiskBackend {
  readonly name: string;
  readonly sectors: number;
  private readonly inflight = new Map<bigint, Inflight>();
  private nextHandle = 1n;
  private dead: NbdError | undefined;
  private readonly timeoutMs: number;

  private constructor(
    private readonly sock: Socket,
    private readonly reader: ByteReader,
    target: NbdTarget,
    readonly sizeBytes: bigint,
    readonly flags: number,
  ) {
    this.name = `nbd://${target.host}:${target.port}/${target.export}`;
    this.sectors = Number(sizeBytes / BigInt(SECTOR_BYTES));
    this.timeoutMs = target.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    reader.onData = () => this.parseReplies();
    const die = (why: string) => this.kill(new NbdError(`${this.name}: ${why}`));
    sock.on('close', () => die('connection closed'));
    sock.on('error', (e) => die(e.message));
  }

  /** Connect and negotiate. Rejects with NbdError on a refused connection, a bad handshake or a timeout. */
  static async connect(target: NbdTarget): Promise<NbdDisk> {
    const where = `nbd://${target.host}:${target.port}/${target.export}`;
    const timeoutMs = target.timeoutMs ?? DEFAULT_TIMEOUT_MS;
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
      clearTimeout(timer);
      sock.removeAllListeners('error');
      sock.removeAllListeners('close');
      return new NbdDisk(sock, reader, target, size, flags);
    } catch (e) {
      clearTimeout(timer);
      sock.destroy();
      throw e instanceof NbdError ? e : new NbdError(`${where}: ${(e as Error).message}`);
    }
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
    if (this.dead) return Promise.reject(this.dead);
    const handle = this.nextHandle++;
    const h = Buffer.alloc(28);
    h.writeUInt32BE(REQUEST_MAGIC, 0);
    h.writeUInt16BE(0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(handle, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    return new Promise<Uint8Array>((resolve, reject) => {
      const timer = setTimeout(() => this.kill(new NbdError(`${this.name}: no reply within ${this.timeoutMs} ms`)), this.timeoutMs);
      this.inflight.set(handle, { type, length, resolve, reject, timer });
      this.sock.write(data ? Buffer.concat([h, data]) : h);
    });
  }

  private parseReplies(): void {
    const r = this.reader;
    while (!this.dead && r.available >= 16) {
      const head = r.peek(16);
      const magic = head.readUInt32BE(0);
      if (magic !== SIMPLE_REPLY_MAGIC) return this.kill(new NbdError(`${this.name}: bad reply magic 0x${magic.toString(16)}`));
      const error = head.readUInt32BE(4);
      const handle = head.readBigUInt64BE(8);
      const req = this.inflight.get(handle);
      if (!req) return this.kill(new NbdError(`${this.name}: reply for unknown handle ${handle}`));
      const payload = req.type === CMD_READ && error === 0 ? req.length : 0;
      if (r.available < 16 + payload) return;
      r.take(16);
      const data = payload > 0 ? new Uint8Array(r.take(payload)) : new Uint8Array(0);
      this.inflight.delete(handle);
      clearTimeout(req.timer);
      if (error !== 0) req.reject(new NbdError(`${this.name}: server error ${error}`));
      else req.resolve(data);
    }
  }

  /** The connection is unusable: fail everything in flight and everything after. */
  private kill(e: NbdError): void {
    if (this.dead) return;
    this.dead = e;
    for (const req of this.inflight.values()) {
      clearTimeout(req.timer);
      req.reject(e);
    }
    this.inflight.clear();
    this.sock.destroy();
  }

  async close(): Promise<void> {
    if (this.dead) return;
    // NBD_CMD_DISC has no reply: send it once the writes before it are answered.
    while (this.inflight.size > 0 && !this.dead) await new Promise((r) => setTimeout(r, 1));
    if (!this.dead) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(REQUEST_MAGIC, 0);
      h.writeUInt16BE(CMD_DISC, 6);
      h.writeBigUInt64BE(this.nextHandle++, 8);
      await new Promise<void>((r) => this.sock.end(h, () => r()));
    }
    this.dead = new NbdError(`${this.name}: closed`);
    this.sock.destroy();
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
      throw new NbdError(`${where}: server refused export '${exportName}' (error ${type - REP_ERR_BIT}${msg ? `: ${msg}` : ''})`);
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
