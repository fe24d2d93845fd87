// The NBD backend against a real Debian `nbd-server` on a loopback port with a temp config
// (CI installs nbd-server: .ci/run). Missing nbd-server fails the suite with a clear message.
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdDisk, NbdError } from '../runtime/io/disk-nbd.js';
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

  it('fails pending and later requests when the server dies', async () => {
    const image = join(dir, 'dying.img');
    writeFileSync(image, '');
    truncateSync(image, 1 << 20);
    const dying = await startNbdServer(dir, image);
    const d = await NbdDisk.connect({ host: '127.0.0.1', port: dying.port, export: 'disk' });
    expect((await d.read(0, 1)).length).toBe(512);
    await dying.stop();
    await expect(d.read(0, 1)).rejects.toBeInstanceOf(NbdError);
    await expect(d.write(0, new Uint8Array(512))).rejects.toBeInstanceOf(NbdError);
  });
});
