// A crashed replica lets go of its I/O backends at the crash, as a killed process's exit
// does (runtime/pair.ts crashPrimary, MachineIo.abandon): in a pair whose backup runs in a
// worker, kill('primary') frees the service port and the disk image's lock at once, long
// before the backup goes live. Before, the dead primary's socket stayed bound until the
// failover closed it and swallowed the queries sent meanwhile (docs/BENCHMARKS.md "Go-live of
// an I/O backup"); now a client gets ECONNREFUSED at once and asks again. No other effect: the
// dead primary releases nothing after the kill, and the backup still goes live and serves.
// Killed in turn, the primary the worker became takes its port with its thread.
// The lock check runs in a child process (POSIX locks belong to the process): the built
// dist/, as the other process tests.
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect, type Socket } from 'node:net';
import { Resolver } from 'node:dns/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { createPair, type PairEvent } from '../../runtime/pair.js';
import { guestPath } from '../../runtime/guests.js';
import { openIo } from '../../runtime/io/open.js';
import { NbdDisk } from '../../runtime/io/disk-nbd.js';
import { startNbdServer } from '../nbd-server.js';
import { root } from '../helpers/cli-procs.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Try to bind a UDP port on loopback; true if it was free (the socket is closed again at once). */
const portFree = (port: number): Promise<boolean> => new Promise((resolve) => {
  const s = createSocket('udp4');
  s.once('error', () => { s.close(); resolve(false); });
  s.bind(port, '127.0.0.1', () => { s.close(); resolve(true); });
});

/**
 * Another process that tries to lock the image every 5 ms (as a successor host would): it says
 * `held` at its first refusal and `got <epoch ms>` once it had the lock (then lets go and exits).
 */
function lockProbe(image: string): { proc: ChildProcess; lines: string[] } {
  const script = `
    const { FileDisk } = await import(${JSON.stringify(join(root, 'dist/runtime/io/disk-file.js'))});
    let said = false;
    for (const t0 = Date.now(); Date.now() - t0 < 20000;) {
      try {
        const d = await FileDisk.open(${JSON.stringify(image)});
        console.log('got ' + Date.now());
        await d.close();
        process.exit(0);
      } catch (e) {
        if (e.name !== 'DiskInUseError') { console.log('error ' + e.message); process.exit(1); }
        if (!said) { said = true; console.log('held'); }
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    console.log('timeout');`;
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => lines.push(l));
  cleanups.push(() => { if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL'); });
  return { proc, lines };
}

describe('a crashed replica lets go of its backends at the crash', () => {
  it('worker pair, dns: after kill(primary) the port and the disk lock are free before the backup goes live, which then serves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-crash-io-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const image = join(dir, 'zone.img');
    copyFileSync(join(dirname(guestPath('dns')), 'zone.img'), image);
    const io = await openIo({ disk: `file:${image}`, net: ['udp:127.0.0.1:0:53'] });
    cleanups.push(() => io.close());
    const port = io.udp!.boundPorts[0]!;
    // Slow detection: a wide window between the kill and the go-live, which is what is judged.
    const pair = createPair({
      image: readFileSync(guestPath('dns')), backupIn: 'worker', timing: { suspectMs: 1500, confirmMs: 200 },
      disk: io.disk!.backend!, net: io.net!.backend!,
    });
    const events: Array<PairEvent & { wall: number }> = [];
    pair.events$.subscribe((e) => events.push({ ...e, wall: Date.now() }));
    let text = '';
    let killedAt: number | undefined;
    const releasedAfterKill: string[] = [];
    pair.outputs$.subscribe((o) => {
      if (o.output.kind === 'console') text += String.fromCharCode(o.output.byte);
      if (killedAt !== undefined && o.node === 'primary') releasedAfterKill.push(o.output.kind);
    });
    const started = pair.start();
    cleanups.push(async () => {
      await pair.stop();
      await started;
    });
    const resolver = new Resolver({ timeout: 250, tries: 1 });
    resolver.setServers([`127.0.0.1:${port}`]);
    for (const t0 = Date.now(); !/dns: serving/.test(text); await sleep(5)) {
      if (Date.now() - t0 > 30_000) throw new Error(`the dns guest did not come up: ${JSON.stringify(text)}`);
    }
    /** An answer, asking again after a timeout or a refusal (a loaded host is slow to answer). */
    const ask = async (name: string): Promise<string[] | undefined> => {
      for (let i = 0; i < 40; i++) {
        try {
          return await resolver.resolve4(name);
        } catch {
          await sleep(50);
        }
      }
      return undefined;
    };
    expect(await ask('ns2.example.test')).toEqual(['192.0.2.54']);
    expect(await portFree(port)).toBe(false);
    const probe = lockProbe(image);
    for (const t0 = Date.now(); !probe.lines.includes('held'); await sleep(5)) {
      if (Date.now() - t0 > 20_000 || probe.lines.length > 0) throw new Error(`the lock probe did not find the image held: ${probe.lines.join(' | ')}`);
    }
    expect(pair.actor.getSnapshot().matches('protected')).toBe(true);

    killedAt = Date.now();
    pair.kill('primary');
    const live = (): number | undefined => events.find((e) => e.type === 'failover')?.wall;
    let freeAt: number | undefined;
    while (freeAt === undefined && live() === undefined && Date.now() - killedAt < 10_000) {
      if (await portFree(port)) freeAt = Date.now();
      else await sleep(2);
    }
    // A client asking now is refused at once (no server on the port), not left to time out.
    let refused: string | undefined;
    if (live() === undefined) refused = await resolver.resolve4('ns2.example.test').then(() => 'answered', (e: { code?: string }) => e.code);
    const refusedBeforeLive = live() === undefined;
    for (const t0 = Date.now(); !probe.lines.some((l) => l !== 'held'); await sleep(5)) {
      if (Date.now() - t0 > 20_000) break;
    }
    const got = probe.lines.find((l) => l.startsWith('got '));
    const lockedAt = got === undefined ? undefined : Number(got.slice(4));

    // The backup goes live and serves (it binds the port and locks the disk itself).
    for (const t0 = Date.now(); live() === undefined; await sleep(5)) {
      if (Date.now() - t0 > 20_000) throw new Error(`no failover: ${events.map((e) => `${e.node} ${e.type} ${e.detail}`).join('\n')}`);
    }
    const answer = await ask('www.example.test');
    const why = events.filter((e) => e.node !== 'primary' || e.type !== 'state').map((e) => `${e.node} ${e.type} ${e.detail} @${e.wall - killedAt!}`).join('\n');

    expect(freeAt, `port ${port} still bound when the backup went live\n${why}`).toBeDefined();
    expect(freeAt!, why).toBeLessThan(live()!);
    expect(refusedBeforeLive, why).toBe(true);
    expect(refused, why).toBe('ECONNREFUSED');
    expect(lockedAt, `lock probe: ${probe.lines.join(' | ')}\n${why}`).toBeDefined();
    expect(lockedAt!, why).toBeLessThan(live()!);
    expect(lockedAt!, why).toBeGreaterThanOrEqual(killedAt);
    // Nothing else: the dead primary released nothing after its kill.
    expect(releasedAfterKill, why).toEqual([]);
    expect(answer?.sort(), why).toEqual(['192.0.2.80', '192.0.2.81']);
    // The worker locks the disk too (on a loaded host it may come after the first answers).
    const tookOver = (): boolean => events.some((e) => e.node === 'backup' && /^took over disk file:.*\.img and the service ports in/.test(e.detail));
    for (const t0 = Date.now(); !tookOver() && Date.now() - t0 < 20_000;) await sleep(10);
    expect(tookOver(), why).toBe(true);

    // Now the live primary is the worker's: killing it ends the thread, and its port goes too.
    expect(await portFree(port)).toBe(false);
    pair.kill('primary');
    let freeAgain = false;
    for (const t0 = Date.now(); !freeAgain && Date.now() - t0 < 10_000;) {
      freeAgain = await portFree(port);
      if (!freeAgain) await sleep(5);
    }
    expect(freeAgain, `the worker's port stayed bound after its kill\n${why}`).toBe(true);
  }, 90_000);
});

