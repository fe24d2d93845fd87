// Two "hosts": the primary and the backup in two network namespaces joined by veth pairs on
// a bridge; etcd outside both, on the bridge's address. The primary's host is lost (its link
// goes down, so no FIN reaches the backup, then its processes are killed); the backup must
// notice the silence, win the arbiter over the network and finish the guest's output.
// A third namespace holds clients of a name server the pair serves on a service address that
// the --on-live hook moves from host A to host B (ip addr and a gratuitous ARP, as keepalived).
// Needs root for `ip netns`: without it this test fails, saying why.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EtcdArbiter } from '../runtime/arbiter/etcd.js';
import { checkHistory } from '../runtime/faults/checker.js';
import { EtcdServer } from '../runtime/faults/etcd-server.js';
import { readOutputLog } from '../runtime/faults/output-log.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin/ftvm.js');
const seq = join(root, 'guests/seq/seq.elf');
const tag = String(process.pid % 100000);
const NS_A = `ftvm-a-${tag}`;
const NS_B = `ftvm-b-${tag}`;
const NS_C = `ftvm-c-${tag}`;
const BR = `ftbr${tag}`;
const VA = `fta${tag}`;
const VB = `ftb${tag}`;
const VC = `ftc${tag}`;
const NET = '10.213.77';
const ADDR = { bridge: `${NET}.254`, a: `${NET}.1`, b: `${NET}.2`, c: `${NET}.3`, service: `${NET}.53` };

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const quiet = (fn: () => unknown): void => {
  try {
    fn();
  } catch {
    // Cleanup of what may not exist.
  }
};

let dir: string;
let etcd: EtcdServer | undefined;
const procs: ChildProcess[] = [];

function inNs(ns: string, args: string[], logs: string[]): ChildProcess {
  const p = spawn('ip', ['netns', 'exec', ns, process.execPath, cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  p.stderr!.on('data', (d: Buffer) => logs.push(...d.toString().split('\n').filter(Boolean)));
  procs.push(p);
  return p;
}

const exitOf = (p: ChildProcess): Promise<string> =>
  new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(String(p.exitCode ?? p.signalCode)) : p.once('exit', (c, s) => r(String(c ?? s)))));

