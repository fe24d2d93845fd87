import type { ReleasedOutput } from '../ft/output-gate.js';

/** The checksum the `seq` guest prints beside line i (guests/seq/README.md). */
export function seqCheck(i: number, work = 40000): number {
  let x = 0x811c9dc5;
  for (let b = 0; b < 4; b++) x = Math.imul(x ^ ((i >>> (8 * b)) & 0xff), 16777619);
  if (x === 0) x = 1;
  for (let k = 0; k < work; k++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
  }
  return x >>> 0;
}

const LINE = /^seq (\d{6}) ([0-9a-f]{8})$/;
const DONE = /^seq done (\d+)$/;

/**
 * The client side of the demo: receives released outputs, drops duplicates by output index
 * (as TCP drops segments by sequence number), and checks that the console stream is one a
 * single execution of the `seq` guest could print: consecutive numbers, right checksums.
 * A gap in the output indices is a lost output.
 */
export class SeqChecker {
  nextIndex = 0;
  duplicates = 0;
  lost = 0;
  lines = 0;
  done: number | undefined;
  exitCode: number | undefined;
  readonly errors: string[] = [];
  /** Outputs accepted from each releasing node. */
  readonly byNode = new Map<string, number>();
  private partial = '';

  accept(o: ReleasedOutput): void {
    if (o.index < this.nextIndex) {
      this.duplicates++;
      return;
    }
    if (o.index > this.nextIndex) {
      this.lost += o.index - this.nextIndex;
      this.errors.push(`outputs ${this.nextIndex}..${o.index - 1} never arrived`);
    }
    this.nextIndex = o.index + 1;
    this.byNode.set(o.node, (this.byNode.get(o.node) ?? 0) + 1);
    if (o.output.kind === 'power') {
      this.exitCode = o.output.code;
      return;
    }
    if (o.output.kind !== 'console') return;
    const ch = String.fromCharCode(o.output.byte);
    if (ch !== '\n') {
      this.partial += ch;
      return;
    }
    this.line(this.partial);
    this.partial = '';
  }

  get ok(): boolean {
    return this.errors.length === 0 && this.lost === 0 && this.done !== undefined && this.done === this.lines && this.exitCode === 0;
  }

  private line(text: string): void {
    const d = DONE.exec(text);
    if (d) {
      this.done = Number(d[1]);
      if (this.done !== this.lines) this.errors.push(`guest says ${this.done} lines, client saw ${this.lines}`);
      return;
    }
    const m = LINE.exec(text);
    if (!m) {
      this.errors.push(`unexpected line ${JSON.stringify(text)}`);
      return;
    }
    const n = Number(m[1]);
    if (n !== this.lines + 1) this.errors.push(`line ${n} after line ${this.lines}`);
    const want = seqCheck(n).toString(16).padStart(8, '0');
    if (m[2] !== want) this.errors.push(`line ${n}: checksum ${m[2]}, expected ${want}`);
    this.lines = n;
  }
}