describe('NbdDisk.abandon: the connection drops as a dead process\'s would', () => {
  it('does not wait for an unanswered request, fails it, and sends nothing more', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-crash-nbd-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const image = join(dir, 'disk.img');
    writeFileSync(image, Buffer.alloc(64 * 1024));
    const server = await startNbdServer(dir, image);
    cleanups.push(() => server.stop());
    // A relay that can hold the server's replies and counts the client's bytes (a DISC is 28).
    let hold = false;
    let upBytes = 0;
    const sockets: Socket[] = [];
    const relay = createServer((client) => {
      const up = tcpConnect(server.port, '127.0.0.1');
      sockets.push(client, up);
      client.on('data', (d) => { upBytes += d.length; up.write(d); });
      up.on('data', (d) => { if (!hold) client.write(d); });
      const end = (): void => { client.destroy(); up.destroy(); };
      client.on('close', end);
      up.on('close', end);
      client.on('error', end);
      up.on('error', end);
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise<void>((r) => { for (const s of sockets) s.destroy(); relay.close(() => r()); }));
    const disk = await NbdDisk.connect({ host: '127.0.0.1', port: (relay.address() as { port: number }).port, export: 'disk', report: () => {} });
    expect((await disk.read(0, 1)).length).toBe(512);
    hold = true;
    const write = disk.write(1, new Uint8Array(512).fill(7));
    const failed = write.then(() => 'written', (e: Error) => e.message);
    await sleep(50);
    const before = upBytes;
    // close() would wait for the held reply first (and then send NBD_CMD_DISC).
    await disk.abandon();
    expect(hold).toBe(true);
    expect(await failed).toMatch(/closed/);
    await sleep(50);
    expect(upBytes).toBe(before);
    // And nothing more can be asked of it.
    await expect(disk.read(0, 1)).rejects.toThrow(/closed/);
  }, 30_000);
});
