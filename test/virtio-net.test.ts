// virtio-net on ftvm: the dns guest (zone on the virtio disk, UDP port 53) answers Node's
// resolver through `--net udp:PORT:53`-style forwarding, survives malformed datagrams, and a
// recorded session (net-rx, disk-read, disk-done entries) replays to the same digest.
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Machine } from '../runtime/machine.js';
import { LiveEnv } from '../runtime/env/live.js';
import { RecordingEnv } from '../runtime/env/recording.js';
import { ReplayEnv } from '../runtime/env/replay.js';
import { runMachine, type RunOutcome } from '../runtime/runner.js';
import { FileDisk } from '../runtime/io/disk-file.js';
import { UdpNet } from '../runtime/io/net-udp.js';
import type { Env } from '../runtime/env/env.js';
import type { LogEntry, LogPayload } from '../runtime/log/entry.js';
import type { Output } from '../runtime/types.js';
import { KvClient } from '../runtime/clients/kv-client.js';

const guests = new URL('../guests/', import.meta.url);
const dnsElf = readFileSync(new URL('dns/dns.elf', guests));

let dir: string;
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ftvm-net-')); });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Booted {
  m: Machine;
  net: UdpNet;
  port: number;
  console: () => string;
  outputs: Output[];
  stop(): Promise<RunOutcome>;
}

