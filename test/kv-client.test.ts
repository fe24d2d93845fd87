// The kv client against fake UDP servers in this process: the wire format,
// retries with growing waits, dropping of duplicate and stale replies, and
// failover to the next server. The real guest is exercised in
// guests-virtio-qemu.test.ts.
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import {
  decodeReply,
  encodeRequest,
  KV_REP_MAGIC,
  KvClient,
  KvOp,
  KvStatus,
  KvTimeoutError,
} from '../runtime/clients/kv-client.js';

type Handler = (req: Buffer, reply: (b: Buffer) => void) => void;

const sockets: Socket[] = [];
const clients: KvClient[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const s of sockets.splice(0)) s.close();
});

async function fakeServer(handler: Handler): Promise<number> {
  const s = createSocket('udp4');
  sockets.push(s);
  s.on('message', (msg, rinfo) => handler(msg, (b) => s.send(b, rinfo.port, rinfo.address)));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  return s.address().port;
}

function replyTo(req: Buffer, status: KvStatus, value: Buffer = Buffer.alloc(0), requestId?: number): Buffer {
  const b = Buffer.alloc(16 + value.length);
  b[0] = KV_REP_MAGIC;
  b[1] = req[1]!;
  b[2] = status;
  b.writeUInt32BE(req.readUInt32BE(4), 4);
  b.writeUInt32BE(requestId ?? req.readUInt32BE(8), 8);
  b.writeUInt16BE(value.length, 12);
  value.copy(b, 16);
  return b;
}

function client(ports: number[], extra: Partial<ConstructorParameters<typeof KvClient>[0]> = {}): KvClient {
  const c = new KvClient({ servers: ports.map((port) => ({ host: '127.0.0.1', port })), timeoutMs: 30, ...extra });
  clients.push(c);
  return c;
}

describe('kv wire format', () => {
  it('encodes requests as PROTOCOL.md says', () => {
    const b = encodeRequest({ op: KvOp.Put, clientId: 0xdeadbeef, requestId: 7, key: Buffer.from('ab'), value: Buffer.from('xyz') });
    expect(b.toString('hex')).toBe('4b02020' + '0' + 'deadbeef' + '00000007' + '0003' + '0000' + '6162' + '78797a');
  });

  it('rejects keys and values out of range', () => {
    const base = { op: KvOp.Put, clientId: 1, requestId: 1 };
    expect(() => encodeRequest({ ...base, key: Buffer.alloc(0) })).toThrow(RangeError);
    expect(() => encodeRequest({ ...base, key: Buffer.alloc(65) })).toThrow(RangeError);
    expect(() => encodeRequest({ ...base, key: Buffer.from('k'), value: Buffer.alloc(257) })).toThrow(RangeError);
    expect(() => encodeRequest({ ...base, op: KvOp.Get, key: Buffer.from('k'), value: Buffer.from('v') })).toThrow(RangeError);
  });

  it('decodes replies and refuses anything else', () => {
    const req = encodeRequest({ op: KvOp.Get, clientId: 5, requestId: 9, key: Buffer.from('k') });
    const r = decodeReply(replyTo(req, KvStatus.Ok, Buffer.from('val')));
    expect(r).toEqual({ op: KvOp.Get, status: KvStatus.Ok, clientId: 5, requestId: 9, value: Buffer.from('val') });
    expect(decodeReply(Buffer.alloc(15))).toBeUndefined();
    expect(decodeReply(req)).toBeUndefined(); // a request is not a reply
    expect(decodeReply(replyTo(req, KvStatus.Ok, Buffer.from('val')).subarray(0, 18))).toBeUndefined();
  });
});