const until = async (pred: () => boolean, ms: number, what: string): Promise<void> => {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

beforeAll(async () => {
  try {
    ip('netns', 'add', NS_A);
  } catch (e) {
    throw new Error(`this test needs network namespaces (root and iproute2): 'ip netns add' failed: ${(e as { stderr?: string }).stderr ?? (e as Error).message}`);
  }
  ip('netns', 'add', NS_B);
  ip('netns', 'add', NS_C);
  ip('link', 'add', BR, 'type', 'bridge');
  ip('addr', 'add', `${ADDR.bridge}/24`, 'dev', BR);
  ip('link', 'set', BR, 'up');
  for (const [ns, veth, addr] of [[NS_A, VA, ADDR.a], [NS_B, VB, ADDR.b], [NS_C, VC, ADDR.c]] as const) {
    ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', `${veth}p`);
    ip('link', 'set', `${veth}p`, 'netns', ns);
    ip('link', 'set', veth, 'master', BR, 'up');
    ip('-n', ns, 'addr', 'add', `${addr}/24`, 'dev', `${veth}p`);
    ip('-n', ns, 'link', 'set', `${veth}p`, 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  dir = mkdtempSync(join(tmpdir(), 'ftvm-netns-'));
  etcd = await EtcdServer.start({ host: ADDR.bridge });
}, 60_000);

afterAll(async () => {
  for (const p of procs) quiet(() => p.kill('SIGKILL'));
  for (const ns of [NS_A, NS_B, NS_C]) {
    quiet(() => {
      const pids = ip('netns', 'pids', ns).split('\n').filter(Boolean);
      for (const pid of pids) quiet(() => process.kill(Number(pid), 'SIGKILL'));
    });
    quiet(() => ip('netns', 'del', ns));
  }
  quiet(() => ip('link', 'del', BR));
  quiet(() => ip('link', 'del', VA));
  quiet(() => ip('link', 'del', VB));
  quiet(() => ip('link', 'del', VC));
  await etcd?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('a pair on two hosts (network namespaces)', () => {
  it('fails over to the backup when the primary host is lost', async () => {
    writeFileSync(join(dir, 'key'), 'c3'.repeat(32));
    const common = ['--key-file', join(dir, 'key'), '--arbiter', `etcd:${etcd!.endpoint}`, '--pair-id', `netns${tag}`,
      // Generous suspicion: this test is about losing a host, not about timing under load.
      '--suspect-ms', '1000'];
    const pLog: string[] = [];
    const bLog: string[] = [];
    const primary = inNs(NS_A, ['primary', seq, '--listen', `${ADDR.a}:7400`, '--outputs', join(dir, 'p.jsonl'), ...common], pLog);
    await until(() => pLog.some((l) => l.includes('listening')), 20_000, 'the primary to listen');
    const backup = inNs(NS_B, ['backup', seq, '--connect', `${ADDR.a}:7400`, '--outputs', join(dir, 'b.jsonl'), ...common], bLog);
    await until(() => pLog.some((l) => l.includes('backup attached')), 20_000, 'the backup to attach');
    // Let the pair run protected for a while, then lose host A: link first (silence, no FIN).
    await until(() => readOutputLog(join(dir, 'p.jsonl')).length > 2000, 30_000, 'outputs from the primary');
    ip('-n', NS_A, 'link', 'set', `${VA}p`, 'down');
    for (const pid of ip('netns', 'pids', NS_A).split('\n').filter(Boolean)) quiet(() => process.kill(Number(pid), 'SIGKILL'));

    const bExit = await exitOf(backup);
    expect(bExit, `backup:\n${bLog.join('\n')}\nprimary:\n${pLog.join('\n')}`).toBe('0');
    await exitOf(primary);
    expect(bLog.join('\n')).toMatch(/backup state "live"|live at icount/);

    const arb = new EtcdArbiter({ endpoints: [etcd!.endpoint] });
    const claims = await arb.claims(`netns${tag}`);
    await arb.close();
    expect(claims).toEqual(new Map([[1, 'backup']]));
    const history = [...readOutputLog(join(dir, 'p.jsonl')), ...readOutputLog(join(dir, 'b.jsonl'))];
    const check = checkHistory(history, claims);
    expect(check.errors).toEqual([]);
    expect(check.lines).toBe(2000);
    expect(check.lost).toBe(0);
  }, 120_000);

  it('moves the name server\'s address from host A to host B: a client on a third host keeps getting answers', async () => {
    // After the first test host A's link is down: bring it back for this pair.
    ip('-n', NS_A, 'link', 'set', `${VA}p`, 'up');
    writeFileSync(join(dir, 'key'), 'c3'.repeat(32));
    // The zone disk is a file on storage both hosts share (here the one file system).
    const disk = join(dir, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    // The hook: take the service address and announce it (a gratuitous ARP, as `arping -U`
    // does; Python's AF_PACKET socket sends it, so no arping is needed here).
    const garp = join(dir, 'garp.py');
    writeFileSync(garp, [
      'import socket, struct, sys',
      'ifname, ip = sys.argv[1], socket.inet_aton(sys.argv[2])',
      's = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)',
      's.bind((ifname, 0))',
      'mac = s.getsockname()[4]',
      "arp = struct.pack('!HHBBH6s4s6s4s', 1, 0x0800, 6, 4, 1, mac, ip, b'\\0' * 6, ip)",
      "for _ in range(2): s.send(b'\\xff' * 6 + mac + b'\\x08\\x06' + arp)",
      '',
    ].join('\n'));
    const hook = (iface: string): string =>
      `ip addr replace ${ADDR.service}/24 dev ${iface} && python3 ${garp} ${iface} ${ADDR.service} && echo "$FTVM_ROLE $FTVM_EVENT generation $FTVM_GENERATION has ${ADDR.service}"`;
    const common = ['--key-file', join(dir, 'key'), '--arbiter', `etcd:${etcd!.endpoint}`, '--pair-id', `netnsdns${tag}`, '--suspect-ms', '1000',
      '--disk', `file:${disk}`, '--net', `udp:${ADDR.service}:53:53`];
    const pLog: string[] = [];
    const bLog: string[] = [];
    const primary = inNs(NS_A, ['primary', join(root, 'guests/dns/dns.elf'), '--listen', `${ADDR.a}:7401`, '--on-live', hook(`${VA}p`), ...common], pLog);
    await until(() => pLog.some((l) => l.includes('listening')), 20_000, 'the primary to listen');
    expect(pLog.join('\n')).toMatch(/on-live\| primary start generation 1 has /);
    const backup = inNs(NS_B, ['backup', join(root, 'guests/dns/dns.elf'), '--connect', `${ADDR.a}:7401`, '--on-live', hook(`${VB}p`), ...common], bLog);
    await until(() => pLog.some((l) => l.includes('backup attached')), 20_000, 'the backup to attach');

    // The client on host C: each query is tried (1 s per try) until it is answered.
    const dig = (name: string): Promise<string> => new Promise((resolve) => {
      const c = spawn('ip', ['netns', 'exec', NS_C, 'dig', `@${ADDR.service}`, name, 'A', '+short', '+tries=1', '+time=1'], { stdio: ['ignore', 'pipe', 'ignore'] });
      let out = '';
      c.stdout.on('data', (b: Buffer) => (out += b.toString()));
      c.on('exit', () => resolve(out.split('\n').filter((l) => l !== '' && !l.startsWith(';')).sort().join(' ')));
    });
    const answers: { name: string; got: string; tries: number }[] = [];
    let stop = false;
    const client = (async () => {
      for (let i = 0; !stop; i++) {
        const name = i % 2 === 0 ? 'www.example.test' : 'ns2.example.test';
        let tries = 0;
        let got = '';
        while (got === '' && tries < 30) {
          tries++;
          got = await dig(name);
          if (got === '') await new Promise((r) => setTimeout(r, 100));
        }
        answers.push({ name, got, tries });
      }
    })();
    await until(() => answers.length >= 5, 30_000, 'answers from host A');

    // Lose host A: link first (silence, no FIN), then its processes.
    ip('-n', NS_A, 'link', 'set', `${VA}p`, 'down');
    for (const pid of ip('netns', 'pids', NS_A).split('\n').filter(Boolean)) quiet(() => process.kill(Number(pid), 'SIGKILL'));
    const atLoss = answers.length;
    await until(() => answers.length >= atLoss + 5, 60_000, `answers from host B:\n${bLog.join('\n')}`);
    stop = true;
    await client;
    await exitOf(primary);
    if (process.env.FTVM_SVC_MEASURE) console.log(`queries ${answers.length}, tries ${answers.map((a) => a.tries).join(',')}`);

    const want: Record<string, string> = { 'www.example.test': '192.0.2.80 192.0.2.81', 'ns2.example.test': '192.0.2.54' };
    expect(answers.filter((a) => a.got !== want[a.name]), bLog.join('\n')).toEqual([]);
    const log = bLog.join('\n');
    expect(log).toMatch(/on-live go-live: running/);
    expect(log).toMatch(/on-live\| backup go-live generation 2 has /);
    expect(log).toMatch(/on-live go-live: hook exited 0/);
    expect(log).toMatch(/backup took over disk file:.*zone\.img and the service ports/);
    // The address is on host B now, and only there among the live hosts.
    expect(ip('-n', NS_B, 'addr', 'show', 'dev', `${VB}p`)).toContain(`${ADDR.service}/24`);
    backup.kill('SIGTERM');
    expect(await exitOf(backup)).toBe('0');
  }, 180_000);
});
