// Runs every deterministic guest image on QEMU, the reference machine, and
// checks its console bytes and exit code against the committed goldens
// (guests/golden.sh). This proves the committed ELFs and goldens agree, so
// the goldens can be trusted as the expected output of ftvm itself.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const guestsDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'guests');
const GOLDEN_GUESTS = ['hello', 'bench-small', 'timer', 'traps', 'csr', 'seq-short', 'irqstress'];
const RUN_TIMEOUT_MS = 30_000;
const NO_QEMU =
  'qemu-system-riscv32 not found on PATH: install qemu-system-misc (Debian) to check the guest goldens';

function qemuVersion(): string | undefined {
  const r = spawnSync('qemu-system-riscv32', ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.split('\n')[0] : undefined;
}

// NOTE: guests/qemu.sh holds the one QEMU command line (CPU cut down to
// RV32IM+Zicsr+Zkr, UART on stdio, no monitor) that golden.sh also uses.
function runOnQemu(name: string): { stdout: Buffer; status: number | null; stderr: string } {
  const r = spawnSync('sh', [join(guestsDir, 'qemu.sh'), join(guestsDir, name, `${name}.elf`)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: RUN_TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  if (r.error) throw new Error(`${name}: ${r.error.message}`);
  return { stdout: r.stdout, status: r.status, stderr: r.stderr.toString() };
}

describe('guest images on QEMU match their goldens', () => {
  const version = qemuVersion();

  it('has qemu-system-riscv32 on PATH', () => {
    expect(version, NO_QEMU).toBeDefined();
  });

  for (const name of GOLDEN_GUESTS) {
    it(`${name}: console bytes and exit code`, () => {
      // Fails rather than skips without QEMU: CI installs qemu-system-misc.
      if (version === undefined) throw new Error(NO_QEMU);
      const expected = readFileSync(join(guestsDir, name, 'expected.txt'));
      const expectedExit = Number(readFileSync(join(guestsDir, name, 'expected-exit'), 'utf8').trim());
      const got = runOnQemu(name);
      expect(got.stderr).toBe('');
      expect(got.stdout.toString('latin1')).toBe(expected.toString('latin1'));
      expect(got.status).toBe(expectedExit);
    });
  }

  it('goldens say what each guest is for', () => {
    // Guards against a golden recorded from a broken build: each guest ends
    // with its own success line, and all exit 0.
    const lastLine: Record<string, string> = {
      hello: 'rv32im M-mode, 40 + 2 = 42',
      'bench-small': 'total    ',
      timer: 'timer: PASS',
      traps: 'traps: PASS',
      csr: 'csr: PASS',
      'seq-short': 'seq done 50',
      irqstress: 'irqstress: PASS',
    };
    for (const name of GOLDEN_GUESTS) {
      const text = readFileSync(join(guestsDir, name, 'expected.txt'), 'utf8');
      const lines = text.trimEnd().split('\n');
      expect(lines.at(-1)!.startsWith(lastLine[name]!), name).toBe(true);
      expect(text).not.toMatch(/FAIL|^unexpected trap:/m);
      expect(readFileSync(join(guestsDir, name, 'expected-exit'), 'utf8').trim(), name).toBe('0');
    }
  });
});
