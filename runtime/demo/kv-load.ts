// The kv load of `ftvm demo --guest kv` (guests/kv/PROTOCOL.md): clients PUT distinct keys and
// GET keys already acknowledged, each acknowledged PUT recorded; the checker then reads every one
// back, and reads the write-ahead log off the disk to see that no request was applied twice.
import { readFileSync } from 'node:fs';
import { KvClient, KvOp, KvStatus, KvTimeoutError } from '../clients/kv-client.js';
import { prng, zeroedDisk, type GuestScenario, type Load } from './dns-load.js';

/** The disk the kv guest expects: 4 MiB, zeroed (an empty log). */
export const KV_DISK_BYTES = 4 << 20;
/** The guest holds 256 keys; leave room for a rerun's checks. */
const KEY_BUDGET = 240;

export interface AckedPut {
  key: string;
  value: string;
  clientId: number;
  requestId: number;
  atMs: number;
}

export interface KvLoadOptions {
  port: number;
  seed: number;
  clients?: number;
  /** Client datagrams the forward received, to count retries. */
  datagramsIn?: () => number;
}

export class KvLoad implements Load {
  readonly acked = new Map<string, AckedPut>();
  readonly answerTimes: number[] = [];
  answered = 0;
  /** PUTs that got no reply at all (not acknowledged: the checker does not require them). */
  unacknowledged = 0;
  /** GETs whose value differed from the acknowledged PUT. */
  readonly wrong: string[] = [];
  /** Requests answered with a status other than OK (FULL, IO_ERROR, ...). */
  readonly failed: string[] = [];
  gets = 0;
  puts = 0;
  discarded = 0;
  private requests = 0;
  private datagramsAtStop: number | undefined;
  private stopping = false;
  private workers: Promise<void>[] = [];
  private readonly clients: KvClient[] = [];
  private keys = 0;
  private readonly random: () => number;

  constructor(private readonly opts: KvLoadOptions) {
    this.random = prng(opts.seed ^ 0x6b76);
  }

  /** Datagrams sent beyond one per request: the clients' retries. */
  get retries(): number {
    const d = this.datagramsAtStop ?? this.opts.datagramsIn?.() ?? this.requests;
    return Math.max(0, d - this.requests);
  }

  start(): void {
    for (let c = 0; c < (this.opts.clients ?? 3); c++) {
      const client = new KvClient({ servers: [{ host: '127.0.0.1', port: this.opts.port }], timeoutMs: 100, maxTimeoutMs: 400, attemptsPerServer: 40 });
      this.clients.push(client);
      this.workers.push(this.worker(client, c));
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.workers);
    this.datagramsAtStop = this.opts.datagramsIn?.();
    for (const c of this.clients) {
      this.discarded += c.discarded;
      c.close();
    }
  }

  private async worker(client: KvClient, c: number): Promise<void> {
    let i = 0;
    while (!this.stopping) {
      const ackedKeys = [...this.acked.keys()];
      const put = this.keys < KEY_BUDGET && (ackedKeys.length === 0 || this.random() < 0.5);
      try {
        this.requests++;
        if (put) {
          this.keys++;
          const key = `s${this.opts.seed}-c${c}-${i++}`;
          const value = `v${Math.floor(this.random() * 1e9).toString(36)}-${key}`;
          this.puts++;
          const r = await client.request(KvOp.Put, Buffer.from(key), Buffer.from(value));
          if (r.status !== KvStatus.Ok) this.failed.push(`PUT ${key}: ${KvStatus[r.status] ?? r.status}`);
          else this.acked.set(key, { key, value, clientId: r.clientId, requestId: r.requestId, atMs: performance.now() });
        } else {
          const key = ackedKeys[Math.floor(this.random() * ackedKeys.length)]!;
          this.gets++;
          const r = await client.request(KvOp.Get, Buffer.from(key));
          const want = this.acked.get(key)!.value;
          if (r.status !== KvStatus.Ok) this.wrong.push(`GET ${key}: ${KvStatus[r.status] ?? r.status}, acknowledged ${JSON.stringify(want)}`);
          else if (r.value.toString() !== want) this.wrong.push(`GET ${key}: ${JSON.stringify(r.value.toString())}, acknowledged ${JSON.stringify(want)}`);
        }
        this.answered++;
        this.answerTimes.push(performance.now());
      } catch (e) {
        if (!(e instanceof KvTimeoutError)) throw e;
        if (put) this.unacknowledged++;
        else this.failed.push(`GET: ${e.message}`);
      }
    }
  }
}

