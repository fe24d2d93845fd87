import { describe, expect, it } from 'vitest';
import tls from 'node:tls';
import { filter, firstValueFrom, lastValueFrom, take, toArray, type Observable } from 'rxjs';
import { Encoder, LogFrameError } from '../runtime/log/codec.js';
import type { LogEntry } from '../runtime/log/entry.js';
import type { ChannelEvent } from '../runtime/channel/channel.js';
import net from 'node:net';
import { RefusedError } from '../runtime/channel/channel.js';
import { connectBackup, listenPrimary, PSK_IDENTITY, TLS_CIPHERS, type TcpBackupOptions, type TcpListenOptions } from '../runtime/channel/tcp.js';
import { ControlDecoder, decodeHello, decodeRequest, encodeAck, encodeBye, encodeHello, encodeRequest, parseKey, type PairIdentity } from '../runtime/channel/tcp-frames.js';

const KEY = Buffer.alloc(32, 0x5a);
const OTHER_KEY = Buffer.alloc(32, 0xa5);
const HOST = '127.0.0.1';
const IDENTITY: PairIdentity = { instance: 'ptest-0123', imageDigest: '0123456789abcdef0123456789abcdef', memoryMiB: 16 };
const MEMBER = { instance: '', imageDigest: IDENTITY.imageDigest, memoryMiB: 16 };
const listen = (o: Omit<TcpListenOptions, 'identity'> & { identity?: PairIdentity }) => listenPrimary({ identity: IDENTITY, ...o });
const connect = (o: Omit<TcpBackupOptions, 'member'> & { member?: TcpBackupOptions['member'] }) => connectBackup({ member: MEMBER, ...o });
const ADMIT = encodeHello({ ...IDENTITY, mode: 'boot', generation: 1, reason: '' });
const rawTls = (port: number, key = KEY): tls.TLSSocket => tls.connect({ host: HOST, port, ciphers: TLS_CIPHERS, maxVersion: 'TLSv1.2', checkServerIdentity: () => undefined, pskCallback: () => ({ psk: key, identity: PSK_IDENTITY }) });
/** A raw backup that asks to boot with the pair, as connectBackup would. */
const rawBackup = (port: number): tls.TLSSocket => {
  const s = rawTls(port);
  s.once('secureConnect', () => s.write(encodeRequest({ mode: 'boot', ...MEMBER })));
  return s;
};

const stream = (n: number, from = 0): LogEntry[] =>
  Array.from({ length: n }, (_, i): LogEntry =>
    i % 3 === 0
      ? { seq: from + i, icount: (from + i) * 150_000, type: 'timer' }
      : i % 3 === 1
        ? { seq: from + i, icount: (from + i) * 150_000 + 7, type: 'value', kind: 'mtime', value: (from + i) * 10_000 + 3 }
        : { seq: from + i, icount: (from + i) * 150_000 + 9, type: 'net-rx', frame: new Uint8Array(i % 50).fill(i & 0xff) },
  );

const lastEvent = (events$: Observable<ChannelEvent>): Promise<ChannelEvent> => lastValueFrom(events$);

/** A hand-made "primary" that knows the key but writes whatever bytes a test wants. */
async function rawPrimary(onSocket: (s: tls.TLSSocket) => void): Promise<{ port: number; close: () => void }> {
  const server = tls.createServer({
    ciphers: TLS_CIPHERS, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2',
    pskCallback: () => KEY,
  }, onSocket);
  await new Promise<void>((r) => server.listen(0, HOST, r));
  return { port: (server.address() as { port: number }).port, close: () => server.close() };
}

const marker = (seq: number): LogEntry => ({ seq, icount: seq * 150_000 + 11, type: 'output', kind: 'console', count: seq });
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A TCP relay between a backup and its primary that reads the TLS record headers going by, as
 * a packet capture would: each write of the channel is one application-data record. `flip()`
 * corrupts one byte in the middle of the next such record towards the backup.
 */
