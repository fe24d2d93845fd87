// The pair across processes: `ftvm primary` and `ftvm backup` as separate processes on
// loopback (through the fault proxy), killed with SIGKILL; the checker reads what the world saw.
// Runs the built CLI (bin/ftvm.js -> dist/), as cli-run.test.ts does.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { runOnce } from '../runtime/faults/harness.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin/ftvm.js');
const seq = join(root, 'guests/seq/seq.elf');
// Suspicion well above the stalls a loaded CI machine causes: these tests are about what
// survives a fault, and a spurious failover before it would change the scenario.
const SUSPECT_MS = 1000;
const dirs: string[] = [];
const fresh = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-proc-'));
  dirs.push(d);
  return d;
};
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('a pair across processes', () => {
  it('survives kill -9 of the primary: the backup goes live and nothing is lost', async () => {
    const r = await runOnce({ id: 1, cli, guest: seq, dir: fresh(), fault: 'kill-primary', atMs: 1200, stalls: [], timeoutMs: 45_000, suspectMs: SUSPECT_MS });
    expect(r.check.errors).toEqual([]);
    expect(r.check.ok).toBe(true);
    expect(r.exit).toEqual({ primary: 'SIGKILL', backup: '0' });
    expect(r.check.lines).toBe(2000);
    expect(r.failovers).toBe(1);
    // The backup won generation 1 and released its outputs in generation 2.
    expect(r.claims).toEqual({ 1: 'backup' });
    expect(r.failoverMs).toBeDefined();
    expect(r.failoverMs!).toBeLessThan(5000);
  });

  it('survives kill -9 of the backup: the primary wins the arbiter and finishes alone', async () => {
    const r = await runOnce({ id: 2, cli, guest: seq, dir: fresh(), fault: 'kill-backup', atMs: 800, stalls: [[300, 50]], timeoutMs: 45_000, suspectMs: SUSPECT_MS });
    expect(r.check.errors).toEqual([]);
    expect(r.exit).toEqual({ primary: '0', backup: 'SIGKILL' });
    expect(r.claims).toEqual({ 1: 'primary' });
    expect(r.check.duplicates).toBe(0);
  });

  it('survives a corrupt byte on the wire: exactly one side goes on', async () => {
    const r = await runOnce({ id: 3, cli, guest: seq, dir: fresh(), fault: 'corrupt', atMs: 700, stalls: [], timeoutMs: 45_000, suspectMs: SUSPECT_MS });
    expect(r.check.errors).toEqual([]);
    expect(Object.keys(r.claims)).toEqual(['1']);
    // The loser halts with exit code 3; the winner finishes the guest.
    expect([r.exit.primary, r.exit.backup].sort()).toEqual(['0', '3']);
  });

  it('refuses a backup with the wrong key; the primary says so and keeps waiting', () => {
    const d = fresh();
    writeFileSync(join(d, 'a'), 'aa'.repeat(32));
    writeFileSync(join(d, 'b'), 'bb'.repeat(32));
    // The primary is started by the shell and the backup points at its port: the backup exits
    // 5 (refused), the primary keeps listening until it is told to stop (exit 0: nothing ran).
    const script = `
      "${process.execPath}" ${cli} primary ${seq} --listen 127.0.0.1:0 --key-file ${d}/a --arbiter file:${d} 2> ${d}/p.err &
      ppid=$!
      for i in $(seq 100); do grep -q listening ${d}/p.err 2>/dev/null && break; sleep 0.05; done
      port=$(sed -n 's/.*listening 127.0.0.1:\\([0-9]*\\).*/\\1/p' ${d}/p.err)
      "${process.execPath}" ${cli} backup ${seq} --connect 127.0.0.1:$port --key-file ${d}/b --arbiter file:${d} 2> ${d}/b.err; b=$?
      sleep 0.3; kill -0 $ppid && alive=yes; kill -TERM $ppid
      wait $ppid; p=$?
      echo "$p $b $alive"; cat ${d}/p.err ${d}/b.err`;
    const r = spawnSync('bash', ['-c', script], { encoding: 'utf8', timeout: 30_000 });
    const [codes, ...rest] = r.stdout.split('\n');
    expect(codes).toBe('0 5 yes');
    const text = rest.join('\n');
    expect(text).toMatch(/primary refused .* failed the TLS-PSK handshake \(a wrong key/);
    expect(text).toMatch(/primary stopped before a backup attached/);
    expect(text).toMatch(/^ftvm: refused: primary .* refused the TLS-PSK handshake \(wrong key\?\)/m);
  });

  it('`ftvm pair` runs both replicas as processes and prints the guest output once', () => {
    const r = spawnSync(process.execPath, [cli, 'pair', join(root, 'guests/seq-short/seq-short.elf')], { encoding: 'utf8', timeout: 60_000 });
    expect(r.status).toBe(0);
    // Exactly what the guest prints on QEMU (guests/seq-short/expected.txt), once.
    expect(r.stdout).toBe(readFileSync(join(root, 'guests/seq-short/expected.txt'), 'utf8'));
    expect(r.stderr).toMatch(/^primary\| .* primary state \{"protected":"flowing"\}$/m);
    expect(r.stderr).toMatch(/^backup\| .* backup state "replaying"$/m);
  });
});
