// Safe pairs across processes (DESIGN §3 Identity, Membership, Split brain): what operators and
// networks do every day. An extra backup, a backup of another image or memory size, stray
// connections, a rerun on the same arbiter, an unreachable arbiter, SIGTERM. Each is tried on
// real `ftvm primary` / `ftvm backup` processes; the checker reads what the world saw.
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkHistory } from '../runtime/faults/checker.js';
import { readClaimFiles } from '../runtime/faults/harness.js';
import { readOutputLog } from '../runtime/faults/output-log.js';
import { killAll, outputsIn, root, startFtvm, waitOutputs, type Proc } from './helpers/cli-procs.js';

const seq = join(root, 'guests/seq/seq.elf');
const hello = join(root, 'guests/hello/hello.elf');
// Well above the stalls of a loaded machine: a spurious failover would change the scenario.
const SUSPECT_MS = '1000';
const dirs: string[] = [];
afterAll(() => {
  killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh(): { d: string; common: (out: string, opts?: { key?: string; arbiter?: string }) => string[] } {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-member-'));
  dirs.push(d);
  writeFileSync(join(d, 'key'), 'ab'.repeat(32));
  writeFileSync(join(d, 'wrong'), 'cd'.repeat(32));
  mkdirSync(join(d, 'arb'));
  const common = (out: string, opts: { key?: string; arbiter?: string } = {}): string[] => [
    '--key-file', join(d, opts.key ?? 'key'), '--arbiter', opts.arbiter ?? `file:${join(d, 'arb')}`, '--suspect-ms', SUSPECT_MS, '--outputs', join(d, out),
  ];
  return { d, common };
}

async function startPrimary(args: string[]): Promise<{ p: Proc; port: string; instance: string }> {
  const p = startFtvm(['primary', seq, '--listen', '127.0.0.1:0', ...args]);
  const m = await p.waitErr(/primary listening 127\.0\.0\.1:(\d+) pair (\S+)/);
  return { p, port: m[1]!, instance: m[2]! };
}

/** Every output any replica released, checked as one client would see it, against the arbiter's record. */
function verdict(d: string, files: string[], instance?: string) {
  const history = files.flatMap((f) => readOutputLog(join(d, f)));
  return checkHistory(history, instance ? readClaimFiles(join(d, 'arb'), instance) : new Map());
}

describe('membership: only an admitted, synced backup may claim', () => {
  it('refuses an extra backup (right key or wrong key): it exits 5, never claims, never runs the guest', async () => {
    const { d, common } = fresh();
    const { p, port } = await startPrimary(common('p.jsonl'));
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl')]);
    await p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p.jsonl'), 50);

    // Both at once, early: the guest's 2000 lines must outlast two node start-ups on a loaded
    // host (once the primary is gone a backup is refused by the kernel, exit 1, not by it).
    const extra = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, '--name', 'extra', ...common('x.jsonl')]);
    const wrong = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, '--name', 'wrong', ...common('w.jsonl', { key: 'wrong' })]);
    expect(await extra.exit).toBe('5');
    expect(extra.err()).toMatch(/^ftvm: refused: primary 127\.0\.0\.1:\d+ is busy: .*has a backup already/m);
    expect(extra.err()).not.toMatch(/claim|live|usage:/);
    expect(await wrong.exit).toBe('5');
    expect(wrong.err()).toMatch(/^ftvm: refused: primary .* refused the TLS-PSK handshake \(wrong key\?\): [a-z0-9 ]+$/m);
    await p.waitErr(/primary refused backup .*: busy/);
    await p.waitErr(/primary refused .* failed the TLS-PSK handshake/);

    expect(await p.exit).toBe('0');
    expect(await b.exit).toBe('0');
    expect(outputsIn(join(d, 'x.jsonl')) + outputsIn(join(d, 'w.jsonl'))).toBe(0);
    // Nobody claimed anything: the pair was never broken.
    expect(readdirSync(join(d, 'arb')).filter((f) => f.endsWith('.claim'))).toEqual([]);
    const v = verdict(d, ['p.jsonl', 'b.jsonl']);
    expect(v.errors).toEqual([]);
    expect(v.lines).toBe(2000);
  });

  it('refuses a backup of another image or memory size, and one naming another pair; then takes the right one', async () => {
    const { d, common } = fresh();
    const { p, port, instance } = await startPrimary(common('p.jsonl'));
    const cases: Array<[string[], RegExp]> = [
      [[hello], /another guest image: this primary runs image [0-9a-f]{32}, the backup has [0-9a-f]{32}/],
      [[seq, '--mem', '32'], /another memory size: this primary runs 16 MiB, the backup 32 MiB/],
      [[seq, '--pair-id', 'p-someone-else'], /another pair instance/],
    ];
    for (const [args, re] of cases) {
      const b = startFtvm(['backup', ...args, '--connect', `127.0.0.1:${port}`, ...common('x.jsonl')]);
      expect(await b.exit).toBe('5');
      expect(b.err()).toMatch(re);
      await p.waitErr(re);
    }
    // The primary kept waiting: the right backup attaches, names the pair, and it runs to the end.
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, '--pair-id', instance, ...common('b.jsonl')]);
    await b.waitErr(new RegExp(`backup connected to 127\\.0\\.0\\.1:${port} pair ${instance}`));
    expect(await p.exit).toBe('0');
    expect(await b.exit).toBe('0');
    expect(outputsIn(join(d, 'x.jsonl'))).toBe(0);
    expect(verdict(d, ['p.jsonl', 'b.jsonl']).errors).toEqual([]);
  });

  it('a primary waiting for its backup refuses stray connections one at a time and keeps listening', async () => {
    const { d, common } = fresh();
    const { p, port } = await startPrimary(common('p.jsonl'));
    const stray = (bytes: string | Buffer): Promise<void> => new Promise((resolve) => {
      const s = net.connect(Number(port), '127.0.0.1', () => s.end(bytes));
      for (const ev of ['error', 'end', 'close']) s.on(ev, () => resolve());
      setTimeout(() => { s.destroy(); resolve(); }, 2000).unref();
    });
    await stray('GET / HTTP/1.1\r\nHost: ftvm\r\n\r\n');
    await stray(Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]));
    const wrong = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('w.jsonl', { key: 'wrong' })]);
    expect(await wrong.exit).toBe('5');
    await p.waitErr(/(primary refused .*\n.*){3}/);
    expect(p.child.exitCode).toBeNull();
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl')]);
    expect(await p.exit).toBe('0');
    expect(await b.exit).toBe('0');
    expect(verdict(d, ['p.jsonl', 'b.jsonl']).lines).toBe(2000);
  });
});

