// The NBD backend against a real Debian `nbd-server` on a loopback port with a temp config
// (CI installs nbd-server: .ci/run). Missing nbd-server fails the suite with a clear message.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdDisk, NbdError } from '../runtime/io/disk-nbd.js';
import { parseDiskSpec, SpecError } from '../runtime/io/spec.js';
import { freeTcpPort, startNbdServer, type NbdServer } from './nbd-server.js';

describe('NBD disk backend against nbd-server', () => {
  let dir: string;
  let server: NbdServer;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ftvm-nbd-'));
    const image = join(dir, 'disk.img');
    writeFileSync(image, '');
    truncateSync(image, 1 << 20);
    server = await startNbdServer(dir, image);
  });
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('negotiates the export size and round-trips writes, reads and flushes', async () => {
    const d = await NbdDisk.connect({ host: '127.0.0.1', port: server.port, export: 'disk' });
    expect(d.sectors).toBe(2048);
    const data = new Uint8Array(1024);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff;
    await d.write(5, data);
    await d.flush();
    const back = await d.read(4, 4);
    expect(back.subarray(0, 512)).toEqual(new Uint8Array(512));
    expect(back.subarray(512, 1536)).toEqual(data);
    // Many requests in flight at once come back matched to their handles.
    const reads = await Promise.all(Array.from({ length: 32 }, (_, i) => d.read(5 + (i % 2), 1)));
    reads.forEach((r, i) => expect(r).toEqual(data.subarray((i % 2) * 512, (i % 2) * 512 + 512)));
    await d.close();
    // The server wrote the file itself.
    expect(new Uint8Array(readFileSync(server.image)).subarray(5 * 512, 7 * 512)).toEqual(data);
  });

  it('fails a read past the end with a server error, and keeps serving', async () => {
    const d = await NbdDisk.connect({ host: '127.0.0.1', port: server.port, export: 'disk' });
    await expect(d.read(2048, 1)).rejects.toBeInstanceOf(NbdError);
    expect((await d.read(0, 1)).length).toBe(512);
    await d.close();
  });

  it('refuses an unknown export with a clear error', async () => {
    await expect(NbdDisk.connect({ host: '127.0.0.1', port: server.port, export: 'nope' })).rejects.toThrow(/refused export 'nope'/);
  });

  it('reports a refused connection and a non-NBD server without hanging', async () => {
    const closed = await freeTcpPort();
    await expect(NbdDisk.connect({ host: '127.0.0.1', port: closed, export: 'disk' })).rejects.toThrow(/ECONNREFUSED/);
    const junk = net.createServer((s) => s.end('HTTP/1.1 400 Bad Request\r\n\r\n'));
    await new Promise<void>((r) => junk.listen(0, '127.0.0.1', r));
    const port = (junk.address() as AddressInfo).port;
    await expect(NbdDisk.connect({ host: '127.0.0.1', port, export: 'disk' })).rejects.toThrow(/not an NBD server|closed/);
    const silent = net.createServer(() => {});
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    await expect(NbdDisk.connect({ host: '127.0.0.1', port: (silent.address() as AddressInfo).port, export: 'disk', timeoutMs: 200 })).rejects.toThrow(/no handshake within 200 ms/);
    junk.close();
    silent.close();
  });

  it('reconnects after nbd-server restarts and re-sends the requests in flight and waiting', async () => {
    const image = join(dir, 'restart.img');
    writeFileSync(image, '');
    truncateSync(image, 1 << 20);
    let srv = await startNbdServer(dir, image);
    const lines: string[] = [];
    const d = await NbdDisk.connect({ host: '127.0.0.1', port: srv.port, export: 'disk', report: (l) => lines.push(l) });
    try {
      await d.write(1, new Uint8Array(512).fill(1));
      // In flight when the server dies: sent to a server process that is stopped (SIGSTOP of its
      // per-client child), so they are never answered on this connection.
      const sector = (v: number) => new Uint8Array(512).fill(v);
      const done: string[] = [];
      spawnSync('pkill', ['-STOP', '-P', String(srv.pid)]);
      const inFlight = [
        d.write(2, sector(2)).then(() => done.push('w2')),
        d.read(1, 1).then((b) => { done.push('r'); return b; }),
      ];
      await new Promise((r) => setTimeout(r, 100));
      expect(done).toEqual([]);
      await srv.stop();
      // Issued while the server is gone.
      const waiting = Promise.all([
        ...inFlight,
        d.write(3, sector(3)).then(() => done.push('w3')),
        d.write(4, sector(4)).then(() => done.push('w4')),
      ]);
      await new Promise((r) => setTimeout(r, 300));
      expect(done).toEqual([]); // they wait, they do not fail
      expect(lines).toEqual([expect.stringMatching(new RegExp(`^nbd 127\\.0\\.0\\.1:${srv.port} lost: .+; reconnecting \\(requests wait up to 30000 ms\\)$`))]);
      srv = await startNbdServer(dir, image, 'disk', srv.port);
      const back = (await waiting)[1] as Uint8Array;
      expect(done.sort()).toEqual(['r', 'w2', 'w3', 'w4']);
      expect(back).toEqual(sector(1));
      expect(lines[1]).toMatch(new RegExp(`^nbd 127\\.0\\.0\\.1:${srv.port} reconnected after \\d+ ms; re-sent 4 requests$`));
      expect(d.reconnects).toBe(1);
      await d.flush();
      expect(new Uint8Array(readFileSync(image)).subarray(512, 2560)).toEqual(new Uint8Array(Buffer.concat([sector(1), sector(2), sector(3), sector(4)])));
      // A cut connection to a live server (its per-client child killed) reconnects at once.
      srv.killClients();
      expect((await d.read(4, 1))[0]).toBe(4);
      expect(d.reconnects).toBe(2);
      await d.close();
    } finally {
      await srv.stop();
    }
  });

  it('fails the requests after the bound when the server stays down, then recovers in the background', async () => {
    const image = join(dir, 'dying.img');
    writeFileSync(image, '');
    truncateSync(image, 1 << 20);
    let srv = await startNbdServer(dir, image);
    const lines: string[] = [];
    const d = await NbdDisk.connect({ host: '127.0.0.1', port: srv.port, export: 'disk', reconnectDelayMs: 600, report: (l) => lines.push(l) });
    try {
      expect((await d.read(0, 1)).length).toBe(512);
      await srv.stop();
      const t0 = performance.now();
      const failed = await d.write(0, new Uint8Array(512)).then(() => undefined, (e: unknown) => e);
      const waitedMs = performance.now() - t0;
      expect(failed).toBeInstanceOf(NbdError);
      expect((failed as Error).message).toMatch(/server lost for \d+ ms \(.*ECONNREFUSED.*\)/);
      expect(waitedMs).toBeGreaterThanOrEqual(550);
      expect(waitedMs).toBeLessThan(600 + 5000); // generous: this machine's two cores are shared
      expect(lines[1]).toMatch(/^nbd 127\.0\.0\.1:\d+ still lost after \d+ ms: .*ECONNREFUSED.*; failed 1 request, I\/O fails until it is back$/);
      // Later requests fail at once while it is down.
      const t1 = performance.now();
      await expect(d.read(0, 1)).rejects.toBeInstanceOf(NbdError);
      expect(performance.now() - t1).toBeLessThan(500);
      // The server comes back: a background attempt (every 2 s at most) finds it.
      srv = await startNbdServer(dir, image, 'disk', srv.port);
      const deadline = performance.now() + 5000;
      while (d.reconnects === 0 && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(d.reconnects).toBe(1);
      expect(lines[2]).toMatch(/^nbd 127\.0\.0\.1:\d+ reconnected after \d+ ms$/);
      expect((await d.read(0, 1)).length).toBe(512);
      await d.close();
    } finally {
      await srv.stop();
    }
  });
});

describe('--disk nbd:// spec', () => {
  it('takes reconnect-delay in seconds, as QEMU names it, and refuses other options', () => {
    expect(parseDiskSpec('nbd://10.0.0.1:10810/disk')).toEqual({ kind: 'nbd', host: '10.0.0.1', port: 10810, export: 'disk' });
    expect(parseDiskSpec('nbd://[::1]/a%20b?reconnect-delay=2.5')).toEqual({ kind: 'nbd', host: '::1', port: 10809, export: 'a b', reconnectDelayMs: 2500 });
    expect(() => parseDiskSpec('nbd://h/x?reconnect-delay=soon')).toThrow(SpecError);
    expect(() => parseDiskSpec('nbd://h/x?timeout=1')).toThrow(/unknown option 'timeout'/);
  });
});
