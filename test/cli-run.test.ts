import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { elfOf } from './helpers/elf.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const ftvm = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin/ftvm.js'), ...args], { cwd: root, encoding: 'utf8', input: '' });

// A few RV32I encoders, enough to hand-assemble the echo guest below.
const T0 = 5, T1 = 6, T2 = 7, T3 = 28, T4 = 29, T5 = 30;
const lui = (rd: number, imm20: number) => (imm20 << 12) | (rd << 7) | 0x37;
const itype = (f3: number, op: number) => (rd: number, rs1: number, imm: number) => ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
const stype = (f3: number) => (rs2: number, rs1: number, imm: number) => (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23;
const btype = (f3: number) => (rs1: number, rs2: number, off: number) =>
  (((off >> 12) & 1) << 31) | (((off >> 5) & 0x3f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (((off >> 1) & 0xf) << 8) | (((off >> 11) & 1) << 7) | 0x63;
const [lbu, andi, addi] = [itype(4, 0x03), itype(7, 0x13), itype(0, 0x13)];
const [sb, sw] = [stype(0), stype(2)];
const [beq, bne] = [btype(0), btype(1)];

/** Prints '>', then polls the UART, echoes every byte, and on 'q' exits through sifive_test with code 3. */
const ECHO = [
  lui(T0, 0x10000),
  addi(T2, 0, 0x3e),
  sb(T2, T0, 0),
  lbu(T1, T0, 5), // loop: LSR
  andi(T1, T1, 1),
  beq(T1, 0, -8),
  lbu(T2, T0, 0), // RBR
  sb(T2, T0, 0), // THR
  addi(T3, 0, 0x71),
  bne(T2, T3, -24),
  lui(T4, 0x100),
  lui(T5, 0x33),
  addi(T5, T5, 0x333), // (3 << 16) | 0x3333
  sw(T5, T4, 0),
  0x0000_006f,
];

/** An ELF32 RISC-V executable holding `words` at 0x80000000. */
describe('ftvm run', () => {
  beforeAll(() => {
    // test/global-setup.ts built dist/ before any suite started.
    expect(existsSync(join(root, 'dist/runtime/cli.js'))).toBe(true);
  });

  it('runs hello: its console on stdout, its exit code', () => {
    const r = ftvm('run', 'guests/hello/hello.elf');
    expect(r.stdout).toBe('hello from ftvm guest\nrv32im M-mode, 40 + 2 = 42\n');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it('prints instruction count and MIPS with --stats', () => {
    const r = ftvm('run', '--stats', '--deterministic', 'guests/hello/hello.elf');
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/^instructions \d+, seconds \d+\.\d+, MIPS \d+\.\d+\n$/);
  });

  it('stops at --max-instructions with its own exit code', () => {
    const r = ftvm('run', '--max-instructions', '100', 'guests/hello/hello.elf');
    expect(r.status).toBe(124);
    expect(r.stderr).toMatch(/stopped after 100 instructions/);
  });

  it('reports a truncated image in one line and exits 2', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ftvm-cli-'));
    const bad = join(dir, 'cut.elf');
    writeFileSync(bad, readFileSync(join(root, 'guests/hello/hello.elf')).subarray(0, 0x2000));
    const r = ftvm('run', bad);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(`ftvm: ${bad}: truncated: segment 1 data ends at byte ${0x1000 + 0x37b4}, file has ${0x2000}\n`);
  });

  it('names a missing file and a guest too big for --mem', () => {
    const missing = ftvm('run', 'nope.elf');
    expect(missing.status).toBe(2);
    expect(missing.stderr).toBe('ftvm: nope.elf: no such file\n');
    // hello with its .bss (program header 2) grown to 2 MiB.
    const big = readFileSync(join(root, 'guests/hello/hello.elf'));
    big.writeUInt32LE(2 << 20, 52 + 2 * 32 + 20);
    const file = join(mkdtempSync(join(tmpdir(), 'ftvm-cli-')), 'big.elf');
    writeFileSync(file, big);
    const small = ftvm('run', '--mem', '1', file);
    expect(small.status).toBe(2);
    expect(small.stderr).toBe(`ftvm: ${file}: segment at 0x800037cc (2097152 bytes) does not fit in 1 MiB of RAM (try a larger --mem)\n`);
    expect(ftvm('run', '--mem', '4', file).status).toBe(0);
  });

  it('rejects unknown commands and flags with a usage line and exit 2', () => {
    const cmd = ftvm('frobnicate');
    expect(cmd.status).toBe(2);
    expect(cmd.stderr).toMatch(/unknown command 'frobnicate'[\s\S]*usage: ftvm/);
    const flag = ftvm('run', '--turbo', 'guests/hello/hello.elf');
    expect(flag.status).toBe(2);
    expect(flag.stderr).toMatch(/usage: ftvm run <elf>/);
    expect(ftvm('run', '--seed', '3', 'guests/hello/hello.elf').status).toBe(2);
  });

  it('exits 130 on SIGINT and 143 on SIGTERM while the guest runs', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftvm-cli-')), 'echo.elf');
    writeFileSync(file, elfOf(ECHO));
    const stopWith = async (signal: NodeJS.Signals) => {
      const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'run', '--stats', file], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stderr = '';
      child.stderr.on('data', (d) => { stderr += d; });
      // The guest's prompt proves the handlers are installed and the guest is running.
      child.stdout.once('data', () => child.kill(signal));
      const code = await new Promise((r) => child.on('exit', (c) => r(c)));
      return { code, executed: Number(/instructions (\d+)/.exec(stderr)?.[1]) };
    };
    const int = await stopWith('SIGINT');
    expect(int.code).toBe(130);
    expect(int.executed).toBeGreaterThan(2);
    expect((await stopWith('SIGTERM')).code).toBe(143);
  });

  it('feeds piped stdin to the guest console and exits with the guest\'s code', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftvm-cli-')), 'echo.elf');
    writeFileSync(file, elfOf(ECHO));
    const r = spawnSync(process.execPath, [join(root, 'bin/ftvm.js'), 'run', file], { encoding: 'utf8', input: 'hello, guest\nq' });
    expect(r.stdout).toBe('>hello, guest\nq');
    expect(r.status).toBe(3);
    // --deterministic reads all of stdin first; the run is then a pure function of the input.
    const runs = [1, 2].map(() => spawnSync(process.execPath, [join(root, 'bin/ftvm.js'), 'run', '--deterministic', '--stats', file], { encoding: 'utf8', input: 'again q' }));
    for (const d of runs) {
      expect(d.stdout).toBe('>again q');
      expect(d.status).toBe(3);
    }
    expect(runs[0]!.stderr).toMatch(/^instructions \d+/);
    expect(runs[0]!.stderr.split(',')[0]).toBe(runs[1]!.stderr.split(',')[0]);
  });

  it('reports a guest fault in one line and exits 1', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftvm-cli-')), 'fault.elf');
    writeFileSync(file, elfOf([0x0000_0067])); // jr zero: fetch from 0, and mtvec is 0 too
    const r = ftvm('run', file);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^ftvm: guest fault: [^\n]*instruction access fault[^\n]*\n$/);
  });

  it('on a terminal passes every byte (Ctrl-C too) to the guest and quits on Ctrl-A x', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftvm-cli-')), 'echo.elf');
    writeFileSync(file, elfOf(ECHO));
    // script(1) gives ftvm a pseudo-terminal, so stdin is a TTY and raw mode is on.
    const child = spawn('script', ['-qefc', `'${process.execPath}' bin/ftvm.js run '${file}'`, '/dev/null'], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (d: string) => {
      const before = out;
      out += d;
      // The prompt proves raw mode is on; the echoed 'c' proves everything before it arrived.
      if (!before.includes('>') && out.includes('>')) child.stdin.write('ab\x03\x01\x01c');
      if (!before.endsWith('c') && out.endsWith('c')) child.stdin.write('\x01x');
    });
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(out).toBe('>ab\x03\x01c');
    expect(code).toBe(130);
  });

  it('stops quietly with 141 when the reader of stdout goes away', async () => {
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'run', 'guests/seq/seq.elf'], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(141);
    expect(stderr).toBe('');
  });
});