async function recordRelay(target: number) {
  const records = { toBackup: 0, toPrimary: 0 };
  let flipNext = false;
  const sockets: net.Socket[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(target, HOST);
    sockets.push(client, upstream);
    const reader = (dir: keyof typeof records, out: net.Socket) => {
      let pending = Buffer.alloc(0);
      return (d: Buffer): void => {
        pending = Buffer.concat([pending, d]);
        let at = 0;
        while (pending.length - at >= 5 && pending.length - at >= 5 + pending.readUInt16BE(at + 3)) {
          const len = pending.readUInt16BE(at + 3);
          if (pending[at] === 23) {
            records[dir]++;
            if (dir === 'toBackup' && flipNext) {
              flipNext = false;
              pending[at + 5 + (len >> 1)]! ^= 0x20;
            }
          }
          at += 5 + len;
        }
        // Whole records only, so a flip lands before its bytes leave.
        if (at > 0) out.write(pending.subarray(0, at));
        pending = pending.subarray(at);
      };
    };
    upstream.on('data', reader('toBackup', client));
    client.on('data', reader('toPrimary', upstream));
    for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((r) => server.listen(0, HOST, r));
  return {
    port: (server.address() as net.AddressInfo).port,
    records,
    flip: (): void => { flipNext = true; },
    close: (): void => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}

describe('TCP logging channel over TLS-PSK', () => {
  it('delivers entries in order, carries acks back, and closes in order', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY });
    const b = connect({ host: HOST, port: l.port, key: KEY });
    const sent = [...stream(500), { seq: 500, icount: 500 * 150_000, type: 'end', code: 0 } as LogEntry];
    // Entries sent before the backup attached wait for it.
    for (const e of sent.slice(0, 100)) l.end.send(e);
    await l.end.attached;
    await b.opened;
    const got = lastValueFrom(b.entries$.pipe(toArray()));
    b.entries$.subscribe((e) => b.ack(e.seq));
    for (const e of sent.slice(100)) l.end.send(e);
    await firstValueFrom(l.end.acked$.pipe(filter((s) => s === 500)));
    expect(l.end.lag).toEqual({ entries: 0, bytes: 0, ms: 0 });
    const enc = new Encoder();
    expect(l.end.stats()).toEqual({ bytesSent: sent.reduce((n, e) => n + enc.encode(e).length, 0), entriesSent: sent.length });
    const pEnd = lastEvent(l.end.events$);
    const bEnd = lastEvent(b.events$);
    l.end.close();
    expect(await got).toEqual(sent);
    expect(await bEnd).toEqual({ type: 'channel.closed', by: 'peer' });
    expect(await pEnd).toEqual({ type: 'channel.closed', by: 'local' });
    await l.close();
  });

  it('writes the frames of one tick as one TLS record, and holds inputs of several ticks for the next marker', async () => {
    // A hold far beyond the test's timeout: whatever arrives was not waiting for it to end.
    const l = await listen({ host: HOST, port: 0, key: KEY, holdMs: 60_000 });
    const relay = await recordRelay(l.port);
    const b = connect({ host: HOST, port: relay.port, key: KEY, holdMs: 60_000 });
    await l.end.attached;
    await b.opened;
    // The join request one way, the hello the other.
    expect(relay.records).toEqual({ toBackup: 1, toPrimary: 1 });
    const got: LogEntry[] = [];
    b.entries$.subscribe((e) => {
      got.push(e);
      b.ack(e.seq);
    });
    const first = [...stream(300), marker(300)];
    for (const e of first) l.end.send(e);
    await firstValueFrom(l.end.acked$.pipe(filter((a) => a === 300)));
    // 301 frames in one record; the acks of the 301 entries in one.
    expect(relay.records).toEqual({ toBackup: 2, toPrimary: 2 });
    // Inputs over three ticks wait; the marker of a fourth takes them along, and its ack leaves at once.
    const inputs = stream(3, 301);
    for (const e of inputs) {
      l.end.send(e);
      await tick();
    }
    await sleep(30);
    expect(relay.records).toEqual({ toBackup: 2, toPrimary: 2 });
    l.end.send(marker(304));
    await firstValueFrom(l.end.acked$.pipe(filter((a) => a === 304)));
    expect(relay.records).toEqual({ toBackup: 3, toPrimary: 3 });
    expect(got).toEqual([...first, ...inputs, marker(304)]);
    b.close();
    expect(await lastEvent(l.end.events$)).toEqual({ type: 'channel.closed', by: 'peer' });
    relay.close();
    await l.close();
  });

  it('fails both ends, delivering none of it, on a corrupt byte in a record of held entries and a marker', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY, holdMs: 60_000 });
    const relay = await recordRelay(l.port);
    const b = connect({ host: HOST, port: relay.port, key: KEY });
    await l.end.attached;
    await b.opened;
    const got = lastValueFrom(b.entries$.pipe(toArray()));
    const bEvents: ChannelEvent[] = [];
    b.events$.subscribe((e) => bEvents.push(e));
    const pEnd = lastEvent(l.end.events$);
    for (const e of stream(40)) {
      l.end.send(e);
      await tick();
    }
    relay.flip();
    l.end.send(marker(40));
    // TLS authenticates the record whole: not one of its 41 frames is delivered.
    expect(await got).toEqual([]);
    expect(bEvents.map((e) => e.type)).toEqual(['channel.open', 'channel.failed']);
    expect((bEvents[1] as Extract<ChannelEvent, { type: 'channel.failed' }>).error.message).toMatch(/channel to primary .*(bad record mac|decrypt)/i);
    expect((await pEnd).type).toBe('channel.failed');
    expect(l.end.ackedSeq).toBe(-1);
    relay.close();
    await l.close();
  });

  it('reports back-pressure above the high-water mark and releases it once acked', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY, highWaterEntries: 50 });
    const b = connect({ host: HOST, port: l.port, key: KEY });
    await l.end.attached;
    const pressure: boolean[] = [];
    l.end.pressure$.subscribe((p) => pressure.push(p));
    const all = lastValueFrom(b.entries$.pipe(take(100), toArray()));
    for (const e of stream(100)) l.end.send(e);
    expect(pressure).toEqual([false, true]);
    await all;
    b.ack(99);
    await firstValueFrom(l.end.acked$.pipe(filter((s) => s === 99)));
    expect(pressure).toEqual([false, true, false]);
    b.close();
    expect(await lastEvent(l.end.events$)).toEqual({ type: 'channel.closed', by: 'peer' });
    await l.close();
  });

  it('refuses a backup with another key, and keeps waiting for the right one', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY });
    const refused = firstValueFrom(l.refused$);
    const b = connect({ host: HOST, port: l.port, key: OTHER_KEY });
    const q = await lastEvent(b.events$);
    expect(q.type).toBe('channel.failed');
    expect((q as { error: Error }).error).toBeInstanceOf(RefusedError);
    expect((q as { error: Error }).error.message).toMatch(/refused the TLS-PSK handshake \(wrong key\?\)/);
    expect(await refused).toMatch(/failed the TLS-PSK handshake \(a wrong key/);
    // The waiting end is untouched: the right backup still attaches.
    const good = connect({ host: HOST, port: l.port, key: KEY });
    await l.end.attached;
    expect((await good.admission).instance).toBe(IDENTITY.instance);
    good.close();
    await l.close();
  });

  it('refuses stray connections one at a time while waiting for its backup', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY, requestTimeoutMs: 300 });
    const why: string[] = [];
    l.refused$.subscribe((w) => why.push(w));
    const until = async (n: number): Promise<void> => { while (why.length < n) await new Promise((r) => setTimeout(r, 10)); };
    // Random bytes and an HTTP probe: not TLS at all.
    const raw = net.connect(l.port, HOST, () => raw.write(Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8, 9])));
    raw.on('error', () => undefined);
    await until(1);
    const http = net.connect(l.port, HOST, () => http.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    http.on('error', () => undefined);
    await until(2);
    // The key, but garbage instead of a join request; and the key with nothing said at all.
    const garbage = rawTls(l.port);
    garbage.on('error', () => undefined);
    garbage.once('secureConnect', () => garbage.write(Buffer.from('hello there')));
    await until(3);
    const mute = rawTls(l.port);
    mute.on('error', () => undefined);
    await until(4);
    expect(why[2]).toMatch(/no valid join request/);
    expect(why[3]).toMatch(/no join request within 300 ms/);
    const b = connect({ host: HOST, port: l.port, key: KEY });
    await l.end.attached;
    await b.opened;
    for (const s of [raw, http, garbage, mute]) s.destroy();
    b.close();
    await l.close();
  });

  it('refuses a backup of another image, memory size or pair instance, or one asking to join', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY });
    const cases: Array<[TcpBackupOptions['member'], boolean, RegExp]> = [
      [{ ...MEMBER, imageDigest: 'f'.repeat(32) }, false, /another guest image/],
      [{ ...MEMBER, memoryMiB: 32 }, false, /another memory size: this primary runs 16 MiB, the backup 32 MiB/],
      [{ ...MEMBER, instance: 'pother-1' }, false, /another pair instance/],
      [MEMBER, true, /booting a new pair .* not taking a joining one/],
    ];
    for (const [member, join, re] of cases) {
      const b = connect({ host: HOST, port: l.port, key: KEY, member, join });
      await expect(b.admission).rejects.toBeInstanceOf(RefusedError);
      await expect(b.opened).rejects.toThrow(re);
    }
    const b = connect({ host: HOST, port: l.port, key: KEY, member: { ...MEMBER, instance: IDENTITY.instance } });
    expect(await b.admission).toEqual({ mode: 'boot', instance: IDENTITY.instance, generation: 1, memoryMiB: 16 });
    b.close();
    await l.close();
  });

  it('refuses a second backup while one is attached', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY });
    const b1 = connect({ host: HOST, port: l.port, key: KEY });
    await b1.opened;
    const b2 = connect({ host: HOST, port: l.port, key: KEY, connectTimeoutMs: 0 });
    const ev = await lastEvent(b2.events$);
    // The second backup is told it is not a member; the first one still carries entries.
    expect(ev.type).toBe('channel.failed');
    expect((ev as { error: Error }).error).toBeInstanceOf(RefusedError);
    expect((ev as { error: Error }).error.message).toMatch(/busy/);
    const one = firstValueFrom(b1.entries$);
    l.end.send({ seq: 0, icount: 1, type: 'timer' });
    expect(await one).toEqual({ seq: 0, icount: 1, type: 'timer' });
    await l.close();
    b1.close();
  });

  it('fails the backup on a corrupt frame, after delivering the good ones', async () => {
    const enc = new Encoder();
    const frames = stream(3).map((e) => enc.encode(e));
    const bad = Uint8Array.from(enc.encode({ seq: 3, icount: 1e6, type: 'timer' }));
    bad[bad.length - 2]! ^= 0x10;
    const srv = await rawPrimary((s) => s.write(Buffer.concat([ADMIT, ...frames, bad])));
    const b = connect({ host: HOST, port: srv.port, key: KEY });
    const got = lastValueFrom(b.entries$.pipe(toArray()));
    const ev = await lastEvent(b.events$);
    expect(ev.type).toBe('channel.failed');
    const err = (ev as { error: Error }).error;
    expect(err).toBeInstanceOf(LogFrameError);
    expect((err as LogFrameError).code).toBe('crc');
    expect(await got).toEqual(stream(3));
    srv.close();
  });

  it('refuses a replayed frame (seq not next)', async () => {
    const enc = new Encoder();
    const f0 = enc.encode({ seq: 0, icount: 5, type: 'timer' }, true);
    const srv = await rawPrimary((s) => s.write(Buffer.concat([ADMIT, f0, f0])));
    const b = connect({ host: HOST, port: srv.port, key: KEY });
    const got = lastValueFrom(b.entries$.pipe(toArray()));
    const ev = await lastEvent(b.events$);
    expect(ev.type).toBe('channel.failed');
    expect((ev as unknown as { error: LogFrameError }).error.code).toBe('seq-gap');
    expect(await got).toEqual([{ seq: 0, icount: 5, type: 'timer' }]);
    srv.close();
  });

  it('fails the primary on a corrupt or replayed ack', async () => {
    for (const bytes of [Buffer.from([0xf8, 1, 1, 5, 0, 0, 0, 0]), Buffer.concat([encodeAck(3), encodeAck(3)])]) {
      const l = await listen({ host: HOST, port: 0, key: KEY });
      const s = rawBackup(l.port);
      await l.end.attached;
      for (const e of stream(10)) l.end.send(e);
      s.write(bytes);
      const ev = await lastEvent(l.end.events$);
      expect(ev.type).toBe('channel.failed');
      expect((ev as { error: Error }).error).toBeInstanceOf(LogFrameError);
      s.destroy();
      await l.close();
    }
  });

  it('fails the backup when the primary vanishes mid-stream, and the primary when the backup does', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY });
    const b = connect({ host: HOST, port: l.port, key: KEY });
    await b.opened;
    b.entries$.subscribe();
    l.end.send({ seq: 0, icount: 1, type: 'timer' });
    const bEv = lastEvent(b.events$);
    const pEv = lastEvent(l.end.events$);
    await l.close();
    // The primary stopped without logging `end`: for the backup that is a broken stream
    // (it must suspect and claim), for the primary an orderly close of its own.
    const ev1 = await bEv;
    expect(ev1.type).toBe('channel.failed');
    expect((ev1 as { error: Error }).error.message).toMatch(/before the end of the log/);
    expect(await pEv).toEqual({ type: 'channel.closed', by: 'local' });

    const l2 = await listen({ host: HOST, port: 0, key: KEY });
    // A raw backup that disappears as a kill -9 would: no goodbye frame, just a closed socket.
    const s = rawBackup(l2.port);
    await l2.end.attached;
    const p2 = lastEvent(l2.end.events$);
    s.destroy();
    const ev = await p2;
    expect(ev.type).toBe('channel.failed');
    expect((ev as { error: Error }).error.message).toMatch(/backup .* (closed|without a goodbye|ECONNRESET)/);
    await l2.close();
  });

  it('gives a backup whose primary is not there a clear error after the connect timeout', async () => {
    const l = await listen({ host: HOST, port: 0, key: KEY });
    const port = l.port;
    await l.close();
    const t0 = Date.now();
    const b = connect({ host: HOST, port, key: KEY, connectTimeoutMs: 300, retryMs: 50 });
    const ev = await lastEvent(b.events$);
    expect(ev.type).toBe('channel.failed');
    expect((ev as { error: Error }).error.message).toMatch(/cannot connect to primary .*ECONNREFUSED/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });
});

