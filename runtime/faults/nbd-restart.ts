// The 'nbd-restart' operator-error fault (issue 11 item 8): the kv guest under
// `ftvm run --disk nbd://...` with the kv client load, and the Debian nbd-server killed and
// started again on its port mid-load. The checker: every acknowledged PUT reads back from the
// running guest and is in the write-ahead log on the disk; no request was applied twice.

import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { KvClient, KvOp, KvStatus } from '../clients/kv-client.js';
import { checkKv, KV_DISK_BYTES, KvLoad, readWal } from '../demo/kv-load.js';
import type { CheckResult } from './checker.js';
import { freePort } from './etcd-server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Whether something listens on the loopback TCP port, from /proc/net/tcp: a probe connection
 * would use up the single client of a foreground nbd-server.
 */
function listening(port: number): boolean {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols[1]?.endsWith(`:${hex}`) && cols[3] === '0A') return true;
    }
  }
  return false;
}

/**
 * nbd-server in the foreground (`-d`: no daemon, it serves one client and exits), so that it
 * is a direct child of the harness and is stopped by its own pid; killing it cuts the client.
 */
class NbdServerChild {
  private proc: ChildProcess | undefined;
  log = '';
  constructor(readonly dir: string, readonly image: string, readonly port: number) {
    writeFileSync(join(dir, 'nbd.conf'), `[generic]\n    listenaddr = 127.0.0.1\n    port = ${port}\n[disk]\n    exportname = ${image}\n    flush = true\n`);
  }

  async start(): Promise<void> {
    const proc = spawn('nbd-server', ['-d', '-C', join(this.dir, 'nbd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc = proc;
    proc.stderr!.on('data', (d: Buffer) => { this.log += d.toString(); });
    const deadline = Date.now() + 10_000;
    while (!listening(this.port)) {
      if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`nbd-server did not listen on ${this.port}: ${this.log}`);
      await sleep(20);
    }
  }

  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await gone;
  }
}

export interface NbdRestartSpec {
  id: number;
  cli: string;
  /** guests/kv/kv.elf */
  guest: string;
  dir: string;
  /** When nbd-server is killed, ms after the load started (or after 10 + atMs/20 acknowledged PUTs, if sooner). */
  atMs: number;
  /** How long it stays away before it starts again on its port. */
  downMs: number;
  timeoutMs?: number;
}

export interface NbdRestartResult {
  struck: boolean;
  hung: boolean;
  exit: string;
  acked: number;
  check: CheckResult;
}

export async function runNbdRestart(spec: NbdRestartSpec): Promise<NbdRestartResult> {
  const errors: string[] = [];
  const image = join(spec.dir, 'kv.img');
  writeFileSync(image, '');
  truncateSync(image, KV_DISK_BYTES); // a zeroed disk is an empty kv log
  const server = new NbdServerChild(spec.dir, image, await freePort());
  await server.start();
  const udp = await freeUdpPort();
  const proc = spawn(process.execPath, [spec.cli, 'run', spec.guest, '--disk', `nbd://127.0.0.1:${server.port}/disk`, '--net', `udp:${udp}:7000`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const stderr: string[] = [];
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  createInterface({ input: proc.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<string>((r) => proc.once('exit', (code, sig) => r(sig ?? String(code))));
  let hung = false;
  const guard = setTimeout(() => { hung = true; proc.kill('SIGKILL'); }, spec.timeoutMs ?? 60_000);
  let struck = false;
  let load: KvLoad | undefined;
  const readBack = new Map<string, string | undefined>();
  try {
    const deadline = Date.now() + 20_000;
    while (!/kv: replayed .*\n/.test(out)) {
      if (Date.now() > deadline || proc.exitCode !== null) throw new Error(`kv did not boot: ${out} ${stderr.join('\n')}`);
      await sleep(20);
    }
    load = new KvLoad({ port: udp, seed: spec.id });
    load.start();
    // The load PUTs at most 240 keys (then only GETs, which never touch the disk): strike by
    // time, or once 10-85 PUTs are acknowledged, whichever comes first, so that PUTs still
    // have to reach the disk after the restart.
    const killAfterPuts = 10 + Math.floor(spec.atMs / 20);
    const strikeAt = Date.now() + spec.atMs;
    while (Date.now() < strikeAt && load.acked.size < killAfterPuts) await sleep(5);
    const before = load.acked.size;
    await server.kill();
    struck = true;
    await sleep(spec.downMs);
    await server.start();
    // The load goes on until it has a few more acknowledged PUTs than at the kill (or a while).
    const until = Date.now() + 8_000;
    while (load.acked.size < Math.min(before + 15, 240) && Date.now() < until && !hung) await sleep(20);
    if (load.acked.size === before) errors.push(`no PUT acknowledged in 8 s after the restart (${before} before it)`);
    await load.stop();
    const client = new KvClient({ servers: [{ host: '127.0.0.1', port: udp }], timeoutMs: 200, maxTimeoutMs: 1000, attemptsPerServer: 10 });
    try {
      for (const key of load.acked.keys()) {
        const r = await client.request(KvOp.Get, Buffer.from(key));
        readBack.set(key, r.status === KvStatus.Ok ? r.value.toString() : undefined);
      }
    } finally {
      client.close();
    }
  } catch (e) {
    errors.push((e as Error).message);
  } finally {
    await load?.stop().catch(() => undefined);
    proc.kill('SIGINT');
  }
  const exit = await exited;
  clearTimeout(guard);
  await server.kill();
  writeFileSync(join(spec.dir, 'stderr.txt'), stderr.map((l) => `R ${l}`).join('\n') + `\nR stdout: ${out}\nN ${server.log}\n`);

  const wal = readWal(readFileSync(image));
  const kv = load ? checkKv(load, readBack, wal) : { ok: false, lines: [], errors: [] };
  errors.push(...kv.errors);
  if (load && load.acked.size === 0) errors.push('no PUT was acknowledged');
  // The restart is reported on stderr (issue 11: the backend says so).
  if (struck && !stderr.some((l) => /nbd .*reconnected/.test(l))) errors.push('no "nbd ... reconnected" line on stderr');
  if (exit !== '130' && exit !== '0' && exit !== 'SIGINT') errors.push(`ftvm run exited ${exit} after SIGINT`);
  if (hung) errors.push(`hung: killed after ${spec.timeoutMs ?? 60_000} ms`);
  const twice = kv.errors.filter((e) => /applied twice/.test(e)).length;
  const lost = kv.errors.filter((e) => /reads back as|is not in the log/.test(e)).length;
  return {
    struck,
    hung,
    exit,
    acked: load?.acked.size ?? 0,
    check: {
      ok: errors.length === 0,
      lost,
      incomplete: false,
      duplicates: 0,
      conflicts: twice,
      doubleLive: 0,
      outage: false,
      refusedOutputs: 0,
      lines: load?.acked.size ?? 0,
      errors,
    },
  };
}
