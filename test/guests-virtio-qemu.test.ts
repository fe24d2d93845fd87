// The virtio guests on QEMU, the reference machine, serving real clients:
// dns answers Node's resolver and dig through QEMU's user-network port
// forwarding and survives malformed packets; kv keeps acknowledged writes
// across a killed and restarted QEMU and applies a request id once;
// blkcheck matches its golden. Disk images are copied to a temp dir first:
// QEMU writes to them.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvClient } from '../runtime/clients/kv-client.js';
import { freeUdpPort } from './helpers/net.js';

const guestsDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'guests');
const NO_QEMU = 'qemu-system-riscv32 not found on PATH: install qemu-system-misc (Debian) to run the virtio guests';
const NO_DIG = 'dig not found on PATH: install dnsutils (Debian) to query the dns guest with dig';
const hasQemu = spawnSync('qemu-system-riscv32', ['--version']).status === 0;
const hasDig = spawnSync('dig', ['-v']).status === 0;

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'ftvm-virtio-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

// Safety net for guests a failed test left running (each suite stops its own).
const running: ChildProcess[] = [];
afterAll(() => {
  for (const p of running.splice(0)) p.kill('SIGKILL');
});

interface Guest {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/** Boots `name` with `disk` and a UDP forward, and waits for `ready` on its console. */
async function boot(name: string, disk: string, hostPort: number, guestPort: number, ready: RegExp): Promise<Guest> {
  if (!hasQemu) throw new Error(NO_QEMU);
  const proc = spawn(
    'sh',
    [join(guestsDir, 'qemu-io.sh'), '-d', disk, '-f', `udp:127.0.0.1:${hostPort}-:${guestPort}`, join(guestsDir, name, `${name}.elf`)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  running.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString('latin1')));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const deadline = Date.now() + 20_000;
  while (!ready.test(out)) {
    if (proc.exitCode !== null || Date.now() > deadline)
      throw new Error(`${name} did not become ready: stdout ${JSON.stringify(out)} stderr ${JSON.stringify(err)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return { proc, output: () => out, exited };
}

async function stop(g: Guest): Promise<void> {
  g.proc.kill('SIGKILL'); // no clean shutdown: what was acknowledged must already be on disk
  await g.exited;
}

/** Sends raw datagrams and collects every reply that arrives within `ms`. */
async function exchange(port: number, packets: Buffer[], ms = 400, gapMs = 20): Promise<Buffer[]> {
  const s = createSocket('udp4');
  const replies: Buffer[] = [];
  s.on('message', (m) => replies.push(m));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  for (const p of packets) {
    s.send(p, port, '127.0.0.1');
    await new Promise((r) => setTimeout(r, gapMs)); // keep the order of arrival
  }
  await new Promise((r) => setTimeout(r, ms));
  s.close();
  return replies;
}

describe('dns guest on QEMU', () => {
  let port: number;
  let guest: Guest;
  let resolver: Resolver;

  beforeAll(async () => {
    const disk = join(tmp, 'zone.img');
    copyFileSync(join(guestsDir, 'dns', 'zone.img'), disk);
    port = await freeUdpPort();
    guest = await boot('dns', disk, port, 53, /dns: serving \d+ records\n/);
    resolver = new Resolver({ timeout: 1000, tries: 3 });
    resolver.setServers([`127.0.0.1:${port}`]);
  });
  afterAll(async () => {
    if (guest) await stop(guest);
  });

  it('prints one line at boot, counting the zone file records', () => {
    expect(guest.output()).toBe('dns: serving 13 records\n');
  });

  it('answers A, AAAA, TXT, NS and SOA from the zone', async () => {
    expect((await resolver.resolve4('www.example.test')).sort()).toEqual(['192.0.2.80', '192.0.2.81']);
    expect(await resolver.resolve6('www.example.test')).toEqual(['2001:db8::80']);
    expect(await resolver.resolve6('v6only.example.test')).toEqual(['2001:db8:0:1:2:3:4:5']);
    expect(await resolver.resolveTxt('hello.example.test')).toEqual([['hello from ftvm', 'second string']]);
    expect(await resolver.resolveTxt('quote.example.test')).toEqual([['say "hi"']]);
    expect((await resolver.resolveNs('example.test')).sort()).toEqual(['ns1.example.test', 'ns2.example.test']);
    expect(await resolver.resolveSoa('example.test')).toEqual({
      nsname: 'ns1.example.test',
      hostmaster: 'hostmaster.example.test',
      serial: 2024060101,
      refresh: 7200,
      retry: 3600,
      expire: 1209600,
      minttl: 300,
    });
  });

  it('matches names case-insensitively', async () => {
    expect((await resolver.resolve4('WwW.ExAmPlE.TeSt')).sort()).toEqual(['192.0.2.80', '192.0.2.81']);
  });

  it('says NXDOMAIN for missing names and NODATA for missing types', async () => {
    await expect(resolver.resolve4('nope.example.test')).rejects.toMatchObject({ code: 'ENOTFOUND' });
    await expect(resolver.resolve4('v6only.example.test')).rejects.toMatchObject({ code: 'ENODATA' });
    // deep.example.test has no records but a name below it: it exists.
    await expect(resolver.resolve4('deep.example.test')).rejects.toMatchObject({ code: 'ENODATA' });
    await expect(resolver.resolve4('a.deep.example.test')).resolves.toEqual(['192.0.2.99']);
  });

  function dig(...args: string[]): string {
    // Fails rather than skips without dig: CI installs dnsutils.
    if (!hasDig) throw new Error(NO_DIG);
    const r = spawnSync('dig', ['+time=2', '+tries=3', '@127.0.0.1', '-p', String(port), ...args], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    return r.stdout;
  }

  it('answers dig authoritatively, with and without EDNS', () => {
    const a = dig('www.example.test', 'A');
    expect(a).toMatch(/status: NOERROR/);
    expect(a).toMatch(/flags: qr aa rd;/);
    expect(a).toMatch(/^www\.example\.test\.\s+300\s+IN\s+A\s+192\.0\.2\.80$/m);
    expect(a).toMatch(/EDNS: version: 0/); // our minimal OPT answers dig's
    const plain = dig('+noedns', 'www.example.test', 'AAAA');
    expect(plain).toMatch(/^www\.example\.test\.\s+300\s+IN\s+AAAA\s+2001:db8::80$/m);
    expect(plain).not.toMatch(/OPT PSEUDOSECTION/);
    const nx = dig('nope.example.test', 'A');
    expect(nx).toMatch(/status: NXDOMAIN/);
    expect(nx).toMatch(/AUTHORITY: 1/);
    expect(nx).toMatch(/^example\.test\.\s+3600\s+IN\s+SOA\s+ns1\.example\.test\. hostmaster\.example\.test\. 2024060101/m);
    expect(dig('example.org', 'A')).toMatch(/status: REFUSED/);
  });

  it('compresses answer names into pointers to the question', async () => {
    const q = query(0x1234, 'www.example.test', 1);
    const [r] = await exchange(port, [q]);
    expect(r).toBeDefined();
    const answerStart = q.length; // header + question, echoed as asked
    expect(r!.subarray(12, answerStart)).toEqual(q.subarray(12));
    expect(r!.subarray(answerStart, answerStart + 2)).toEqual(Buffer.from([0xc0, 0x0c]));
    expect(r!.readUInt16BE(6)).toBe(2);
    // ANY: every record of the name, all pointing at the question.
    // (Over raw UDP: dig 9.18 asks ANY over TCP, which the guest lacks.)
    const [any] = await exchange(port, [query(0x4321, 'www.example.test', 255)]);
    expect(any!.readUInt16BE(6)).toBe(3);
    expect(any!.readUInt16BE(2) & 0x040f).toBe(0x0400); // AA, NOERROR
  });

  /** A query for `name`, type `type`, class IN, RD set. */
  function query(id: number, name: string, type: number, flags = 0x0100, qdcount = 1): Buffer {
    const labels = name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
    const h = Buffer.alloc(12);
    h.writeUInt16BE(id, 0);
    h.writeUInt16BE(flags, 2);
    h.writeUInt16BE(qdcount, 4);
    const tail = Buffer.alloc(4);
    tail.writeUInt16BE(type, 0);
    tail.writeUInt16BE(1, 2);
    return Buffer.concat([h, ...labels, Buffer.from([0]), tail]);
  }

  it('answers malformed queries with FORMERR or NOTIMP, or drops them, and keeps serving', async () => {
    const ok = query(1, 'www.example.test', 1);
    const header = (id: number, flags: number, qd: number) => {
      const h = Buffer.alloc(12);
      h.writeUInt16BE(id, 0);
      h.writeUInt16BE(flags, 2);
      h.writeUInt16BE(qd, 4);
      return h;
    };
    const packets = [
      Buffer.from([1, 2, 3, 4, 5]), // id 0x0102: shorter than a header: dropped
      query(0x100, 'www.example.test', 1, 0x8100), // QR set: a response, never answered
      query(0x200, 'www.example.test', 1, 0x1100), // opcode 2 (STATUS): NOTIMP
      query(0x300, 'www.example.test', 1, 0x0100, 2), // QDCOUNT 2: FORMERR
      query(0x400, 'www.example.test', 1, 0x0100, 0), // QDCOUNT 0: FORMERR
      Buffer.concat([header(0x500, 0, 1), Buffer.from([0xc0, 0x0c, 0, 1, 0, 1])]), // pointer to itself: FORMERR
      Buffer.concat([header(0x600, 0, 1), Buffer.from([0x40, 0x61, 0, 0, 1, 0, 1])]), // label type 01: FORMERR
      Buffer.concat([header(0x700, 0, 1), Buffer.from([63, 0x61, 0x62])]), // label runs past the end: FORMERR
      ok.subarray(0, ok.length - 2), // no QCLASS: FORMERR
      Buffer.concat([header(0x900, 0, 1), Buffer.alloc(300, 5)]), // 50 labels of 5 > 255 bytes: FORMERR
    ];
    packets[8]!.writeUInt16BE(0x800, 0);
    const replies = await exchange(port, packets);
    const byId = new Map(replies.map((r) => [r.readUInt16BE(0), r]));
    expect(byId.has(0x0102)).toBe(false);
    expect(byId.has(0x100)).toBe(false);
    const rcode = (id: number) => {
      const r = byId.get(id);
      expect(r, `reply to ${id.toString(16)}`).toBeDefined();
      expect(r!.readUInt16BE(2) & 0x8000).toBe(0x8000);
      return r!.readUInt16BE(2) & 0xf;
    };
    expect(rcode(0x200)).toBe(4);
    for (const id of [0x300, 0x400, 0x500, 0x600, 0x700, 0x800, 0x900]) expect(rcode(id), id.toString(16)).toBe(1);
    expect(replies.length).toBe(8);
    // Still serving after all of that.
    expect(await resolver.resolve4('ns1.example.test')).toEqual(['192.0.2.53']);
  });

  it('survives a burst of random datagrams', async () => {
    // Deterministic junk (xorshift), so a failure reproduces.
    let x = 0x9e3779b9;
    const rnd = () => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);
    const junk = Array.from({ length: 200 }, () => Buffer.from(Array.from({ length: rnd() % 80 }, () => rnd() & 0xff)));
    await exchange(port, junk.slice(0, 100), 0, 0); // back to back: may overrun the RX ring
    await exchange(port, junk.slice(100), 100, 2);
    expect(await resolver.resolve6('www.example.test')).toEqual(['2001:db8::80']);
    expect(guest.proc.exitCode).toBeNull();
  });
});

describe('kv guest on QEMU', () => {
  it('keeps acknowledged writes across a killed QEMU and applies a request id once', async () => {
    const disk = join(tmp, 'kv.img');
    writeFileSync(disk, '');
    truncateSync(disk, 4 << 20); // a zeroed disk is an empty log
    const port = await freeUdpPort();
    let g = await boot('kv', disk, port, 7000, /kv: replayed \d+ log records, \d+ keys\n/);
    expect(g.output()).toBe('kv: replayed 0 log records, 0 keys\n');

    const c = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 300 });
    try {
      for (let i = 0; i < 20; i++) await c.put(`key${i}`, `value ${i} `.repeat(i + 1));
      expect((await c.get('key3'))?.toString()).toBe('value 3 '.repeat(4));
      expect(await c.get('missing')).toBeUndefined();
      expect(await c.del('key0')).toBe(true);
      expect(await c.del('key0')).toBe(false);
      await c.put('key1', 'changed');
      await c.put('big', Buffer.alloc(256, 0xab));

      // Exactly once, by hand: the same (client, request) id is answered
      // from memory even if the payload differs; an older id is STALE.
      const put = (rid: number, value: string) => {
        const k = Buffer.from('once');
        const v = Buffer.from(value);
        const b = Buffer.alloc(16 + k.length + v.length);
        b[0] = 0x4b;
        b[1] = 2;
        b[2] = k.length;
        b.writeUInt32BE(0xf00d, 4);
        b.writeUInt32BE(rid, 8);
        b.writeUInt16BE(v.length, 12);
        k.copy(b, 16);
        v.copy(b, 16 + k.length);
        return b;
      };
      const status = (r: Buffer) => [r.readUInt32BE(8), r[2]];
      expect((await exchange(port, [put(5, 'first')], 300)).map(status)).toEqual([[5, 0]]);
      expect((await exchange(port, [put(5, 'retry')], 300)).map(status)).toEqual([[5, 0]]);
      expect((await exchange(port, [put(4, 'older')], 300)).map(status)).toEqual([[4, 3]]);
      expect((await c.get('once'))?.toString()).toBe('first');
      await c.put('once', 'overwritten by another client');
    } finally {
      c.close();
    }

    await stop(g);
    g = await boot('kv', disk, port, 7000, /kv: replayed \d+ log records, \d+ keys\n/);
    // 20 puts, 1 del, 2 puts, the hand-made put, the last put: 25 records.
    // A del of a missing key and a retried put write nothing. Keys: key1-19,
    // big, once.
    expect(g.output()).toBe('kv: replayed 25 log records, 21 keys\n');
    const c2 = new KvClient({ servers: [{ host: '127.0.0.1', port }], timeoutMs: 300 });
    try {
      expect(await c2.get('key0')).toBeUndefined();
      expect((await c2.get('key1'))?.toString()).toBe('changed');
      for (let i = 2; i < 20; i++) expect((await c2.get(`key${i}`))?.toString()).toBe(`value ${i} `.repeat(i + 1));
      expect(await c2.get('big')).toEqual(Buffer.alloc(256, 0xab));
      // The log rebuilt the request table: a late retry of request 5 gets
      // its old answer and does not overwrite the newer value.
      const k = Buffer.from('once');
      const v = Buffer.from('first');
      const b = Buffer.alloc(16 + k.length + v.length);
      b[0] = 0x4b;
      b[1] = 2;
      b[2] = k.length;
      b.writeUInt32BE(0xf00d, 4);
      b.writeUInt32BE(5, 8);
      b.writeUInt16BE(v.length, 12);
      k.copy(b, 16);
      v.copy(b, 16 + k.length);
      const replies = await exchange(port, [b], 300);
      expect(replies.map((r) => [r.readUInt32BE(8), r[2]])).toEqual([[5, 0]]);
      expect((await c2.get('once'))?.toString()).toBe('overwritten by another client');
    } finally {
      c2.close();
      await stop(g);
    }
  });
});

describe('blkcheck guest on QEMU', () => {
  it('matches its golden on a fresh 1 MiB disk', () => {
    if (!hasQemu) throw new Error(NO_QEMU);
    const disk = join(tmp, 'blkcheck.img');
    writeFileSync(disk, '');
    truncateSync(disk, 1 << 20);
    const r = spawnSync('sh', [join(guestsDir, 'qemu-io.sh'), '-d', disk, join(guestsDir, 'blkcheck', 'blkcheck.elf')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
      killSignal: 'SIGKILL',
    });
    expect(r.stderr.toString()).toBe('');
    const expected = readFileSync(join(guestsDir, 'blkcheck', 'expected.txt'), 'latin1');
    expect(r.stdout.toString('latin1')).toBe(expected);
    expect(expected.trimEnd().split('\n').at(-1)).toBe('blkcheck: PASS');
    expect(expected).not.toMatch(/FAIL/);
    expect(r.status).toBe(Number(readFileSync(join(guestsDir, 'blkcheck', 'expected-exit'), 'utf8')));
    expect(r.status).toBe(0);
  });
});
