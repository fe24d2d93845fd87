// The side channel through which a process shows what it released to the outside world:
// one JSON line per output, written synchronously, so that a line is in the file (the
// kernel's page cache, which survives kill -9) before the primary can report the output as
// released to its backup. The fault checker reads these files as the client's history.

import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import type { ReleasedOutput } from '../ft/output-gate.js';
import type { Output } from '../types.js';

interface Line {
  i: number;
  n: string;
  g: number;
  k: Output['kind'];
  /** console byte, power code, net frame hex, or disk `sector:hex`. */
  v: number | string;
  /** icount of the output (the same on every replica: a check of determinism). */
  c: number;
}

const toLine = (o: ReleasedOutput): Line => {
  const out = o.output;
  const v = out.kind === 'console' ? out.byte
    : out.kind === 'power' ? out.code
      : out.kind === 'net' ? Buffer.from(out.frame).toString('hex')
        : `${out.sector}:${Buffer.from(out.data).toString('hex')}`;
  return { i: o.index, n: o.node, g: o.generation, k: out.kind, v, c: out.icount };
};

const fromLine = (l: Line): ReleasedOutput => {
  let output: Output;
  switch (l.k) {
    case 'console': output = { kind: 'console', icount: l.c, byte: l.v as number }; break;
    case 'power': output = { kind: 'power', icount: l.c, code: l.v as number }; break;
    case 'net': output = { kind: 'net', icount: l.c, frame: Buffer.from(l.v as string, 'hex') }; break;
    default: {
      const [sector, hex] = String(l.v).split(':');
      output = { kind: 'disk-write', icount: l.c, sector: Number(sector), data: Buffer.from(hex ?? '', 'hex') };
    }
  }
  return { index: l.i, node: l.n, generation: l.g, output };
};

export class OutputLogWriter {
  private readonly fd: number;
  private readonly consoleOnly: boolean;
  /**
   * `file` is a path, or `fd:N` for a descriptor inherited from the parent (a pipe). A
   * `console:` prefix keeps the console bytes only (what `ftvm pair` relays to its stdout):
   * a service's frames and disk writes are then neither encoded nor written.
   */
  constructor(readonly file: string) {
    const c = /^console:(.+)$/.exec(file);
    this.consoleOnly = c !== null;
    const target = c ? c[1]! : file;
    const m = /^fd:(\d+)$/.exec(target);
    this.fd = m ? Number(m[1]) : openSync(target, 'a');
  }
  write(o: ReleasedOutput): void {
    if (this.consoleOnly && o.output.kind !== 'console') return;
    writeSync(this.fd, JSON.stringify(toLine(o)) + '\n');
  }
  close(): void {
    closeSync(this.fd);
  }
}

/** Reads a side-channel file; a torn last line (the writer was killed inside write) is dropped. */
export function readOutputLog(file: string): ReleasedOutput[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: ReleasedOutput[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    try {
      out.push(fromLine(JSON.parse(line) as Line));
    } catch (e) {
      if (i === lines.length - 1) break;
      throw new Error(`${file}:${i + 1}: bad output line: ${(e as Error).message}`);
    }
  }
  return out;
}
