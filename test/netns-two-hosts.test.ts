// Two hosts for real: network namespaces A (192.168.1.11) and B (.12) for the replicas, C (.10)
// for the shared disk (Debian nbd-server) and the arbiter (etcd), and K (.100) for clients, on a
// bridge in a namespace of its own (nothing of this test touches the host's network).
//  1. Losing host A (its link down first: silence, no FIN) fails the seq pair over to B.
//  2./3. README "Protect a name server on two hosts", taken from README.md itself: C's nbd-server
//     config and etcd settings, the key, the --on-live hook and ftvm-garp, the primary, backup
//     and --join commands (only /etc, /srv and /usr/local/sbin are moved into a temp dir, and
//     `npx ftvm` is bin/ftvm.js). A dig on K answers right through a kill -9 of the primary, the
//     rejoin of A and a kill -9 of B; every PUT the kv client saw acknowledged survives a kill -9.
// Needs root for `ip netns`: without it this test fails, saying why.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkHistory } from '../runtime/faults/checker.js';
import { readOutputLog } from '../runtime/faults/output-log.js';
import { startHostC } from './helpers/host-c.js';
import { buildLan } from './helpers/netns-lan.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin/ftvm.js');
const tag = String(process.pid % 100000);
const NS = { a: `ftvm-a-${tag}`, b: `ftvm-b-${tag}`, c: `ftvm-c-${tag}`, k: `ftvm-k-${tag}`, lan: `ftvm-l-${tag}` };
const ADDR = { c: '192.168.1.10', a: '192.168.1.11', b: '192.168.1.12', k: '192.168.1.100', service: '192.168.1.53' };

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (fn: () => unknown): void => {
  try {
    fn();
  } catch {
    // Cleanup of what may not exist.
  }
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// --- README.md's section, the commands this test runs ---
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const at = readme.indexOf('## Protect a name server on two hosts');
const section = readme.slice(at, readme.indexOf('\n## ', at + 5));
const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, ''));
const block = (has: string): string => {
  const b = blocks.find((x) => x.includes(has));
  if (b === undefined) throw new Error(`README's two-host section has no block with '${has}'`);
  return b;
};

let dir: string;
/** The README's host paths, moved into this test's directory. */
const local = (text: string): string =>
  text.replaceAll('/usr/local/sbin/', `${dir}/sbin/`).replaceAll('/etc/', `${dir}/etc/`).replaceAll('/srv/ftvm', `${dir}/srv`);