/** Boot the dns guest live on a copy of its zone disk, forwarding a free host port to 53. */
async function bootDns(env: Env): Promise<Booted> {
  const image = join(dir, `zone-${Math.random().toString(36).slice(2)}.img`);
  copyFileSync(new URL('dns/zone.img', guests), image);
  const disk = await FileDisk.open(image);
  const net = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 53 }]);
  let text = '';
  const outputs: Output[] = [];
  const m: Machine = new Machine({
    env,
    disk: { backend: disk },
    net: { backend: net },
    onOutput: (o) => {
      outputs.push(o);
      if (o.kind === 'console') text += String.fromCharCode(o.byte);
      else m.io!.execute(o);
    },
  });
  m.loadElf(dnsElf);
  const abort = new AbortController();
  const done = runMachine(m, { signal: abort.signal });
  const deadline = Date.now() + 20_000;
  while (!/dns: serving \d+ records\n/.test(text)) {
    if (Date.now() > deadline) throw new Error(`dns did not come up: ${JSON.stringify(text)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
  return {
    m, net, port: net.boundPorts[0]!, console: () => text, outputs,
    async stop() {
      abort.abort();
      const o = await done;
      await m.io!.close();
      return o;
    },
  };
}

function resolverFor(port: number): Resolver {
  const r = new Resolver({ timeout: 1000, tries: 3 });
  r.setServers([`127.0.0.1:${port}`]);
  return r;
}

/** Send raw datagrams; collect replies arriving within `ms`. */
async function exchange(port: number, packets: Uint8Array[], ms = 300): Promise<Buffer[]> {
  const s = createSocket('udp4');
  const replies: Buffer[] = [];
  s.on('message', (m) => replies.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (const p of packets) s.send(p, port, '127.0.0.1');
  await new Promise((r) => setTimeout(r, ms));
  s.close();
  return replies;
}

describe('dns guest on ftvm over virtio-net', () => {
  let g: Booted;
  let resolver: Resolver;
  beforeAll(async () => {
    g = await bootDns(new LiveEnv());
    resolver = resolverFor(g.port);
  });
  afterAll(async () => { await g?.stop(); });

  it('prints what it prints on QEMU', () => {
    expect(g.console()).toBe('dns: serving 13 records\n');
  });

  it('answers A, AAAA, TXT and NXDOMAIN like on QEMU', async () => {
    expect((await resolver.resolve4('www.example.test')).sort()).toEqual(['192.0.2.80', '192.0.2.81']);
    expect(await resolver.resolve6('www.example.test')).toEqual(['2001:db8::80']);
    expect(await resolver.resolveTxt('hello.example.test')).toEqual([['hello from ftvm', 'second string']]);
    await expect(resolver.resolve4('nope.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(resolver.resolve4('v6only.example.test')).rejects.toMatchObject({ code: 'ENODATA' });
  });

  it('keeps each client apart through the NAT table', async () => {
    const names = ['ns1', 'ns2', 'www', 'example'];
    const results = await Promise.all(names.map((n) => resolverFor(g.port).resolve4(n === 'example' ? 'example.test' : `${n}.example.test`)));
    expect(results.map((r) => r.sort())).toEqual([['192.0.2.53'], ['192.0.2.54'], ['192.0.2.80', '192.0.2.81'], ['192.0.2.1']]);
  });

  it('answered the guest\'s ARP for the gateway itself', () => {
    expect(g.net.stats.arpReplies).toBeGreaterThanOrEqual(1);
  });

  it('keeps answering after random malformed datagrams (fast-check)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 0, maxLength: 600 }), { minLength: 1, maxLength: 20 }), async (junk) => {
        await exchange(g.port, junk, 30);
        expect(await resolver.resolve4('ns1.example.test')).toEqual(['192.0.2.53']);
      }),
      { numRuns: 15 },
    );
    expect(g.m.hart.fault).toBeUndefined();
    expect(g.m.hart.haltCode).toBeUndefined();
  });

  it('drops malformed frames from the guest side without a crash', () => {
    const before = g.net.stats.dropped;
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), (f) => { g.net.send(f); }), { numRuns: 300 });
    expect(g.net.stats.dropped).toBeGreaterThan(before);
  });
});

describe('record and replay of a dns session', () => {
  it('replays net-rx and disk entries from the log to the same digest, with no disk or network', async () => {
    const log: LogEntry[] = [];
    const sink = (p: LogPayload, icount: number) => log.push({ ...p, seq: log.length, icount } as LogEntry);
    const g = await bootDns(new RecordingEnv(sink));
    const r = resolverFor(g.port);
    expect((await r.resolve4('www.example.test')).sort()).toEqual(['192.0.2.80', '192.0.2.81']);
    await expect(r.resolve4('nope.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await exchange(g.port, [Uint8Array.of(1, 2, 3)], 50);
    await g.stop();
    const final = { icount: g.m.icount, digest: g.m.digest() };
    // As `ftvm record` ends: the final digest, which the replay checks when it gets there.
    sink({ type: 'digest', digest: final.digest }, final.icount);
    const types = new Set(log.map((e) => e.type));
    for (const t of ['net-rx', 'disk-read', 'disk-done'] as const) expect(types.has(t), t).toBe(true);

    const env = new ReplayEnv({ digest: (mm) => mm.digest() });
    for (const e of log) env.push(e);
    const outputs: Output[] = [];
    const m = new Machine({ env, disk: { sectors: 128 }, net: {}, onOutput: (o) => outputs.push(o) });
    m.loadElf(dnsElf);
    const out = await runMachine(m, { untilIcount: final.icount });
    expect(out.reason).toBe('until');
    expect(m.icount).toBe(final.icount);
    expect(m.digest()).toBe(final.digest);
    // The replica transmitted the very frames the primary did (the answers), byte for byte.
    const frames = (os: Output[]) => os.filter((o) => o.kind === 'net').map((o) => Buffer.from((o as { frame: Uint8Array }).frame).toString('hex'));
    expect(frames(outputs)).toEqual(frames(g.outputs));
    expect(frames(outputs).length).toBeGreaterThanOrEqual(3);
  });
});

describe('kv guest on ftvm (write-ahead log on the virtio disk)', () => {
  it('acknowledges a PUT only once it is on disk, and a restarted guest replays it', async () => {
    const image = join(dir, 'kv.img');
    writeFileSync(image, '');
    truncateSync(image, 4 << 20); // a zeroed disk is an empty log
    const kvElf = readFileSync(new URL('kv/kv.elf', guests));
    const boot = async () => {
      const disk = await FileDisk.open(image);
      const net = await UdpNet.open([{ hostAddr: '127.0.0.1', hostPort: 0, guestPort: 7000 }]);
      let text = '';
      const m: Machine = new Machine({
        env: new LiveEnv(), disk: { backend: disk }, net: { backend: net },
        onOutput: (o) => { if (o.kind === 'console') text += String.fromCharCode(o.byte); else m.io!.execute(o); },
      });
      m.loadElf(kvElf);
      const abort = new AbortController();
      const done = runMachine(m, { signal: abort.signal });
      while (!/kv: replayed/.test(text)) await new Promise((r) => setTimeout(r, 10));
      return { m, port: net.boundPorts[0]!, text: () => text, stop: async () => { abort.abort(); await done; await m.io!.close(); } };
    };
    const a = await boot();
    expect(a.text()).toBe('kv: replayed 0 log records, 0 keys\n');
    const c1 = new KvClient({ servers: [{ host: '127.0.0.1', port: a.port }], timeoutMs: 200 });
    await c1.put('colour', 'blue');
    await c1.put('shape', 'round');
    expect((await c1.get('colour'))?.toString()).toBe('blue');
    c1.close();
    // Every acknowledged PUT was a disk write and a flush released before its reply.
    expect(a.m.io!.stats.diskWrites).toBeGreaterThanOrEqual(2);
    await a.stop();
    const b = await boot();
    expect(b.text()).toMatch(/^kv: replayed 2 log records, 2 keys\n$/);
    const c2 = new KvClient({ servers: [{ host: '127.0.0.1', port: b.port }], timeoutMs: 200 });
    expect((await c2.get('shape'))?.toString()).toBe('round');
    c2.close();
    await b.stop();
  });
});
