// The fault checker's verdicts on made-up histories: the operator-error rules of issue 11
// (no outage where a synced replica survived; refused backups release nothing).
import { describe, expect, it } from 'vitest';
import { checkHistory, checkOutputs, judgeOutage, type ReplicaFate } from '../runtime/faults/checker.js';
import { seqCheck } from '../runtime/demo/seq-checker.js';
import type { ReleasedOutput } from '../runtime/ft/output-gate.js';

/** The console bytes of the seq guest's first `lines` lines, as outputs of `node`. */
function seqOutputs(lines: number, node: string, generation: number, powerOff: boolean): ReleasedOutput[] {
  let text = '';
  for (let i = 1; i <= lines; i++) text += `seq ${String(i).padStart(6, '0')} ${seqCheck(i).toString(16).padStart(8, '0')}\n`;
  if (powerOff) text += `seq done ${lines}\n`;
  const out: ReleasedOutput[] = [...Buffer.from(text)].map((byte, index) => ({ index, node, generation, output: { kind: 'console', icount: 1000 + index, byte } }));
  if (powerOff) out.push({ index: out.length, node, generation, output: { kind: 'power', icount: 1000 + out.length, code: 0 } });
  return out;
}

const fate = (node: string, exit: string, killed = false): ReplicaFate => ({ node, exit, killed });

describe('fault checker', () => {
  it('passes a finished run and finds no outage', () => {
    const c = checkHistory(seqOutputs(3, 'primary', 1, true), new Map());
    expect(c.errors).toEqual([]);
    expect(judgeOutage(c, [fate('primary', '0'), fate('backup', '0')], new Map())).toEqual({ excused: false, error: undefined });
  });

  it('calls an unfinished run with a surviving replica an outage', () => {
    // Issue 11 item 2: the backup killed, the primary halted by an earlier instance's claim.
    const c = checkHistory(seqOutputs(2, 'primary', 1, false), new Map([[1, 'backup']]));
    expect(c.incomplete).toBe(true);
    const claims = new Map<number, string>();
    const v = judgeOutage(c, [fate('primary', '3'), fate('backup', 'SIGKILL', true)], claims);
    expect(v.excused).toBe(false);
    expect(v.error).toMatch(/outage: .*primary \(exit 3\)/);
  });

  it('excuses a double failure: the survivor lost the arbiter to the replica then killed', () => {
    const claims = new Map([[1, 'primary']]);
    const c = checkHistory(seqOutputs(2, 'primary', 1, false), claims);
    const v = judgeOutage(c, [fate('primary', 'SIGKILL', true), fate('backup', '3')], claims);
    expect(v).toEqual({ excused: true, error: undefined });
    expect(c.errors).toEqual([]);
    expect(c.ok).toBe(true);
  });

  it('does not excuse a survivor that exited for another reason', () => {
    const claims = new Map([[1, 'primary']]);
    const c = checkHistory(seqOutputs(2, 'primary', 1, false), claims);
    expect(judgeOutage(c, [fate('primary', 'SIGKILL', true), fate('backup', '1')], claims).error).toMatch(/backup \(exit 1\)/);
  });

  it('finds a refused backup that ran the guest on its own: conflicting outputs', () => {
    // Issue 11 item 1: the extra backup's outputs, at other icounts, beside the pair's.
    const extra = seqOutputs(3, 'extra-backup', 2, true).map((o) => ({ ...o, output: { ...o.output, icount: o.output.icount + 7 } }));
    const c = checkHistory([...seqOutputs(3, 'primary', 1, true), ...extra], new Map([[1, 'extra-backup']]));
    expect(c.ok).toBe(false);
    expect(c.conflicts).toBeGreaterThan(0);
  });

  describe('service guests (checkOutputs)', () => {
    /** Net frames (a service's replies) with indices `from`..`to`, as `node` in `generation`. */
    const replies = (from: number, to: number, node: string, generation: number, salt = 0): ReleasedOutput[] =>
      Array.from({ length: to - from + 1 }, (_, k) => ({
        index: from + k, node, generation, output: { kind: 'net' as const, icount: 5000 + 10 * (from + k), frame: Uint8Array.of(from + k, salt) },
      }));

    it('passes a failover that re-issued what the old primary may not have released', () => {
      const c = checkOutputs([...replies(0, 9, 'primary', 1), ...replies(7, 15, 'backup', 2)], new Map([[1, 'backup']]));
      expect(c.errors).toEqual([]);
      expect(c).toMatchObject({ ok: true, lost: 0, duplicates: 3, conflicts: 0, doubleLive: 0, lines: 16 });
    });

    it('finds an output that never left any replica', () => {
      const c = checkOutputs([...replies(0, 9, 'primary', 1), ...replies(12, 15, 'backup', 2)], new Map([[1, 'backup']]));
      expect(c.ok).toBe(false);
      expect(c.lost).toBe(2);
      expect(c.errors).toContain('2 of the outputs 0..15 never left any replica');
    });

    it('finds two executions and two live nodes in one generation', () => {
      const c = checkOutputs([...replies(0, 9, 'primary', 1), ...replies(5, 12, 'backup', 1, 1)], new Map());
      expect(c.ok).toBe(false);
      expect(c.conflicts).toBe(5);
      expect(c.doubleLive).toBe(1);
    });

    it('finds a node live in generation 2 without the key of generation 1', () => {
      const c = checkOutputs([...replies(0, 3, 'primary', 1), ...replies(4, 6, 'backup', 2)], new Map([[1, 'primary']]));
      expect(c.errors).toContain('generation 2: backup released outputs without holding key 1 (holder: primary)');
    });
  });
});