describe('control frames and keys', () => {
  it('round-trips hellos and join requests, and refuses malformed ones', () => {
    const hello = { ...IDENTITY, mode: 'refused' as const, generation: 3, reason: 'busy' };
    const h = encodeHello(hello);
    expect(decodeHello(h.subarray(0, h.length - 1))).toBeUndefined();
    expect(decodeHello(h)).toEqual({ hello, used: h.length });
    const req = { mode: 'join' as const, ...MEMBER };
    const r = encodeRequest(req);
    expect(decodeRequest(r)).toEqual({ request: req, used: r.length });
    const flipped = Uint8Array.from(r);
    flipped[6]! ^= 1;
    expect(() => decodeRequest(flipped)).toThrow(LogFrameError);
    expect(() => decodeRequest(h)).toThrow(/expected kind 4/);
    expect(() => decodeRequest(Buffer.from('GET / HTTP/1.1'))).toThrow(LogFrameError);
  });

  it('round-trips acks and byes in any chunking', () => {
    const bytes = Buffer.concat([encodeAck(0), encodeAck(127), encodeAck(128), encodeBye(), encodeAck(2 ** 40)]);
    for (let cut = 0; cut <= bytes.length; cut++) {
      const d = new ControlDecoder();
      const out = [...d.push(bytes.subarray(0, cut)), ...d.push(bytes.subarray(cut))];
      expect(out).toEqual([{ type: 'ack', seq: 0 }, { type: 'ack', seq: 127 }, { type: 'ack', seq: 128 }, { type: 'bye' }, { type: 'ack', seq: 2 ** 40 }]);
    }
  });

  it('reads hex and raw keys and refuses short ones', () => {
    expect(parseKey(Buffer.from('00'.repeat(16) + 'ff'.repeat(16) + '\n'))).toEqual(Buffer.from('00'.repeat(16) + 'ff'.repeat(16), 'hex'));
    const raw = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7));
    expect(parseKey(raw)).toEqual(raw);
    expect(() => parseKey(Buffer.from('abcd'))).toThrow(/at least 16/);
  });
});
