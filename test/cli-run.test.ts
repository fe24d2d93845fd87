import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const ftvm = (...args: string[]) => spawnSync(process.execPath, [join(root, 'bin/ftvm.js'), ...args], { cwd: root, encoding: 'utf8', input: '' });

/** An ELF32 RISC-V executable whose one instruction is `j .`: a guest that never stops. */
function spinElf(): Uint8Array {
  const b = Buffer.alloc(52 + 32 + 4);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  b.writeUInt16LE(2, 16); b.writeUInt16LE(243, 18); b.writeUInt32LE(1, 20);
  b.writeUInt32LE(0x8000_0000, 24); b.writeUInt32LE(52, 28);
  b.writeUInt16LE(52, 40); b.writeUInt16LE(32, 42); b.writeUInt16LE(1, 44);
  b.writeUInt32LE(1, 52); b.writeUInt32LE(84, 56); b.writeUInt32LE(0x8000_0000, 60); b.writeUInt32LE(0x8000_0000, 64);
  b.writeUInt32LE(4, 68); b.writeUInt32LE(4, 72);
  b.writeUInt32LE(0x0000_006f, 84);
  return b;
}

describe('ftvm run', () => {
  beforeAll(() => {
    execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'ignore' });
  }, 120_000);

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

  it('exits 130 on SIGINT while the guest spins', async () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ftvm-cli-')), 'spin.elf');
    writeFileSync(file, spinElf());
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'run', '--stats', file], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => { stderr += d; });
    // Let it get going (the stats line proves it executed), then interrupt.
    await new Promise((r) => setTimeout(r, 700));
    child.kill('SIGINT');
    const code = await new Promise((r) => child.on('exit', (c) => r(c)));
    expect(code).toBe(130);
    const executed = Number(/instructions (\d+)/.exec(stderr)?.[1]);
    expect(executed).toBeGreaterThan(1000);
  });
});