describe('operator errors before anything runs', () => {
  it('--outputs in a missing directory is refused at start, not after the backup attaches', async () => {
    const { d, common } = fresh();
    const p = startFtvm(['primary', seq, '--listen', '127.0.0.1:0', ...common('nowhere/p.jsonl')]);
    expect(await p.exit).toBe('2');
    expect(p.err()).toMatch(new RegExp(`^ftvm: --outputs ${d}/nowhere/p\\.jsonl: no such directory$`, 'm'));
    expect(p.err()).not.toMatch(/listening/);
  });
});

describe('identity: a pair started again is a new instance', () => {
  it('a rerun with the same key and arbiter is never halted by the earlier run\'s claim', async () => {
    const { d, common } = fresh();
    // Run 1: the primary dies, its backup wins generation 1 and finishes.
    const one = await startPrimary(common('p1.jsonl'));
    const b1 = startFtvm(['backup', seq, '--connect', `127.0.0.1:${one.port}`, ...common('b1.jsonl')]);
    await one.p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p1.jsonl'), 300);
    one.p.child.kill('SIGKILL');
    expect(await b1.exit).toBe('0');
    // Run 2, same key file and arbiter directory: now the backup dies. The primary must win
    // its own generation 1 and finish, not find run 1's claim and halt.
    const two = await startPrimary(common('p2.jsonl'));
    expect(two.instance).not.toBe(one.instance);
    const b2 = startFtvm(['backup', seq, '--connect', `127.0.0.1:${two.port}`, ...common('b2.jsonl')]);
    await two.p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p2.jsonl'), 300);
    b2.child.kill('SIGKILL');
    expect(await two.p.exit).toBe('0');
    const claims = readdirSync(join(d, 'arb')).filter((f) => f.endsWith('.claim')).sort();
    expect(claims).toEqual([`${one.instance}.1.claim`, `${two.instance}.1.claim`].sort());
    expect(verdict(d, ['p2.jsonl'], two.instance).errors).toEqual([]);
  });
});

describe('an unreachable arbiter and a stopped node', () => {
  it('reports which arbiter and why at a bounded rate, releases nothing, and wins once it is back', async () => {
    const { d, common } = fresh();
    const arbDir = join(d, 'later');
    const { p, port } = await startPrimary(common('p.jsonl', { arbiter: `file:${arbDir}` }));
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl', { arbiter: `file:${arbDir}` })]);
    await p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p.jsonl'), 300);
    b.child.kill('SIGKILL');
    await p.waitErr(/arbiter unreachable \(attempt 1\): arbiter .*later: cannot write a claim: ENOENT/);
    const released = outputsIn(join(d, 'p.jsonl'));
    await new Promise((r) => setTimeout(r, 2500));
    // About one line a second while it retries every 50 ms; and not one output meanwhile.
    const reports = p.err().match(/arbiter unreachable/g)!.length;
    expect(reports).toBeGreaterThanOrEqual(2);
    expect(reports).toBeLessThanOrEqual(4);
    expect(outputsIn(join(d, 'p.jsonl'))).toBe(released);
    mkdirSync(arbDir);
    await p.waitErr(/arbiter reachable again after \d+ failed attempts/);
    expect(await p.exit).toBe('0');
    expect(verdict(d, ['p.jsonl']).lines).toBe(2000);
  });

  it('SIGTERM of a node that cannot release its outputs exits 6 and says how many', async () => {
    const { d, common } = fresh();
    const arbDir = join(d, 'missing');
    const { p, port } = await startPrimary(common('p.jsonl', { arbiter: `file:${arbDir}` }));
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl', { arbiter: `file:${arbDir}` })]);
    await p.waitErr(/primary state \{"protected"/);
    // The guest is printing: what it prints after the kill is held by the claim that cannot end.
    await waitOutputs(join(d, 'p.jsonl'), 100);
    b.child.kill('SIGKILL');
    await p.waitErr(/arbiter unreachable/);
    p.child.kill('SIGTERM');
    expect(await p.exit).toBe('6');
    expect(p.err()).toMatch(/^ftvm: primary stopped by SIGTERM with [1-9]\d* outputs? never released$/m);
  });

  it('SIGTERM of the primary: the backup takes over and nothing is lost', async () => {
    const { d, common } = fresh();
    const { p, port, instance } = await startPrimary(common('p.jsonl'));
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl')]);
    await p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p.jsonl'), 500);
    p.child.kill('SIGTERM');
    expect(['0', '6']).toContain(await p.exit);
    expect(p.err()).toMatch(/primary stopped by SIGTERM/);
    expect(await b.exit).toBe('0');
    const v = verdict(d, ['p.jsonl', 'b.jsonl'], instance);
    expect(v.errors).toEqual([]);
    expect(v.lines).toBe(2000);
  });
});
