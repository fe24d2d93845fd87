// Starts a real Debian `nbd-server` on a free loopback port with a temp config, for the NBD
// tests (CI installs nbd-server: .ci/run). Missing nbd-server fails clearly, never skips.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';

const NO_NBD = 'nbd-server not found on PATH: install nbd-server (Debian) to test the NBD disk backend';
const hasNbd = spawnSync('sh', ['-c', 'command -v nbd-server']).status === 0;

export async function freeTcpPort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Running, not a zombie waiting for its parent. */
function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

export interface NbdServer {
  port: number;
  image: string;
  pid: number;
  killClients(): void;
  stop(): Promise<void>;
}

/**
 * Start nbd-server on a free loopback port (or on `port`, to restart one), serving `image` as
 * `name`. It daemonizes (in its `-d` debug mode it serves a single client), so it is tracked
 * and stopped by its pid file.
 */
export async function startNbdServer(dir: string, image: string, name = 'disk', port?: number): Promise<NbdServer> {
  if (!hasNbd) throw new Error(NO_NBD);
  port ??= await freeTcpPort();
  const cfg = join(dir, `nbd-${port}.conf`);
  const pidFile = join(dir, `nbd-${port}.pid`);
  rmSync(pidFile, { force: true });
  writeFileSync(cfg, `[generic]\n    listenaddr = 127.0.0.1\n    port = ${port}\n[${name}]\n    exportname = ${image}\n    flush = true\n`);
  const launcher = spawnSync('nbd-server', ['-C', cfg, '-p', pidFile], { encoding: 'utf8', timeout: 10_000 });
  if (launcher.status !== 0) throw new Error(`nbd-server failed to start: ${launcher.stderr}`);
  const deadline = Date.now() + 10_000;
  let pid = 0;
  for (;;) {
    if (existsSync(pidFile)) pid = Number(readFileSync(pidFile, 'utf8').trim());
    const ok = pid > 0 && await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => { s.destroy(); resolve(true); });
      s.once('error', () => resolve(false));
    });
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nbd-server did not start listening on ${port}: ${launcher.stderr}`);
    await new Promise((r) => setTimeout(r, 30));
  }
  // nbd-server forks one child per client: killing them cuts every connection.
  const killClients = (): void => { spawnSync('pkill', ['-KILL', '-P', String(pid)]); };
  return {
    port, image, pid, killClients,
    async stop() {
      killClients();
      try { process.kill(pid, 'SIGKILL'); } catch { /* already gone */ }
      // Gone, so that a restart can listen on the same port.
      const until = Date.now() + 5000;
      while (Date.now() < until && alive(pid)) {
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

