// Two "hosts": the primary and the backup in two network namespaces joined by veth pairs on
// a bridge; etcd outside both, on the bridge's address. The primary's host is lost (its link
// goes down, so no FIN reaches the backup, then its processes are killed); the backup must
// notice the silence, win the arbiter over the network and finish the guest's output.
// Needs root for `ip netns`: without it this test fails, saying why.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
const BR = `ftbr${tag}`;
const VA = `fta${tag}`;
const VB = `ftb${tag}`;
const NET = '10.213.77';
const ADDR = { bridge: `${NET}.254`, a: `${NET}.1`, b: `${NET}.2` };

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
  ip('link', 'add', BR, 'type', 'bridge');
  ip('addr', 'add', `${ADDR.bridge}/24`, 'dev', BR);
  ip('link', 'set', BR, 'up');
  for (const [ns, veth, addr] of [[NS_A, VA, ADDR.a], [NS_B, VB, ADDR.b]] as const) {
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
  for (const ns of [NS_A, NS_B]) {
    quiet(() => {
      const pids = ip('netns', 'pids', ns).split('\n').filter(Boolean);
      for (const pid of pids) quiet(() => process.kill(Number(pid), 'SIGKILL'));
    });
    quiet(() => ip('netns', 'del', ns));
  }
  quiet(() => ip('link', 'del', BR));
  quiet(() => ip('link', 'del', VA));
  quiet(() => ip('link', 'del', VB));
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
});