describe('KvClient', () => {
  it('numbers requests 1, 2, 3 with its client id, and maps statuses', async () => {
    const store = new Map<string, Buffer>();
    const seen: Array<[number, number]> = [];
    const port = await fakeServer((req, send) => {
      seen.push([req.readUInt32BE(4), req.readUInt32BE(8)]);
      const klen = req[2]!;
      const key = req.subarray(16, 16 + klen).toString();
      if (req[1] === KvOp.Put) {
        store.set(key, Buffer.from(req.subarray(16 + klen)));
        send(replyTo(req, KvStatus.Ok));
      } else if (req[1] === KvOp.Get) {
        const v = store.get(key);
        send(v ? replyTo(req, KvStatus.Ok, v) : replyTo(req, KvStatus.NotFound));
      } else {
        send(replyTo(req, store.delete(key) ? KvStatus.Ok : KvStatus.NotFound));
      }
    });
    const c = client([port], { clientId: 42 });
    await c.put('a', 'one');
    expect((await c.get('a'))?.toString()).toBe('one');
    expect(await c.get('b')).toBeUndefined();
    expect(await c.del('a')).toBe(true);
    expect(await c.del('a')).toBe(false);
    expect(seen).toEqual([[42, 1], [42, 2], [42, 3], [42, 4], [42, 5]]);
  });

  it('throws KvError with the status on a failed write', async () => {
    const port = await fakeServer((req, send) => send(replyTo(req, KvStatus.Full)));
    await expect(client([port]).put('k', 'v')).rejects.toMatchObject({ name: 'KvError', status: KvStatus.Full });
  });

  it('retries the same request id with doubling waits until answered', async () => {
    const arrivals: Array<{ at: number; rid: number }> = [];
    const port = await fakeServer((req, send) => {
      arrivals.push({ at: performance.now(), rid: req.readUInt32BE(8) });
      if (arrivals.length === 4) send(replyTo(req, KvStatus.Ok));
    });
    const t0 = performance.now();
    await client([port], { timeoutMs: 40, maxTimeoutMs: 1000 }).put('k', 'v');
    expect(arrivals.map((a) => a.rid)).toEqual([1, 1, 1, 1]);
    // Waits are 40, 80, 160 ms, so the retries leave no earlier than 40, 120 and 280 ms after
    // the call (timers fire no earlier than asked). Measured from the call, not between
    // arrivals: on a loaded host the first datagram may be read late, which shortens the
    // first gap without any retry being early. Equal waits would send the third by ~120 ms.
    const since = arrivals.map((a) => a.at - t0);
    expect(since[1]).toBeGreaterThanOrEqual(38);
    expect(since[2]).toBeGreaterThanOrEqual(118);
    expect(since[3]).toBeGreaterThanOrEqual(278);
  });

  it('drops duplicate, stale and foreign replies', async () => {
    const port = await fakeServer((req, send) => {
      const rid = req.readUInt32BE(8);
      // Before the real answer: an old request's reply, another client's
      // reply, and garbage; after it, a duplicate of the real answer.
      if (rid > 1) send(replyTo(req, KvStatus.Ok, Buffer.from('old'), rid - 1));
      const foreign = replyTo(req, KvStatus.Ok, Buffer.from('foreign'));
      foreign.writeUInt32BE(req.readUInt32BE(4) + 1, 4);
      send(foreign);
      send(Buffer.from('junk'));
      send(replyTo(req, KvStatus.Ok, Buffer.from(`v${rid}`)));
      send(replyTo(req, KvStatus.Ok, Buffer.from(`v${rid}`)));
    });
    const c = client([port]);
    expect((await c.get('k'))?.toString()).toBe('v1');
    expect((await c.get('k'))?.toString()).toBe('v2');
    await new Promise((r) => setTimeout(r, 50));
    // Per request: foreign + junk + duplicate, and the old one on the second.
    expect(c.discarded).toBe(7);
  });

  it('runs concurrent calls one at a time, in call order', async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    const port = await fakeServer((req, send) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        send(replyTo(req, KvStatus.Ok, Buffer.from(String(req.readUInt32BE(8)))));
      }, 10);
    });
    const c = client([port], { timeoutMs: 500 });
    const got = await Promise.all([c.get('a'), c.get('b'), c.get('c')]);
    expect(got.map((b) => b?.toString())).toEqual(['1', '2', '3']);
    expect(maxInFlight).toBe(1);
  });

  it('fails over to the next server and stays there', async () => {
    const deadHits: number[] = [];
    const dead = await fakeServer((req) => deadHits.push(req.readUInt32BE(8)));
    const live = await fakeServer((req, send) => send(replyTo(req, KvStatus.Ok)));
    const c = client([dead, live], { timeoutMs: 10, attemptsPerServer: 3 });
    await c.put('k', 'v');
    expect(deadHits).toEqual([1, 1, 1]);
    expect(c.server.port).toBe(live);
    await c.put('k', 'w');
    expect(deadHits).toEqual([1, 1, 1]); // the second request went straight to the live one
  });

  it('gives up with KvTimeoutError, and the next request still works', async () => {
    // Silent for request 1, answers from request 2 on.
    const port = await fakeServer((req, send) => {
      if (req.readUInt32BE(8) >= 2) send(replyTo(req, KvStatus.NotFound));
    });
    const c = client([port], { timeoutMs: 5, attemptsPerServer: 3 });
    await expect(c.get('k')).rejects.toBeInstanceOf(KvTimeoutError);
    expect(await c.get('k')).toBeUndefined();
  });
});
