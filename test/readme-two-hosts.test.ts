// README "Protect a name server on two hosts", the name server and the kv store beside each other,
// as the README's commands say, in network namespaces: A (192.168.1.11) and B (.12) for the
// replicas, C (.10) for nbd-server and etcd, K (.100) for the clients, on a bridge of their own
// (test/netns-two-hosts.test.ts runs the name server alone and the kv store alone).
// Every command comes from README.md (only /etc, /srv and /usr/local/sbin move into a temp dir,
// and `npx ftvm` is bin/ftvm.js). Two pairs on the same two hosts fail over one at a time: a
// kill -9 of the kv primary must leave the name server answering from A (with one service
// address for both, A's kv hook gave the name server's address up and B's took it, where the
// name server was only a backup: every dig was refused), and every acknowledged PUT survives,
// applied once; then a kill -9 of the name server's primary moves its own address alone.
// Needs root for `ip netns`: skipped, saying why, where namespaces cannot be made.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHostC } from './helpers/host-c.js';
import { buildLan } from './helpers/netns-lan.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin/ftvm.js');
const tag = String(process.pid % 100000);
const NS = { a: `ftvm-ra-${tag}`, b: `ftvm-rb-${tag}`, c: `ftvm-rc-${tag}`, k: `ftvm-rk-${tag}`, lan: `ftvm-rl-${tag}` };
const HOST = { c: '192.168.1.10', a: '192.168.1.11', b: '192.168.1.12', k: '192.168.1.100' };

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (fn: () => unknown): void => {
  try {
    fn();
  } catch {
    // Cleanup of what may not exist.
  }
};
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Whether this host can make network namespaces (root and iproute2); the test is skipped if not. */
const netnsProbe = spawnSync('ip', ['netns', 'add', `ftvm-rp-${tag}`], { encoding: 'utf8' });
const netnsReason = netnsProbe.status === 0 ? '' : `'ip netns add' failed: ${(netnsProbe.stderr ?? String(netnsProbe.error)).trim()}`;
if (netnsProbe.status === 0) spawnSync('ip', ['netns', 'del', `ftvm-rp-${tag}`]);

// --- README.md's section: its shell blocks, continuation lines joined ---
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const at = readme.indexOf('## Protect a name server on two hosts');
const section = readme.slice(at, readme.indexOf('\n## ', at + 5));
const blocks = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!.replace(/\\\n\s*/g, ''));
const lines = blocks.flatMap((b) => b.split('\n'));
const block = (has: string): string => {
  const b = blocks.find((x) => x.includes(has));
  if (b === undefined) throw new Error(`README's two-host section has no block with '${has}'`);
  return b;
};
const line = (start: string): string => {
  const l = lines.find((x) => x.startsWith(start));
  if (l === undefined) throw new Error(`README's two-host section has no command '${start}'`);
  return l.replace(/#.*$/, '').trim();
};

/** The service address a README command forwards (`--net udp:ADDR:PORT:PORT`). */
const serviceAddr = (start: string): string => {
  const m = /--net udp:([\d.]+):\d+:\d+/.exec(line(start));
  if (m === null) throw new Error(`README's '${start}' forwards no service address`);
  return m[1]!;
};
const DNS_ADDR = serviceAddr('npx ftvm primary guests/dns/dns.elf');
const KV_ADDR = serviceAddr('npx ftvm primary guests/kv/kv.elf');

let dir: string;
/** The README's host paths, moved into this test's directory. */
const local = (text: string): string =>
  text.replaceAll('/usr/local/sbin/', `${dir}/sbin/`).replaceAll('/etc/', `${dir}/etc/`).replaceAll('/srv/ftvm', `${dir}/srv`);
/** A README `npx ftvm …` command as argv (node bin/ftvm.js for npx ftvm). */
const ftvmArgv = (start: string): string[] => {
  const words = local(line(start)).split(/\s+/);
  expect(words.slice(0, 2)).toEqual(['npx', 'ftvm']);
  return [process.execPath, cli, ...words.slice(2)];
};

interface Node { child: ChildProcess; log: string[]; out: string[]; exit: Promise<string>; text(): string }
const nodes: Node[] = [];
function inNs(ns: string, argv: string[]): Node {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  const log: string[] = [];
  const out: string[] = [];
  child.stdout!.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)));
  child.stderr!.on('data', (d: Buffer) => log.push(...d.toString().split('\n').filter(Boolean)));
  const exit = new Promise<string>((r) => child.once('exit', (c, s) => r(String(c ?? s))));
  const node = { child, log, out, exit, text: () => log.join('\n') };
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
const holds = (ns: string, addr: string): boolean => ip('-n', ns, 'addr', 'show', 'dev', 'eth0').includes(`${addr}/24`);

