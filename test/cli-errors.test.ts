// Operator errors at the CLI (issue 11, items 9 and 10): each gets one `ftvm: ...` line on
// stderr, never a stack trace, and the exit code the README gives.
import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

const root = fileURLToPath(new URL('..', import.meta.url));
const HELLO = join(root, 'guests/hello/hello.elf');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-cli-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `node bin/ftvm.js ...` as a direct child; spawnSync kills it (by its PID) at the timeout. */
export function ftvm(args: string[], timeoutMs = 20_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin/ftvm.js'), ...args], { cwd: root, encoding: 'utf8', input: '', timeout: timeoutMs, killSignal: 'SIGKILL' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The error is one `ftvm:` line (a usage line may follow), and no stack frame. */
export function expectOneLine(stderr: string, pattern: RegExp): void {
  const lines = stderr.split('\n').filter((l) => l.startsWith('ftvm:'));
  expect(lines, stderr).toHaveLength(1);
  expect(lines[0]).toMatch(pattern);
  expect(stderr).not.toMatch(/^\s+at /m);
  expect(stderr).not.toMatch(/node:internal|Error: /);
}

describe('--help and -h', () => {
  const commands = ['run', 'record', 'replay', 'demo', 'diagram', 'primary', 'backup', 'pair'];
  for (const name of commands) {
    it(`${name} --help / -h print its usage on stdout and exit 0`, () => {
      for (const flag of ['--help', '-h']) {
        // Other flags, even bad ones, do not matter: help is asked for.
        const r = ftvm([name, 'some.elf', '--mem', '7', flag]);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`^usage: ftvm ${name}\\b`));
      }
    });
  }

  it('a --help after -- is a positional, not a request for help', () => {
    const r = ftvm(['run', '--', '--help']);
    expect(r.status).toBe(2);
    expectOneLine(r.stderr, /^ftvm: --help: no such file$/);
  });
});

describe('negative numbers get the command\'s own message', () => {
  const cases: [string[], string][] = [
    [['run', HELLO, '--mem', '-5'], "--mem wants a positive integer, got '-5'"],
    [['run', HELLO, '--max-instructions', '-1'], "--max-instructions wants a positive integer, got '-1'"],
    [['run', HELLO, '--deterministic', '--seed', '-3'], "--seed wants a non-negative integer, got '-3'"],
    [['record', HELLO, '--log', '/nonexistent/x', '--mem', '-2'], "--mem wants a positive integer, got '-2'"],
    [['demo', '--seed', '-3'], "--seed wants a non-negative integer, got '-3'"],
    [['run', HELLO, '--inspect', '-1'], "--inspect wants a port number, got '-1'"],
    [['pair', HELLO, '--suspect-ms', '-10'], "--suspect-ms wants a positive integer, got '-10'"],
  ];
  for (const [args, message] of cases) {
    it(args.join(' '), () => {
      const r = ftvm(args);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, new RegExp(`^ftvm: ${message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`));
      expect(r.stderr).not.toMatch(/ambiguous/);
    });
  }
});

describe('--seed 0', () => {
  it('is a valid seed for run --deterministic, and a run is a function of it', () => {
    const a = ftvm(['run', HELLO, '--deterministic', '--seed', '0']);
    expect(a.stderr).toBe('');
    expect(a.status).toBe(0);
    expect(a.stdout).toContain('hello');
    expect(ftvm(['run', HELLO, '--deterministic', '--seed', '0']).stdout).toBe(a.stdout);
  });
});

describe('an image built for another RISC-V', () => {
  for (const isa of ['rv32imac', 'rv32imafc']) {
    it(`run refuses a ${isa} ELF at load with one line, before running it`, () => {
      const elf = join(root, `test/fixtures/hello-${isa}.elf`);
      const r = ftvm(['run', elf]);
      expect(r.status).toBe(2);
      expect(r.stdout).toBe('');
      expectOneLine(r.stderr, /^ftvm: .*hello-rv32imac?f?c?\.elf: built for another RISC-V: it needs compressed instructions \(e_flags RVC\)/);
      expect(r.stderr).not.toMatch(/guest fault/);
    });
  }
});

