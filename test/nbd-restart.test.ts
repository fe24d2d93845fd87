// The kv guest under `ftvm run --disk nbd://…` with a kv client putting keys while the real
// nbd-server is killed and started again: the disk reconnects, says so on stderr, the guest
// never sees an I/O error, and every acknowledged PUT is readable afterwards, from the
// running guest and from a guest booted again on the same export (it was on the disk).
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KvClient } from '../runtime/clients/kv-client.js';
import { startNbdServer, type NbdServer } from './nbd-server.js';

const root = new URL('../', import.meta.url).pathname;
const ftvm = join(root, 'bin/ftvm.js');

let dir: string;
const children: ChildProcess[] = [];
const servers: NbdServer[] = [];
beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'ftvm-nbd-restart-')); });
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of servers) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function bootKv(nbdPort: number, udpPort: number, query = '') {
  const child = spawn(process.execPath, [ftvm, 'run', 'guests/kv/kv.elf', '--disk', `nbd://127.0.0.1:${nbdPort}/disk${query}`, '--net', `udp:${udpPort}:7000`], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  const booted = async (): Promise<string> => {
    const deadline = Date.now() + 20_000;
    while (!/kv: replayed .*\n/.test(out)) {
      if (Date.now() > deadline || child.exitCode !== null) throw new Error(`kv did not boot: ${out} ${err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return out;
  };
  return { child, booted, err: () => err, exited };
}

describe('kv guest on an NBD disk whose server restarts', () => {
  it('loses no acknowledged PUT and reports the reconnect', async () => {
    const image = join(dir, 'kv.img');
    writeFileSync(image, '');
    truncateSync(image, 4 << 20); // a zeroed disk is an empty kv log
    let srv = await startNbdServer(dir, image);
    servers.push(srv);
    const port = srv.port;
    const udp = await freeUdpPort();
    const g = bootKv(port, udp);
    expect(await g.booted()).toBe('kv: replayed 0 log records, 0 keys\n');

    const client = new KvClient({ servers: [{ host: '127.0.0.1', port: udp }], timeoutMs: 200, maxTimeoutMs: 1000, attemptsPerServer: 10 });
    const acked = new Map<string, string>();
    const failures: string[] = [];
    let stop = false;
    const load = (async () => {
      for (let i = 0; !stop && i < 2000; i++) {
        const key = `k${i % 200}`;
        const value = `v${i}`;
        try {
          await client.put(key, value);
          acked.set(key, value);
        } catch (e) {
          failures.push(`${key}: ${(e as Error).message}`);
        }
      }
    })();
    try {
      while (acked.size < 20) await new Promise((r) => setTimeout(r, 10));
      // Mid-load: the server dies, stays away for 700 ms, and starts again on its port.
      await srv.stop();
      const ackedAtKill = acked.size;
      await new Promise((r) => setTimeout(r, 700));
      srv = await startNbdServer(dir, image, 'disk', port);
      servers.push(srv);
      const deadline = Date.now() + 20_000;
      while (acked.size < ackedAtKill + 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      stop = true;
      await load;
      expect(failures).toEqual([]); // no IO_ERROR, no timeout: the guest only waited
      expect(acked.size).toBeGreaterThanOrEqual(ackedAtKill + 20);
      for (const [k, v] of acked) expect((await client.get(k))?.toString(), k).toBe(v);
    } finally {
      stop = true;
      await load;
      client.close();
      g.child.kill('SIGINT');
    }
    expect(await g.exited).toBe(130);
    const lines = g.err().split('\n').filter((l) => l.startsWith('ftvm: nbd'));
    expect(lines[0]).toMatch(new RegExp(`^ftvm: nbd 127\\.0\\.0\\.1:${port} lost: .+; reconnecting \\(requests wait up to 30000 ms\\)$`));
    expect(lines[1]).toMatch(new RegExp(`^ftvm: nbd 127\\.0\\.0\\.1:${port} reconnected after \\d+ ms`));

    // Every acknowledged PUT reached the disk: a guest booted again replays it from the log.
    const udp2 = await freeUdpPort();
    const again = bootKv(port, udp2);
    await again.booted();
    const c2 = new KvClient({ servers: [{ host: '127.0.0.1', port: udp2 }], timeoutMs: 200 });
    try {
      for (const [k, v] of acked) expect((await c2.get(k))?.toString(), k).toBe(v);
    } finally {
      c2.close();
      again.child.kill('SIGINT');
    }
    expect(await again.exited).toBe(130);
  }, 90_000);

  it('answers IO_ERROR only after reconnect-delay when the server stays down', async () => {
    const image = join(dir, 'kv-down.img');
    writeFileSync(image, '');
    truncateSync(image, 4 << 20);
    const srv = await startNbdServer(dir, image);
    servers.push(srv);
    const udp = await freeUdpPort();
    const g = bootKv(srv.port, udp, '?reconnect-delay=1.5');
    await g.booted();
    // The client waits longer than the bound, so the guest's own answer comes back.
    const client = new KvClient({ servers: [{ host: '127.0.0.1', port: udp }], timeoutMs: 500, maxTimeoutMs: 1000, attemptsPerServer: 10 });
    try {
      await client.put('a', '1');
      await srv.stop();
      const t0 = Date.now();
      await expect(client.put('b', '2')).rejects.toThrow("kv: Put failed: IoError");
      const waitedMs = Date.now() - t0;
      expect(waitedMs).toBeGreaterThanOrEqual(1400);
      expect(waitedMs).toBeLessThan(1500 + 8000); // generous: the two cores are shared
      // What was acknowledged before is still served (GET is not logged).
      expect((await client.get('a'))?.toString()).toBe('1');
    } finally {
      client.close();
      g.child.kill('SIGINT');
    }
    expect(await g.exited).toBe(130);
    expect(g.err()).toMatch(new RegExp(`ftvm: nbd 127\\.0\\.0\\.1:${srv.port} lost: .+; reconnecting \\(requests wait up to 1500 ms\\)\\n`));
    expect(g.err()).toMatch(new RegExp(`ftvm: nbd 127\\.0\\.0\\.1:${srv.port} still lost after \\d+ ms: .*ECONNREFUSED.*; failed \\d+ requests?, I/O fails until it is back\\n`));
  }, 60_000);
});
