// A real etcd (Debian `etcd-server`) for tests and fault runs: one member on the given host,
// with its own data directory, that can be killed and started again on the same data.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ETCD_BINARY_CANDIDATES = ['/usr/bin/etcd', '/usr/local/bin/etcd'];

export function findEtcd(): string | undefined {
  for (const p of ETCD_BINARY_CANDIDATES) if (existsSync(p)) return p;
  const r = spawnSync('sh', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() || undefined : undefined;
}

/** A free TCP port on `host` (bound and released; fine for tests on loopback). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, host, () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export interface EtcdServerOptions {
  host?: string;
  clientPort?: number;
  peerPort?: number;
  dataDir?: string;
  /** Wraps the command, e.g. ['ip', 'netns', 'exec', 'ns1']. */
  prefix?: string[];
}

export class EtcdServer {
  readonly host: string;
  private proc: ChildProcess | undefined;
  private log = '';

  private constructor(
    readonly binary: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly dataDir: string,
    private readonly ownsDir: boolean,
    private readonly opts: EtcdServerOptions,
  ) {
    this.host = opts.host ?? '127.0.0.1';
  }

  static async start(opts: EtcdServerOptions = {}): Promise<EtcdServer> {
    const binary = findEtcd();
    if (!binary) throw new Error('etcd not found: install Debian package etcd-server (apt-get install -y etcd-server)');
    const host = opts.host ?? '127.0.0.1';
    const clientPort = opts.clientPort ?? (await freePort(host));
    const peerPort = opts.peerPort ?? (await freePort(host));
    const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'ftvm-etcd-'));
    const s = new EtcdServer(binary, clientPort, peerPort, dataDir, opts.dataDir === undefined, opts);
    await s.restart();
    return s;
  }

  get endpoint(): string {
    return `${this.host}:${this.clientPort}`;
  }

  get running(): boolean {
    return this.proc !== undefined && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Starts etcd (again, on the same data) and waits until it serves clients. */
  async restart(timeoutMs = 15_000): Promise<void> {
    if (this.running) return;
    const client = `http://${this.host}:${this.clientPort}`;
    const peer = `http://${this.host}:${this.peerPort}`;
    const args = [
      '--name', 'ftvm', '--data-dir', this.dataDir,
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', `ftvm=${peer}`, '--initial-cluster-state', 'new',
      '--logger', 'zap', '--log-outputs', 'stderr',
    ];
    const cmd = [...(this.opts.prefix ?? []), this.binary, ...args];
    this.log = '';
    const proc = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' } });
    this.proc = proc;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`etcd did not become ready in ${timeoutMs} ms:\n${this.log.slice(-2000)}`));
      }, timeoutMs);
      proc.stderr!.on('data', (d: Buffer) => {
        this.log += d.toString();
        if (this.log.length > 100_000) this.log = this.log.slice(-50_000);
        if (/serving client traffic|ready to serve client requests/.test(this.log)) {
          clearTimeout(timer);
          resolve();
        }
      });
      proc.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`etcd exited (${code ?? sig}) before it was ready:\n${this.log.slice(-2000)}`));
      });
    });
  }

  /** Fail-stop: SIGKILL, and wait until the process is gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || !this.running) return;
    const gone = new Promise<void>((r) => p.once('exit', () => r()));
    p.kill('SIGKILL');
    await gone;
  }

  /** Kill and remove the data directory if this object made it. */
  async destroy(): Promise<void> {
    await this.kill();
    if (this.ownsDir) rmSync(this.dataDir, { recursive: true, force: true });
  }
}
