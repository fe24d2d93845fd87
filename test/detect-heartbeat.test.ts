// The heartbeat link on real `ftvm primary` / `ftvm backup` processes (runtime/channel/
// heartbeat.ts): both nodes beat and hear each other; a stray datagram on the primary's port
// gets one `ftvm:` line and changes nothing; a frozen primary (SIGSTOP: its link thread
// freezes with it) is still detected, and the arbiter lets one replica go live.
import { createSocket } from 'node:dgram';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkHistory } from '../runtime/faults/checker.js';
import { readClaimFiles } from '../runtime/faults/harness.js';
import { readOutputLog } from '../runtime/faults/output-log.js';
import { encodeBeat, sessionTag } from '../runtime/channel/heartbeat-wire.js';
import { killAll, root, startFtvm, waitOutputs } from './helpers/cli-procs.js';

const seq = join(root, 'guests/seq/seq.elf');
const dirs: string[] = [];
afterAll(() => {
  killAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh() {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-heartbeat-'));
  dirs.push(d);
  writeFileSync(join(d, 'key'), 'ab'.repeat(32));
  mkdirSync(join(d, 'arb'));
  const common = (out: string, suspect?: string): string[] => [
    '--key-file', join(d, 'key'), '--arbiter', `file:${join(d, 'arb')}`, '--outputs', join(d, out), '--heartbeat-link', ...(suspect ? ['--suspect-ms', suspect] : []),
  ];
  return { d, common };
}

describe('the heartbeat link between processes', () => {
  it('both nodes hear the other\'s beats; stray datagrams on the primary\'s port get one line each and change nothing', async () => {
    const { d, common } = fresh();
    // A floor well above a loaded machine's stalls: this test is about the link, not timing.
    const p = startFtvm(['primary', seq, '--listen', '127.0.0.1:0', ...common('p.jsonl', '1000')]);
    const port = Number((await p.waitErr(/primary listening 127\.0\.0\.1:(\d+) /))[1]);
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl', '1000')]);
    await p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p.jsonl'), 200);
    const stray = createSocket('udp4');
    const send = (buf: Uint8Array): Promise<void> => new Promise((r) => stray.send(buf, port, '127.0.0.1', () => r()));
    await send(Buffer.from('\x00garbage'));
    await p.waitErr(/^ftvm: primary heartbeat: 127\.0\.0\.1:\d+ sent not an ftvm heartbeat \(8 bytes\); ignored$/m);
    // A well-formed beat under the pair's pre-shared key is not this session's: refused too.
    await new Promise((r) => setTimeout(r, 1100));
    const psk = Buffer.from('ab'.repeat(32), 'hex');
    await send(encodeBeat(psk, sessionTag(psk), 'backup', 1n << 40n));
    await p.waitErr(/^ftvm: primary heartbeat: .* sent a heartbeat of another channel session .*; ignored$/m);
    stray.close();
    expect(await p.exit).toBe('0');
    expect(await b.exit).toBe('0');
    for (const [node, text] of [['primary', p.err()], ['backup', b.err()]] as const) {
      const m = new RegExp(`${node} heartbeat link: beats sent (\\d+) heard (\\d+)`).exec(text);
      expect(m, text).not.toBeNull();
      expect(Number(m![1])).toBeGreaterThan(10);
      expect(Number(m![2])).toBeGreaterThan(10);
    }
    expect(p.err().match(/^ftvm: /gm)).toHaveLength(2);
    expect(readdirSync(join(d, 'arb')).filter((f) => f.endsWith('.claim'))).toEqual([]);
    const history = ['p.jsonl', 'b.jsonl'].flatMap((f) => readOutputLog(join(d, f)));
    const v = checkHistory(history, new Map());
    expect(v.errors).toEqual([]);
    expect(v.lines).toBe(2000);
  });

  it('a frozen primary is detected though it is alive (its beats freeze with it); one replica goes live', async () => {
    const { d, common } = fresh();
    const p = startFtvm(['primary', seq, '--listen', '127.0.0.1:0', ...common('p.jsonl')]);
    const [, port, instance] = await p.waitErr(/primary listening 127\.0\.0\.1:(\d+) pair (\S+)/);
    const b = startFtvm(['backup', seq, '--connect', `127.0.0.1:${port}`, ...common('b.jsonl')]);
    await p.waitErr(/primary state \{"protected"/);
    await waitOutputs(join(d, 'p.jsonl'), 300);
    await b.waitErr(/backup heartbeat|backup state "replaying"/).catch(() => undefined);
    p.child.kill('SIGSTOP');
    await b.waitErr(/backup .*live/, 30_000);
    p.child.kill('SIGCONT');
    expect(await b.exit).toBe('0');
    // The old primary, thawed, lost the test-and-set (or was cut off first): never two live.
    expect(['0', '3']).toContain(await p.exit);
    const history = ['p.jsonl', 'b.jsonl'].flatMap((f) => readOutputLog(join(d, f)));
    const v = checkHistory(history, readClaimFiles(join(d, 'arb'), instance!));
    expect(v.errors).toEqual([]);
    expect(v.lines).toBe(2000);
  });
});
