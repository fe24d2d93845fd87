// Client for the kv guest's UDP protocol (guests/kv/PROTOCOL.md).
//
// Requests go one at a time: the server remembers only each client's last
// request id and reply, so a second request in flight would turn the first
// one's retries into STALE answers. Each request is retried with
// exponential backoff, first on the current server and then on the next
// ones in order (failover); a reply counts only if it carries our client id
// and the id of the request in flight, so duplicates (a retry answered
// twice, a reply released again after a failover) and stale replies are
// dropped.
import { randomInt } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';

export const KV_REQ_MAGIC = 0x4b;
export const KV_REP_MAGIC = 0x6b;
export const KV_HEADER = 16;
export const KV_MAX_KEY = 64;
export const KV_MAX_VALUE = 256;

export enum KvOp {
  Get = 1,
  Put = 2,
  Del = 3,
}

export enum KvStatus {
  Ok = 0,
  NotFound = 1,
  BadRequest = 2,
  Stale = 3,
  Full = 4,
  IoError = 5,
}

export interface KvRequest {
  op: KvOp;
  clientId: number;
  requestId: number;
  key: Buffer;
  value?: Buffer;
}

export interface KvReply {
  op: KvOp;
  status: KvStatus;
  clientId: number;
  requestId: number;
  value: Buffer;
}

export interface KvServerAddress {
  host: string;
  port: number;
}

export interface KvClientOptions {
  /** Servers to try in order; the one that last answered is tried first. */
  servers: KvServerAddress[];
  /** Random by default: a new client must not reuse an old one's id. */
  clientId?: number;
  /** First wait for a reply; doubled after each unanswered try. */
  timeoutMs?: number;
  /** Upper bound of the doubled wait. */
  maxTimeoutMs?: number;
  /** Tries per server before moving on to the next. */
  attemptsPerServer?: number;
}

export class KvError extends Error {
  constructor(
    message: string,
    readonly status?: KvStatus,
  ) {
    super(message);
    this.name = 'KvError';
  }
}

export class KvTimeoutError extends KvError {
  constructor(message: string) {
    super(message);
    this.name = 'KvTimeoutError';
  }
}

export function encodeRequest(r: KvRequest): Buffer {
  const value = r.value ?? Buffer.alloc(0);
  if (r.key.length < 1 || r.key.length > KV_MAX_KEY) throw new RangeError(`kv: key length ${r.key.length} not in 1..${KV_MAX_KEY}`);
  if (value.length > KV_MAX_VALUE) throw new RangeError(`kv: value length ${value.length} > ${KV_MAX_VALUE}`);
  if (r.op !== KvOp.Put && value.length > 0) throw new RangeError('kv: only PUT carries a value');
  const b = Buffer.alloc(KV_HEADER + r.key.length + value.length);
  b[0] = KV_REQ_MAGIC;
  b[1] = r.op;
  b[2] = r.key.length;
  b.writeUInt32BE(r.clientId >>> 0, 4);
  b.writeUInt32BE(r.requestId >>> 0, 8);
  b.writeUInt16BE(value.length, 12);
  r.key.copy(b, KV_HEADER);
  value.copy(b, KV_HEADER + r.key.length);
  return b;
}

/** Decodes a reply, or returns undefined for anything that is not one. */
export function decodeReply(b: Buffer): KvReply | undefined {
  if (b.length < KV_HEADER || b[0] !== KV_REP_MAGIC) return undefined;
  const vlen = b.readUInt16BE(12);
  if (b.length !== KV_HEADER + vlen) return undefined;
  return {
    op: b[1] as KvOp,
    status: b[2] as KvStatus,
    clientId: b.readUInt32BE(4),
    requestId: b.readUInt32BE(8),
    value: Buffer.from(b.subarray(KV_HEADER)),
  };
}

const toBuffer = (x: string | Buffer): Buffer => (typeof x === 'string' ? Buffer.from(x, 'utf8') : x);