/** One record of the write-ahead log (PROTOCOL.md: "Write-ahead log on the disk"). */
export interface WalRecord {
  seq: number;
  clientId: number;
  requestId: number;
  op: number;
  status: number;
  key: string;
  value: string;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(b: Uint8Array): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** The log as the guest's replay would read it: records until the first that is not the next. */
export function readWal(disk: Buffer): WalRecord[] {
  const out: WalRecord[] = [];
  for (let s = 0; (s + 1) * 512 <= disk.length; s++) {
    const r = disk.subarray(s * 512, (s + 1) * 512);
    if (r.readUInt32BE(0) !== 0x4b565731 || r.readUInt32BE(4) !== s || r.readUInt32BE(508) !== crc32(r.subarray(0, 508))) break;
    const klen = r[18]!;
    const vlen = r.readUInt16BE(20);
    out.push({
      seq: s,
      clientId: r.readUInt32BE(8),
      requestId: r.readUInt32BE(12),
      op: r[16]!,
      status: r[17]!,
      key: r.subarray(24, 24 + klen).toString(),
      value: r.subarray(24 + klen, 24 + klen + vlen).toString(),
    });
  }
  return out;
}

export interface KvCheck {
  ok: boolean;
  lines: string[];
  errors: string[];
}

/**
 * No acknowledged write lost: every acknowledged PUT reads back with its value (`readBack`, from
 * the live server after the load) and is in the log on the disk. No request applied twice: no
 * (client id, request id) has two log records.
 */
export function checkKv(load: KvLoad, readBack: Map<string, string | undefined>, wal: WalRecord[]): KvCheck {
  const errors: string[] = [];
  let lostAcked = 0;
  for (const a of load.acked.values()) {
    const got = readBack.get(a.key);
    if (got !== a.value) {
      lostAcked++;
      errors.push(`acknowledged PUT ${a.key}=${JSON.stringify(a.value)} reads back as ${got === undefined ? 'missing' : JSON.stringify(got)}`);
    }
  }
  const seen = new Map<string, number>();
  let twice = 0;
  for (const r of wal) {
    const id = `${r.clientId}/${r.requestId}`;
    const n = (seen.get(id) ?? 0) + 1;
    seen.set(id, n);
    if (n === 2) {
      twice++;
      errors.push(`request ${id} (${r.key}) applied twice: log records ${wal.filter((w) => `${w.clientId}/${w.requestId}` === id).map((w) => w.seq).join(', ')}`);
    }
  }
  let notLogged = 0;
  for (const a of load.acked.values()) {
    if (!wal.some((r) => r.clientId === a.clientId && r.requestId === a.requestId && r.key === a.key && r.value === a.value)) {
      notLogged++;
      errors.push(`acknowledged PUT ${a.key} (request ${a.clientId}/${a.requestId}) is not in the log on the disk`);
    }
  }
  errors.push(...load.wrong.map((w) => `during the load: ${w}`), ...load.failed.map((f) => `failed: ${f}`));
  const ok = errors.length === 0 && load.acked.size > 0;
  return {
    ok,
    lines: [
      `requests: ${load.puts} PUT, ${load.gets} GET; acknowledged PUTs: ${load.acked.size}, unacknowledged: ${load.unacknowledged}`,
      `acknowledged writes lost: ${lostAcked + notLogged}; GETs with a wrong value: ${load.wrong.length}`,
      `log records on the disk: ${wal.length}; requests applied twice: ${twice}; duplicate replies discarded by the clients: ${load.discarded}`,
    ],
    errors,
  };
}

/** Read back after the load: kept per scenario run, between verify and check. */
const readBacks = new WeakMap<KvLoad, Map<string, string | undefined>>();

export const kvScenario: GuestScenario<KvLoad> = {
  guest: 'kv',
  guestPort: 7000,
  makeDisk: (path) => zeroedDisk(path, KV_DISK_BYTES),
  ready: /kv: replayed \d+ log records, \d+ keys\n/,
  load: (port, seed, ctx) => new KvLoad({ port, seed, datagramsIn: ctx.datagramsIn }),
  killAfter: (random) => 10 + Math.floor(random() * 80),
  async verify(load, { port }) {
    const client = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 100, maxTimeoutMs: 400, attemptsPerServer: 40 });
    const got = new Map<string, string | undefined>();
    try {
      for (const key of load.acked.keys()) got.set(key, (await client.get(key))?.toString());
    } finally {
      client.close();
    }
    readBacks.set(load, got);
  },
  check(load, { diskPath }) {
    return checkKv(load, readBacks.get(load) ?? new Map(), readWal(readFileSync(diskPath)));
  },
};