/** The kv guest's write-ahead log on its disk: one record per sector (guests/kv/PROTOCOL.md). */
function walRecords(image: string): { records: number; twice: number } {
  const img = readFileSync(image);
  const seen = new Map<string, number>();
  let records = 0;
  for (let s = 0; (s + 1) * 512 <= img.length; s++) {
    const r = img.subarray(s * 512, s * 512 + 512);
    if (r.readUInt32BE(0) !== 0x4b565731 || r.readUInt32BE(4) !== s) break;
    const id = `${r.readUInt32BE(8)}/${r.readUInt32BE(12)}`;
    seen.set(id, (seen.get(id) ?? 0) + 1);
    records++;
  }
  return { records, twice: [...seen.values()].filter((c) => c > 1).length };
}

let etcd: ChildProcess | undefined;
let nbdPid: number | undefined;

describe.skipIf(netnsReason !== '')(`README: the name server and the kv store beside each other on two hosts${netnsReason ? ` (skipped: ${netnsReason})` : ''}`, () => {
  beforeAll(async () => {
    buildLan(NS.lan, (['a', 'b', 'c', 'k'] as const).map((h) => [NS[h], HOST[h]] as const));
    dir = mkdtempSync(join(tmpdir(), 'ftvm-readme2h-'));
    for (const d of ['sbin', 'etc/nbd-server', 'etc/default', 'etc/sysctl.d', 'srv']) mkdirSync(join(dir, d), { recursive: true });

    // Host C as the README sets it up; nbd-server and etcd run as this test's children.
    const hostC = block('nbd-server').split('\n').filter((l) => !/^(apt-get|systemctl) /.test(l)).join('\n');
    execFileSync('sh', ['-e', '-c', local(hostC)], { cwd: root });
    const c = await startHostC(NS.c, dir);
    nbdPid = c.nbdPid;
    etcd = c.etcd;

    // Hosts A and B: the sysctl in each, then the key, ftvm-garp, the hook, and the kv pair's
    // own hook (one file system serves both hosts).
    const hostsAB = block('ftvm-on-live <<').split('\n');
    for (const ns of [NS.a, NS.b]) execFileSync('ip', ['netns', 'exec', ns, 'sh', '-e', '-c', hostsAB.filter((l) => l.startsWith('sysctl ')).join('\n')]);
    execFileSync('sh', ['-e', '-c', local(hostsAB.filter((l) => !l.startsWith('sysctl ')).join('\n'))], { cwd: root });
    execFileSync('sh', ['-e', '-c', local(block('> /usr/local/sbin/ftvm-on-live-kv'))], { cwd: root });
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

  it('a kill -9 of the kv primary leaves the name server answering; every acknowledged PUT survives, once; then the name server fails over alone', async () => {
    // The README's commands: the name server's pair, and the kv pair beside it.
    const dnsA = inNs(NS.a, ftvmArgv('npx ftvm primary guests/dns/dns.elf'));
    const kvA = inNs(NS.a, ftvmArgv('npx ftvm primary guests/kv/kv.elf'));
    const dnsAPid = Number((await waitLine(dnsA, /primary listening 192\.168\.1\.11:7400 pair \S+ pid (\d+)/))[1]);
    const kvAPid = Number((await waitLine(kvA, /primary listening 192\.168\.1\.11:7401 pair \S+ pid (\d+)/))[1]);
    const dnsB = inNs(NS.b, ftvmArgv('npx ftvm backup guests/dns/dns.elf --connect'));
    const kvB = inNs(NS.b, ftvmArgv('npx ftvm backup guests/kv/kv.elf --connect'));
    await waitLine(dnsA, /primary backup attached from 192\.168\.1\.12:/);
    await waitLine(kvA, /primary backup attached from 192\.168\.1\.12:/);
    expect(holds(NS.a, DNS_ADDR) && holds(NS.a, KV_ADDR)).toBe(true);

    // The name server's client: dig with its retries (one second each), one query after another.
    const want: Record<string, string> = { 'www.example.test': '192.0.2.80 192.0.2.81', 'ns2.example.test': '192.0.2.54' };
    const answers: { name: string; got: string; at: number }[] = [];
    const dig = (name: string): Promise<string> => new Promise((resolve) => {
      const c = spawn('ip', ['netns', 'exec', NS.k, 'dig', `@${DNS_ADDR}`, name, '+short', '+time=1', '+tries=5'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('exit', () => resolve(out.split('\n').filter((l) => l !== '' && !l.startsWith(';')).sort().join(' ')));
    });
    let digging = true;
    const client = (async () => {
      for (let i = 0; digging; i++) {
        const name = i % 2 === 0 ? 'www.example.test' : 'ns2.example.test';
        answers.push({ name, got: await dig(name), at: Date.now() });
      }
    })();
    const moreAnswers = async (n: number, what: () => string): Promise<void> => {
      const from = answers.length;
      await until(() => answers.length >= from + n, 30_000, what);
    };
    await moreAnswers(2, () => `answers from A:\n${dnsA.text()}`);

    // The kv client, as README's kv line gives it, at the kv pair's address.
    const puts = line(`node scripts/kv.mjs ${KV_ADDR}:7000 puts`).split(/\s+/).map((w) => (w === 'node' ? process.execPath : w));
    const n = Number(puts[puts.length - 1]);
    const writer = inNs(NS.k, puts);
    await until(() => writer.out.length >= n / 4, 30_000, () => `PUTs acknowledged by A:\n${kvA.text()}\n${writer.text()}`);
    const digsBefore = answers.length;
    process.kill(kvAPid, 'SIGKILL');
    expect(await kvA.exit).toBe('SIGKILL');
    expect(await writer.exit, `${writer.text()}\n${kvB.text()}`).toBe('0');
    expect(writer.out.filter((l) => l.startsWith('acked '))).toHaveLength(n);
    await waitLine(kvB, /on-live go-live: hook exited 0/);
    // The kv address moved to B; the name server's stayed on A, which answers on.
    await until(() => !holds(NS.a, KV_ADDR), 5000, () => 'the kv address to leave host A');
    expect(holds(NS.b, KV_ADDR)).toBe(true);
    await moreAnswers(2, () => `answers after the kv takeover:\n${dnsA.text()}`);
    expect(holds(NS.a, DNS_ADDR), 'the name server address left A with the kv pair').toBe(true);
    expect(holds(NS.b, DNS_ADDR)).toBe(false);
    expect(answers.length).toBeGreaterThan(digsBefore);

    // The mistake README warns of: host A's kv node started again as a primary (not a joining
    // backup) while B serves. Its hook's ARP probe finds the address at B: it stops before it
    // runs anything, and the address stays with B.
    const again = inNs(NS.a, ftvmArgv('npx ftvm primary guests/kv/kv.elf'));
    const ended = await Promise.race([again.exit, sleep(15_000).then(() => 'still running')]);
    expect(ended, `the second primary on A (holding the kv address: ${holds(NS.a, KV_ADDR)}):\n${again.text()}`).toBe('0');
    expect(again.text()).toMatch(new RegExp(`ftvm-garp: ${KV_ADDR.replaceAll('.', '\\.')} is in use on eth0 by `));
    expect(again.text()).toMatch(/^ftvm: on-live start: hook failed \(exit 1\) after \d+ ms; the node stops \(SIGTERM\)$/m);
    expect(again.text()).toMatch(/primary stopped by SIGTERM while starting: the guest never ran/);
    expect(holds(NS.a, KV_ADDR)).toBe(false);
    expect(holds(NS.b, KV_ADDR)).toBe(true);

    // The name server's primary next: its address alone moves to B.
    process.kill(dnsAPid, 'SIGKILL');
    expect(await dnsA.exit).toBe('SIGKILL');
    await waitLine(dnsB, /backup took over disk nbd:\/\/192\.168\.1\.10:10809\/zone and the service ports/);
    await moreAnswers(3, () => `answers from B:\n${dnsB.text()}`);
    await until(() => !holds(NS.a, DNS_ADDR), 5000, () => 'the name server address to leave host A');
    expect(holds(NS.b, DNS_ADDR)).toBe(true);
    digging = false;
    await client;
    expect(answers.filter((x) => x.got !== want[x.name]), `answers ${answers.map((x) => `${x.name}=${x.got || '(none)'}`).join(', ')}\nA:\n${dnsA.text()}\nB:\n${dnsB.text()}`).toEqual([]);

    // Every acknowledged PUT reads back through B; the disk has each PUT once.
    const checker = inNs(NS.k, puts.map((w) => (w === 'puts' ? 'check' : w)));
    expect(await checker.exit, checker.out.join('\n')).toBe('0');
    expect(checker.out.join('\n')).toContain(`${n} of ${n} right`);

    // Stop both live nodes (no backups left): clean, the disks flushed, the addresses given up.
    dnsB.child.kill('SIGTERM');
    kvB.child.kill('SIGTERM');
    expect(await dnsB.exit, dnsB.text()).toBe('0');
    expect(await kvB.exit, kvB.text()).toBe('0');
    expect(kvB.text()).toMatch(/disk nbd:\/\/192\.168\.1\.10:10809\/kv flushed/);
    expect(walRecords(join(dir, 'srv/kv.img'))).toEqual({ records: n, twice: 0 });
    await until(() => !holds(NS.b, DNS_ADDR) && !holds(NS.b, KV_ADDR), 5000, () => 'the addresses to leave host B');
  }, 90_000);
});

// The README hook's way to refuse a start (no namespaces needed): it stops its own node, whose
// pid it has in FTVM_PID, and fails. The node says it stops, not that it serves on.
describe('a start hook that stops its primary', () => {
  it('is one ftvm: line saying the node stops; the primary stops before its guest runs, exit 0', () => {
    const d = mkdtempSync(join(tmpdir(), 'ftvm-readme2h-hook-'));
    try {
      writeFileSync(join(d, 'key'), 'a5'.repeat(16));
      mkdirSync(join(d, 'arbiter'));
      const r = spawnSync(process.execPath, [cli, 'primary', join(root, 'guests/dns/dns.elf'), '--listen', '127.0.0.1:0', '--key-file', join(d, 'key'),
        '--arbiter', `file:${join(d, 'arbiter')}`, '--net', 'udp:127.0.0.1:0:53', '--on-live', 'echo "address in use elsewhere" >&2; kill "$FTVM_PID"; exit 1'],
      { cwd: root, encoding: 'utf8', timeout: 30_000 });
      expect(r.status, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/^on-live\| address in use elsewhere$/m);
      expect(r.stderr.split('\n').filter((l) => l.startsWith('ftvm:'))).toEqual([expect.stringMatching(/^ftvm: on-live start: hook failed \(exit 1\) after \d+ ms; the node stops \(SIGTERM\)$/)]);
      expect(r.stderr).toMatch(/primary stopped by SIGTERM while starting: the guest never ran/);
      expect(r.stderr).not.toMatch(/primary listening|forwarding/);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  }, 40_000);
});