/** A README command line starting with `start`, as argv (with node bin/ftvm.js for npx ftvm). */
const readmeCommand = (start: string): string[] => {
  const line = block(start).split('\n').find((l) => l.startsWith(start));
  if (line === undefined) throw new Error(`README has no command '${start}'`);
  const words = local(line.replace(/#.*$/, '')).trim().split(/\s+/);
  expect(words.slice(0, 2)).toEqual(['npx', 'ftvm']);
  return [process.execPath, cli, ...words.slice(2)];
};
/** The README's kv variant of a dns command, by the substitutions its kv paragraph names. */
const KV_SWAPS: [string, string][] = [['guests/dns/dns.elf', 'guests/kv/kv.elf'], ['nbd://192.168.1.10:10809/zone', 'nbd://192.168.1.10:10809/kv'],
  ['udp:192.168.1.53:53:53', 'udp:192.168.1.53:7000:7000'], [':7400', ':7401']];
const kvOf = (argv: string[]): string[] => argv.map((a) => KV_SWAPS.reduce((s, [from, to]) => s.replace(from, to), a));

interface Node { child: ChildProcess; log: string[]; exit: Promise<string>; text(): string }
const nodes: Node[] = [];
function inNs(ns: string, argv: string[]): Node {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  child.stdout!.on('data', () => undefined);
  child.stderr!.on('data', (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean)));
  const exit = new Promise<string>((r) => child.once('exit', (c, s) => r(String(c ?? s))));
  const node = { child, log, exit, text: () => log.join('\n') };
  nodes.push(node);
  return node;
}

const until = async (pred: () => boolean, ms: number, what: () => string): Promise<void> => {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what()}`);
    await sleep(20);
  }
};
const waitLine = async (n: Node, re: RegExp, ms = 20_000): Promise<RegExpExecArray> => {
  let m: RegExpExecArray | null = null;
  await until(() => (m = n.log.map((l) => re.exec(l)).find((x) => x) ?? null) !== null, ms, () => `${re} in:\n${n.text()}`);
  return m!;
};
const hasService = (ns: string): boolean => ip('-n', ns, 'addr', 'show', 'dev', 'eth0').includes(`${ADDR.service}/24`);

let etcd: ChildProcess | undefined;
let nbdPid: number | undefined;

beforeAll(async () => {
  try {
    buildLan(NS.lan, (['a', 'b', 'c', 'k'] as const).map((h) => [NS[h], ADDR[h]] as const));
  } catch (e) {
    throw new Error(`this test needs network namespaces (root and iproute2): 'ip netns add' failed: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
  }
  dir = mkdtempSync(join(tmpdir(), 'ftvm-netns-'));
  for (const d of ['sbin', 'etc/nbd-server', 'etc/default', 'etc/sysctl.d', 'srv']) mkdirSync(join(dir, d), { recursive: true });

  // Host C, as the README sets it up (the packages are there; nbd-server and etcd run as this
  // test's children, not as system services).
  const hostC = block('nbd-server').split('\n').filter((l) => !/^(apt-get|systemctl) /.test(l)).join('\n');
  execFileSync('sh', ['-e', '-c', local(hostC)], { cwd: root });
  const nbdConf = join(dir, 'etc/nbd-server/config');
  expect(readFileSync(nbdConf, 'utf8')).toContain(`listenaddr = ${ADDR.c}`);
  const c = await startHostC(NS.c, dir);
  nbdPid = c.nbdPid;
  etcd = c.etcd;
  expect(c.etcdEnv.ETCD_LISTEN_CLIENT_URLS).toBe(`http://${ADDR.c}:2379`);

  // Hosts A and B: the sysctl in each (a namespace's own), then the key, ftvm-garp and the
  // hook (one file system serves both "hosts").
  const hostsAB = block('ftvm-on-live <<').split('\n');
  for (const ns of [NS.a, NS.b]) execFileSync('ip', ['netns', 'exec', ns, 'sh', '-e', '-c', hostsAB.filter((l) => l.startsWith('sysctl ')).join('\n')]);
  execFileSync('sh', ['-e', '-c', local(hostsAB.filter((l) => !l.startsWith('sysctl ')).join('\n'))], { cwd: root });
}, 60_000);