export class KvClient {
  readonly clientId: number;
  private nextRequestId = 1;
  private current = 0; // index of the server to try first
  private readonly socket: Socket;
  private queue: Promise<unknown> = Promise.resolve();
  private waiting: { requestId: number; resolve: (r: KvReply) => void } | undefined;
  private closed = false;
  /** Replies dropped as duplicates or stale (for tests and diagnostics). */
  discarded = 0;

  constructor(private readonly opts: KvClientOptions) {
    if (opts.servers.length === 0) throw new RangeError('kv: no servers');
    // 0 is avoided only for readability in logs; the protocol allows it.
    this.clientId = opts.clientId ?? randomInt(1, 2 ** 32 - 1);
    this.socket = createSocket('udp4');
    this.socket.on('message', (msg) => this.onMessage(msg));
    this.socket.on('error', () => {}); // ICMP unreachable etc.: a retry handles it
  }

  /** The server that answered last (where the next request goes first). */
  get server(): KvServerAddress {
    return this.opts.servers[this.current]!;
  }

  async get(key: string | Buffer): Promise<Buffer | undefined> {
    const r = await this.request(KvOp.Get, toBuffer(key));
    if (r.status === KvStatus.NotFound) return undefined;
    return this.ok(r).value;
  }

  async put(key: string | Buffer, value: string | Buffer): Promise<void> {
    this.ok(await this.request(KvOp.Put, toBuffer(key), toBuffer(value)));
  }

  /** True if the key existed. */
  async del(key: string | Buffer): Promise<boolean> {
    const r = await this.request(KvOp.Del, toBuffer(key));
    if (r.status === KvStatus.NotFound) return false;
    this.ok(r);
    return true;
  }

  /** Sends one request (queued behind any in flight) and returns its reply. */
  request(op: KvOp, key: Buffer, value?: Buffer): Promise<KvReply> {
    // Validate now, so a bad request fails without using a request id.
    encodeRequest({ op, clientId: this.clientId, requestId: 1, key, value });
    const run = this.queue.then(() => this.exchange(op, key, value));
    this.queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }

  private ok(r: KvReply): KvReply {
    if (r.status !== KvStatus.Ok) throw new KvError(`kv: ${KvOp[r.op]} failed: ${KvStatus[r.status] ?? r.status}`, r.status);
    return r;
  }

  private onMessage(msg: Buffer): void {
    const r = decodeReply(msg);
    const w = this.waiting;
    if (!r || !w || r.clientId !== this.clientId || r.requestId !== w.requestId) {
      this.discarded++;
      return;
    }
    this.waiting = undefined;
    w.resolve(r);
  }

  private async exchange(op: KvOp, key: Buffer, value?: Buffer): Promise<KvReply> {
    if (this.closed) throw new KvError('kv: client closed');
    const requestId = this.nextRequestId++;
    const packet = encodeRequest({ op, clientId: this.clientId, requestId, key, value });
    const first = this.opts.timeoutMs ?? 200;
    const max = this.opts.maxTimeoutMs ?? 2000;
    const perServer = this.opts.attemptsPerServer ?? 5;
    const n = this.opts.servers.length;
    const answered = new Promise<KvReply>((resolve) => {
      this.waiting = { requestId, resolve };
    });
    try {
      for (let s = 0; s < n; s++) {
        const index = (this.current + s) % n;
        const { host, port } = this.opts.servers[index]!;
        let wait = first;
        for (let attempt = 0; attempt < perServer; attempt++) {
          if (this.closed) throw new KvError('kv: client closed');
          this.socket.send(packet, port, host);
          let timer: NodeJS.Timeout | undefined;
          const timedOut = new Promise<undefined>((resolve) => {
            timer = setTimeout(() => resolve(undefined), wait);
          });
          const reply = await Promise.race([answered, timedOut]);
          clearTimeout(timer);
          if (reply) {
            this.current = index;
            return reply;
          }
          wait = Math.min(wait * 2, max);
        }
      }
      throw new KvTimeoutError(`kv: no reply to request ${requestId} from ${n} server(s)`);
    } finally {
      if (this.waiting?.requestId === requestId) this.waiting = undefined;
    }
  }
}
