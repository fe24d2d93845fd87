// Host C of the README's two-host section, in a network namespace: its nbd-server and etcd,
// configured by the README's own commands (already run into `dir`), started as this test's
// children rather than as system services. Shared by the namespace tests of that section.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface HostC {
  /** The nbd-server daemon's pid (it forks away from its launcher). */
  nbdPid: number;
  etcd: ChildProcess;
  /** The settings of `dir/etc/default/etcd`, as etcd read them. */
  etcdEnv: Record<string, string>;
}

/** Start nbd-server and etcd in namespace `ns` from the configuration under `dir`; resolves once both serve. */
export async function startHostC(ns: string, dir: string): Promise<HostC> {
  const pidFile = join(dir, 'nbd.pid');
  // nbd-server forks a child per client (without forking at start it serves one client at a time).
  execFileSync('ip', ['netns', 'exec', ns, 'nbd-server', '-C', join(dir, 'etc/nbd-server/config'), '-p', pidFile]);
  // The launcher exits once it has forked; the daemon writes its pid file a moment later.
  for (const until = Date.now() + 10_000; !existsSync(pidFile) || !readFileSync(pidFile, 'utf8').trim();) {
    if (Date.now() > until) throw new Error('nbd-server wrote no pid file in 10 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  const nbdPid = Number(readFileSync(pidFile, 'utf8').trim());
  const etcdEnv = Object.fromEntries([...readFileSync(join(dir, 'etc/default/etcd'), 'utf8').matchAll(/^(\w+)="(.*)"$/gm)].map((m) => [m[1]!, m[2]!]));
  const etcd = spawn('ip', ['netns', 'exec', ns, 'etcd'], {
    stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...etcdEnv, ETCD_DATA_DIR: join(dir, 'etcd'), ETCD_UNSUPPORTED_ARCH: process.env.ETCD_UNSUPPORTED_ARCH ?? '' },
  });
  let etcdLog = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`etcd did not serve:\n${etcdLog.slice(-2000)}`)), 20_000);
    etcd.stderr!.on('data', (d: Buffer) => {
      etcdLog = (etcdLog + d.toString()).slice(-20_000);
      if (/serving insecure client requests|ready to serve client requests/.test(etcdLog)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { nbdPid, etcd, etcdEnv };
}