afterAll(async () => {
  for (const n of nodes) quiet(() => n.child.kill('SIGKILL'));
  quiet(() => etcd?.kill('SIGKILL'));
  if (nbdPid) quiet(() => process.kill(nbdPid!, 'SIGKILL'));
  // Whatever else runs in these namespaces is this test's (nbd-server's children, hook watchers).
  for (const ns of [NS.a, NS.b, NS.c, NS.k, NS.lan]) {
    quiet(() => {
      for (const pid of ip('netns', 'pids', ns).split('\n').filter(Boolean)) quiet(() => process.kill(Number(pid), 'SIGKILL'));
    });
    quiet(() => ip('netns', 'del', ns));
  }
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The arbiter's claims for a pair, read on host C (the arbiter is reachable only there). */
function claimsOf(pairId: string): Map<number, string> {
  const script = `import { EtcdArbiter } from ${JSON.stringify(join(root, 'dist/runtime/arbiter/etcd.js'))};
    const a = new EtcdArbiter({ endpoints: ['${ADDR.c}:2379'] });
    console.log(JSON.stringify([...(await a.claims(${JSON.stringify(pairId)}))])); await a.close(); process.exit(0);`;
  const r = spawnSync('ip', ['netns', 'exec', NS.c, process.execPath, '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
  if (r.status !== 0) throw new Error(`claims: ${r.stderr}`);
  return new Map(JSON.parse(r.stdout) as [number, string][]);
}

describe('a pair on two hosts (network namespaces)', () => {
  it('fails over to the backup when the primary host is lost', async () => {
    const seq = join(root, 'guests/seq/seq.elf');
    const common = ['--key-file', join(dir, 'etc/ftvm.key'), '--arbiter', `etcd:${ADDR.c}:2379`, '--pair-id', `netns${tag}`,
      // Generous suspicion: this test is about losing a host, not about timing under load.
      '--suspect-ms', '1000'];
    const primary = inNs(NS.a, [process.execPath, cli, 'primary', seq, '--listen', `${ADDR.a}:7500`, '--outputs', join(dir, 'p.jsonl'), ...common]);
    await waitLine(primary, /primary listening/);
    const backup = inNs(NS.b, [process.execPath, cli, 'backup', seq, '--connect', `${ADDR.a}:7500`, '--outputs', join(dir, 'b.jsonl'), ...common]);
    await waitLine(primary, /backup attached/);
    // Let the pair run protected for a while, then lose host A: link first (silence, no FIN).
    await until(() => readOutputLog(join(dir, 'p.jsonl')).length > 1000, 30_000, () => 'outputs from the primary');
    ip('-n', NS.a, 'link', 'set', 'eth0', 'down');
    for (const pid of ip('netns', 'pids', NS.a).split('\n').filter(Boolean)) quiet(() => process.kill(Number(pid), 'SIGKILL'));

    expect(await backup.exit, `backup:\n${backup.text()}\nprimary:\n${primary.text()}`).toBe('0');
    await primary.exit;
    expect(backup.text()).toMatch(/backup state "live"|live at icount/);
    const claims = claimsOf(`netns${tag}`);
    expect(claims).toEqual(new Map([[1, 'backup']]));
    const check = checkHistory([...readOutputLog(join(dir, 'p.jsonl')), ...readOutputLog(join(dir, 'b.jsonl'))], claims);
    expect(check.errors).toEqual([]);
    expect(check.lines).toBe(2000);
    expect(check.lost).toBe(0);
    ip('-n', NS.a, 'link', 'set', 'eth0', 'up');
  }, 60_000);

  it('README: dig on a third host gets every answer right through a kill -9 of A, the rejoin of A and a kill -9 of B', async () => {
    // The client: dig with its own retries (one second each), one query after another; each
    // dig must be answered, and right.
    const want: Record<string, string> = { 'www.example.test': '192.0.2.80 192.0.2.81', 'ns2.example.test': '192.0.2.54' };
    const answers: { name: string; got: string; at: number }[] = [];
    const dig = (name: string): Promise<string> => new Promise((resolve) => {
      const c = spawn('ip', ['netns', 'exec', NS.k, 'dig', `@${ADDR.service}`, name, '+short', '+time=1', '+tries=5'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('exit', () => resolve(out.split('\n').filter((l) => l !== '' && !l.startsWith(';')).sort().join(' ')));
    });
    let digging = false;
    let client: Promise<void> = Promise.resolve();
    const startDigging = (): void => {
      digging = true;
      client = (async () => {
        for (let i = 0; digging; i++) {
          const name = i % 2 === 0 ? 'www.example.test' : 'ns2.example.test';
          answers.push({ name, got: await dig(name), at: Date.now() });
        }
      })();
    };
    const moreAnswers = async (n: number, what: () => string): Promise<void> => {
      const from = answers.length;
      await until(() => answers.length >= from + n, 30_000, what);
    };

    const a = inNs(NS.a, readmeCommand('npx ftvm primary'));
    const aPid = Number((await waitLine(a, /primary listening 192\.168\.1\.11:7400 pair \S+ pid (\d+)/))[1]);
    // `ip netns exec` execs the command: the pid the line names is the node's.
    expect(aPid).toBe(a.child.pid);
    expect(a.text()).toMatch(/on-live start: hook exited 0/);
    expect(hasService(NS.a)).toBe(true);
    const b = inNs(NS.b, readmeCommand('npx ftvm backup guests/dns/dns.elf --connect'));
    await waitLine(a, /primary backup attached from 192\.168\.1\.12:\d+/);
    startDigging();
    await moreAnswers(4, () => `answers from A:\n${a.text()}`);

    // kill -9 of A's node (its host stays up): B takes over; A's hook watcher gives the address up.
    process.kill(aPid, 'SIGKILL');
    const killedA = Date.now();
    expect(await a.exit).toBe('SIGKILL');
    await moreAnswers(4, () => `answers from B:\n${b.text()}`);
    await waitLine(b, /on-live go-live: hook exited 0/);
    await waitLine(b, /backup took over disk nbd:\/\/192\.168\.1\.10:10809\/zone and the service ports/);
    await until(() => !hasService(NS.a), 5000, () => 'the address to leave host A');
    expect(hasService(NS.b)).toBe(true);

    // A comes back as the README says: it joins the live B and listens for the next backup.
    const a2 = inNs(NS.a, readmeCommand('npx ftvm backup guests/dns/dns.elf --join'));
    await waitLine(b, /re-protected: join to protected/);
    await waitLine(a2, /backup joined 192\.168\.1\.12:7400 pair \S+ as \S+, generation 2 pid \d+/);
    await moreAnswers(2, () => `answers from B, protected again:\n${b.text()}`);

    // A second failover: kill -9 of B's node. A goes live, takes the disk and the address.
    const bPid = Number((await waitLine(b, /backup connected to 192\.168\.1\.11:7400 pair \S+ pid (\d+)/))[1]);
    expect(bPid).toBe(b.child.pid);
    process.kill(bPid, 'SIGKILL');
    const killedB = Date.now();
    expect(await b.exit).toBe('SIGKILL');
    await moreAnswers(4, () => `answers from A again:\n${a2.text()}`);
    await waitLine(a2, /on-live go-live: hook exited 0/);
    await waitLine(a2, /backup listening 192\.168\.1\.11:7400/);
    await until(() => !hasService(NS.b), 5000, () => 'the address to leave host B');
    expect(hasService(NS.a)).toBe(true);
    digging = false;
    await client;
    const t0 = answers[0]!.at;
    expect(answers.filter((x) => x.got !== want[x.name]), `kills at ${killedA - t0}, ${killedB - t0} ms; answers ${answers.map((x) => `${x.at - t0}${x.got === '' ? '!' : ''}`).join(' ')}\nA:\n${a.text()}\nB:\n${b.text()}\nA again:\n${a2.text()}`).toEqual([]);
    if (process.env.FTVM_SVC_MEASURE) {
      const gaps = answers.slice(1).map((x, i) => x.at - answers[i]!.at);
      console.log(`digs ${answers.length}, longest gap ${Math.max(...gaps)} ms`);
    }

    // SIGTERM to the live node: a clean stop, the disk flushed, exit 0, the address given up.
    a2.child.kill('SIGTERM');
    expect(await a2.exit, a2.text()).toBe('0');
    expect(a2.text()).toMatch(/disk nbd:\/\/192\.168\.1\.10:10809\/zone flushed/);
    await until(() => !hasService(NS.a), 5000, () => 'the address to leave host A after SIGTERM');
  }, 90_000);

  it('README: the kv guest keeps every acknowledged PUT through a kill -9 of the primary', async () => {
    expect(section).toContain('`guests/kv/kv.elf`, `--disk nbd://192.168.1.10:10809/kv` and `--net udp:192.168.1.53:7000:7000`');
    const clientLine = (op: string): string[] => {
      const line = block('scripts/kv.mjs').split('\n').find((l) => l.startsWith('node scripts/kv.mjs') && l.includes(` ${op} `));
      if (line === undefined) throw new Error(`README has no kv client '${op}' line`);
      return line.replace(/#.*$/, '').trim().split(/\s+/).map((w) => (w === 'node' ? process.execPath : w));
    };
    const puts = clientLine('puts');
    const n = Number(puts[puts.length - 1]);
    expect(n).toBeGreaterThanOrEqual(100);

    const a = inNs(NS.a, kvOf(readmeCommand('npx ftvm primary')));
    const aPid = Number((await waitLine(a, /primary listening 192\.168\.1\.11:7401 pair \S+ pid (\d+)/))[1]);
    const b = inNs(NS.b, kvOf(readmeCommand('npx ftvm backup guests/dns/dns.elf --connect')));
    await waitLine(a, /primary backup attached/);

    const writer = inNs(NS.k, puts);
    let ackedLines = 0;
    writer.child.stdout!.on('data', (d: Buffer) => (ackedLines += d.toString().split('\n').filter((l) => l.startsWith('acked ')).length));
    await until(() => ackedLines >= n / 4, 30_000, () => `PUTs acknowledged by A:\n${a.text()}\n${writer.text()}`);
    process.kill(aPid, 'SIGKILL');
    expect(await writer.exit, `${writer.text()}\n${b.text()}`).toBe('0');
    expect(ackedLines).toBe(n);
    await waitLine(b, /backup took over disk nbd:\/\/192\.168\.1\.10:10809\/kv and the service ports/);

    // Every acknowledged PUT is there, read back through the new primary.
    const checker = inNs(NS.k, clientLine('check'));
    let report = '';
    checker.child.stdout!.on('data', (d: Buffer) => (report += d.toString()));
    expect(await checker.exit, report).toBe('0');
    expect(report).toContain(`${n} of ${n} right`);

    b.child.kill('SIGTERM');
    expect(await b.exit, b.text()).toBe('0');
    expect(b.text()).toMatch(/disk nbd:\/\/192\.168\.1\.10:10809\/kv flushed/);
  }, 60_000);
});