describe('--net forwards', () => {
  it('say which host port each rule bound, port 0 included, and that port reaches the guest', async () => {
    const disk = join(dir, 'zone.img');
    copyFileSync(join(root, 'guests/dns/zone.img'), disk);
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'run', 'guests/dns/dns.elf', '--disk', `file:${disk}`, '--net', 'udp:0:53', '--net', 'udp:127.0.0.1:0:53'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('dns: serving')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`no dns: ${out} ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      const lines = [...err.matchAll(/^ftvm: forwarding udp 127\.0\.0\.1:(\d+) -> guest port 53$/gm)];
      expect(lines, err).toHaveLength(2);
      for (const [, port] of lines) {
        expect(Number(port)).toBeGreaterThan(0);
        const r = new Resolver({ timeout: 1000, tries: 3 });
        r.setServers([`127.0.0.1:${port}`]);
        expect(await r.resolve4('ns2.example.test')).toEqual(['192.0.2.54']);
      }
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited).toBe(130);
  });

  it('a host port in use is one line', async () => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    try {
      const port = s.address().port;
      const r = ftvm(['run', HELLO, '--net', `udp:${port}:53`]);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, new RegExp(`^ftvm: --net: udp 127\\.0\\.0\\.1:${port} is in use$`));
    } finally {
      s.close();
    }
  });
});

describe('a port in use for --inspect or --dashboard', () => {
  const keyDir = mkdtempSync(join(dir, 'pair-'));
  const key = join(keyDir, 'key');
  writeFileSync(key, 'ab'.repeat(32) + '\n');
  const fileArbiter = `file:${keyDir}`;
  const cases: [string, (port: number) => string[]][] = [
    ['--inspect', (p) => ['run', HELLO, '--inspect', String(p)]],
    ['--inspect', (p) => ['demo', '--guest', 'seq-short', '--inspect', String(p)]],
    ['--dashboard', (p) => ['demo', '--guest', 'seq-short', '--dashboard', String(p)]],
    ['--inspect', (p) => ['primary', HELLO, '--listen', '127.0.0.1:0', '--key-file', key, '--arbiter', fileArbiter, '--inspect', String(p)]],
    ['--inspect', (p) => ['backup', HELLO, '--connect', '127.0.0.1:1', '--key-file', key, '--arbiter', fileArbiter, '--inspect', String(p)]],
    ['--inspect', (p) => ['pair', HELLO, '--inspect', String(p)]],
  ];
  for (const [flag, args] of cases) {
    it(`${args(0)[0]} ${flag}: one line, exit 1, and the process ends`, async () => {
      const taken = createServer();
      await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
      const port = (taken.address() as AddressInfo).port;
      try {
        const r = ftvm(args(port));
        expect(r.status, r.stderr).toBe(1);
        expectOneLine(r.stderr, new RegExp(`^ftvm: ${flag}: port ${port} is in use$`));
        expect(r.stderr).not.toMatch(/usage:/);
      } finally {
        await new Promise((r) => taken.close(r));
      }
    });
  }

  it('pair checks the backup\'s port (PORT+1) too', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as AddressInfo).port;
    try {
      const r = ftvm(['pair', HELLO, '--inspect', String(port - 1)]);
      expect(r.status).toBe(1);
      expectOneLine(r.stderr, new RegExp(`^ftvm: --inspect: port ${port} is in use$`));
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});

describe('diagram --out', () => {
  const refused: [string, () => string, RegExp][] = [
    ['an existing regular file', () => join(root, 'README.md'), /exists and is not a directory$/],
    ['a path under a regular file', () => join(root, 'README.md/sub'), /README\.md is not a directory$/],
    ['a directory under /sys', () => '/sys/ftvm-diagrams', /on the sysfs pseudo filesystem/],
    ['a directory under /proc (it used to hang)', () => '/proc/ftvm-diagrams', /on the proc pseudo filesystem/],
    ['/proc itself', () => '/proc', /on the proc pseudo filesystem/],
  ];
  for (const [what, out, why] of refused) {
    it(`refuses ${what} in one line, before writing`, () => {
      const r = ftvm(['diagram', '--format', 'mermaid', '--out', out()]);
      expect(r.status, r.stderr).toBe(1);
      expect(r.stdout).toBe('');
      expectOneLine(r.stderr, why);
    });
  }

  it('a write that fails is one line too', () => {
    // A directory where a chart's file would go: the check passes, the write fails (EISDIR).
    const out = mkdtempSync(join(dir, 'diagrams-'));
    mkdirSync(join(out, 'cpu.mmd'));
    const r = ftvm(['diagram', '--format', 'mermaid', '--out', out]);
    expect(r.status).toBe(1);
    expectOneLine(r.stderr, /^ftvm: --out .*cpu\.mmd/);
  });

  it('makes a missing directory and writes every chart there', () => {
    const out = join(dir, 'new/diagrams');
    const r = ftvm(['diagram', '--format', 'mermaid', '--out', out]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const n = Number(/wrote (\d+) files/.exec(r.stdout)?.[1]);
    expect(n).toBeGreaterThan(0);
    expect(readdirSync(out)).toHaveLength(n);
  });
});

describe('bad images and flags, every command that takes an image', () => {
  const keyDir = mkdtempSync(join(dir, 'images-'));
  const key = join(keyDir, 'key');
  writeFileSync(key, 'cd'.repeat(32) + '\n');
  const empty = join(keyDir, 'empty.elf');
  writeFileSync(empty, '');
  const truncated = join(keyDir, 'truncated.elf');
  writeFileSync(truncated, readFileSync(HELLO).subarray(0, 3000));
  const pairFlags = ['--key-file', key, '--arbiter', `file:${keyDir}`];
  const commands: [string, (elf: string) => string[]][] = [
    ['run', (elf) => ['run', elf]],
    ['primary', (elf) => ['primary', elf, '--listen', '127.0.0.1:0', ...pairFlags]],
    ['backup', (elf) => ['backup', elf, '--connect', '127.0.0.1:1', ...pairFlags]],
    ['pair', (elf) => ['pair', elf]],
  ];
  const images: [string, () => string, RegExp][] = [
    ['a missing file', () => join(keyDir, 'nope.elf'), /nope\.elf: no such file$/],
    ['a directory', () => keyDir, /: is a directory, not a file$/],
    ['an empty file', () => empty, /empty\.elf: not an ELF file/],
    ['a truncated ELF', () => truncated, /truncated\.elf: truncated: segment \d+ data ends at byte \d+, file has 3000$/],
  ];
  for (const [name, args] of commands) {
    it(`${name}: a missing, directory, empty or truncated image is one line, exit 2`, () => {
      for (const [, image, why] of images) {
        const r = ftvm(args(image()));
        expect(r.status, r.stderr).toBe(2);
        expectOneLine(r.stderr, why);
        // pair checks the image itself: no child's relayed line.
        expect(r.stderr).not.toMatch(/^primary\|/m);
      }
    });

    it(`${name}: --mem beyond what the machine takes is the flag's error`, () => {
      const r = ftvm([...args(HELLO), '--mem', '4096']);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, /^ftvm: --mem wants 1 to 2048 MiB, got '4096'$/);
    });
  }

  it('pair refuses a bad --arbiter itself, before starting children', () => {
    for (const [spec, why] of [['bogus:x', /^ftvm: arbiter spec "bogus:x": expected/], ['memory', /^ftvm: --arbiter memory cannot protect a pair across processes/]] as const) {
      const r = ftvm(['pair', HELLO, '--arbiter', spec]);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, why);
      expect(r.stderr).not.toMatch(/^primary\|/m);
    }
  });
});

