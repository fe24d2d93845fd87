import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { OutputLogWriter, readOutputLog } from '../runtime/faults/output-log.js';
import type { ReleasedOutput } from '../runtime/ft/output-gate.js';

const released: ReleasedOutput[] = [
  { index: 0, node: 'primary', generation: 1, output: { kind: 'console', icount: 10, byte: 0x41 } },
  { index: 1, node: 'primary', generation: 1, output: { kind: 'net', icount: 20, frame: Uint8Array.of(1, 2, 3) } },
  { index: 2, node: 'primary', generation: 1, output: { kind: 'disk-write', icount: 30, sector: 4, data: Uint8Array.of(9) } },
  { index: 3, node: 'backup', generation: 2, output: { kind: 'console', icount: 40, byte: 0x0a } },
];

describe('the --outputs side channel', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('writes every released output, frames and disk writes included', () => {
    dir = mkdtempSync(join(tmpdir(), 'ftvm-outlog-'));
    const w = new OutputLogWriter(join(dir, 'all.jsonl'));
    for (const o of released) w.write(o);
    w.close();
    const back = readOutputLog(join(dir, 'all.jsonl'));
    expect(back.map((o) => o.index)).toEqual([0, 1, 2, 3]);
    expect(back[1]!.output).toEqual({ kind: 'net', icount: 20, frame: Buffer.of(1, 2, 3) });
  });

  it('with console: keeps the console bytes only, their indices unchanged for the reader to drop duplicates', () => {
    dir = mkdtempSync(join(tmpdir(), 'ftvm-outlog-'));
    const w = new OutputLogWriter(`console:${join(dir, 'console.jsonl')}`);
    for (const o of released) w.write(o);
    w.close();
    const back = readOutputLog(join(dir, 'console.jsonl'));
    expect(back.map((o) => [o.index, o.node, o.output])).toEqual([
      [0, 'primary', { kind: 'console', icount: 10, byte: 0x41 }],
      [3, 'backup', { kind: 'console', icount: 40, byte: 0x0a }],
    ]);
  });
});