describe('stdout closed by its reader (`ftvm ... | head`)', () => {
  /** Starts ftvm, closes its stdout after the first bytes, and returns its exit code and stderr. */
  async function closeEarly(args: string[]): Promise<{ code: number | null; stderr: string }> {
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.once('data', () => child.stdout.destroy());
    const code = await exited;
    clearTimeout(timer);
    return { code, stderr };
  }

  it('primary ends as SIGPIPE would (exit 141), and its backup carries on', async () => {
    const keyDir = mkdtempSync(join(dir, 'pipe-'));
    const key = join(keyDir, 'key');
    writeFileSync(key, 'ef'.repeat(32) + '\n');
    const flags = ['--key-file', key, '--arbiter', `file:${keyDir}`];
    const primary = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'primary', 'guests/seq-short/seq-short.elf', '--listen', '127.0.0.1:0', ...flags], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let backup: ReturnType<typeof spawn> | undefined;
    let err = '';
    const timer = setTimeout(() => { primary.kill('SIGKILL'); backup?.kill('SIGKILL'); }, 40_000);
    try {
      const primaryExit = new Promise<number | null>((r) => primary.on('exit', (c) => r(c)));
      primary.stdout.once('data', () => primary.stdout.destroy());
      const port = await new Promise<string>((resolve, reject) => {
        primary.stderr.on('data', (d: Buffer) => {
          err += d.toString();
          const m = / listening 127\.0\.0\.1:(\d+) /.exec(err);
          if (m) resolve(m[1]!);
        });
        primary.once('exit', () => reject(new Error(`primary ended: ${err}`)));
      });
      backup = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'backup', 'guests/seq-short/seq-short.elf', '--connect', `127.0.0.1:${port}`, ...flags], { cwd: root, stdio: ['ignore', 'ignore', 'ignore'] });
      const backupExit = new Promise<number | null>((r) => backup!.on('exit', (c) => r(c)));
      expect(await primaryExit, err).toBe(141);
      expect(err).not.toMatch(/EPIPE|^\s+at /m);
      // The backup goes live and finishes the guest.
      expect(await backupExit).toBe(0);
    } finally {
      clearTimeout(timer);
      primary.kill('SIGKILL');
      backup?.kill('SIGKILL');
    }
  });

  for (const args of [['demo', '--guest', 'seq-short'], ['pair', 'guests/seq-short/seq-short.elf']]) {
    it(`${args[0]} ends as SIGPIPE would (exit 141), without a stack trace`, async () => {
      const r = await closeEarly(args);
      expect(r.code, r.stderr).toBe(141);
      expect(r.stderr).not.toMatch(/EPIPE|^\s+at /m);
    });
  }
});

describe('--key-file', () => {
  it('a missing key file or a directory is named in plain words', () => {
    const keyDir = mkdtempSync(join(dir, 'keys-'));
    for (const cmd of [['primary', HELLO, '--listen', '127.0.0.1:0'], ['backup', HELLO, '--connect', '127.0.0.1:1']]) {
      let r = ftvm([...cmd, '--key-file', join(keyDir, 'nokey'), '--arbiter', `file:${keyDir}`]);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, /nokey: no such file$/);
      r = ftvm([...cmd, '--key-file', keyDir, '--arbiter', `file:${keyDir}`]);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, /: is a directory, not a file$/);
    }
  });
});
