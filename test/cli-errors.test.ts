// Operator errors at the CLI (issue 11, items 9 and 10): each gets one `ftvm: ...` line on
// stderr, never a stack trace, and the exit code the README gives.
import { spawn } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { startNbdServer } from './nbd-server.js';
import { expectOneLine, ftvm } from './helpers/cli-procs.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const HELLO = join(root, 'guests/hello/hello.elf');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-cli-errors-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

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

  it('a misspelt option is "unknown option" and the usage, exit 2, for every command', () => {
    for (const name of commands) {
      const args = name === 'demo' || name === 'diagram' ? [name, '--seeed', '3'] : [name, HELLO, '--seeed', '3'];
      const r = ftvm(args);
      expect(r.status, `${name}: ${r.stderr}`).toBe(2);
      // Not Node's advice about positionals starting with '-': the option is simply wrong.
      expectOneLine(r.stderr, /^ftvm: unknown option '--seeed'$/);
      expect(r.stderr).toMatch(new RegExp(`^usage: ftvm ${name}\\b`, 'm'));
    }
  });

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

describe('the I/O flags of primary, backup and pair (issue 13): operator errors', () => {
  const d = mkdtempSync(join(dir, 'io-'));
  const key = join(d, 'key');
  writeFileSync(key, 'ab'.repeat(32) + '\n');
  const arbiter = join(d, 'arbiter');
  mkdirSync(arbiter);
  const disk = join(d, 'zone.img');
  copyFileSync(join(root, 'guests/dns/zone.img'), disk);
  const DNS = join(root, 'guests/dns/dns.elf');
  const pairFlags = ['--key-file', key, '--arbiter', `file:${arbiter}`];
  const noExec = join(d, 'hook-noexec.sh');
  writeFileSync(noExec, '#!/bin/sh\necho hi\n', { mode: 0o644 });
  const commands: [string, string[]][] = [
    ['primary', ['primary', DNS, '--listen', '127.0.0.1:0', ...pairFlags, '--disk', `file:${disk}`]],
    ['backup', ['backup', DNS, '--connect', '127.0.0.1:1', ...pairFlags, '--disk', `file:${disk}`]],
    ['pair', ['pair', DNS, '--disk', `file:${disk}`]],
  ];
  const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  // Each is refused before anything is opened: no arbiter claim, no disk lock, no port, no child.
  const flagErrors: [string, string[], RegExp][] = [
    ['nbd: without //', ['--disk', 'nbd:/zone'], /^ftvm: --disk nbd:\/zone: expected file:PATH or nbd:\/\/HOST\[:PORT\]\/EXPORT$/],
    ['another URL scheme', ['--disk', 'http://10.0.0.1/zone'], /^ftvm: --disk http:\/\/10\.0\.0\.1\/zone: expected file:PATH or nbd:/],
    ['an nbd port beyond 65535', ['--disk', 'nbd://127.0.0.1:99999/zone'], /^ftvm: --disk nbd:\/\/127\.0\.0\.1:99999\/zone: '99999' is not a port number$/],
    ['a --net without its ports', ['--net', 'udp:53'], /^ftvm: --net udp:53: expected udp:HOSTPORT:GUESTPORT or udp:ADDR:HOSTPORT:GUESTPORT$/],
    ['a --net of another protocol', ['--net', 'tcp:5353:53'], /^ftvm: --net tcp:5353:53: expected udp:/],
    ['a --net address that is no address', ['--net', 'udp:localhost:5353:53'], /^ftvm: --net udp:localhost:5353:53: 'localhost' is not an IPv4 address$/],
    ['an --on-live that does not exist', ['--on-live', join(d, 'no-hook')], new RegExp(`^ftvm: --on-live ${esc(join(d, 'no-hook'))}: no such file$`)],
    ['an --on-live that is not executable', ['--on-live', noExec], new RegExp(`^ftvm: --on-live ${esc(noExec)}: not executable \\(chmod \\+x `)],
    ['an --on-live directory', ['--on-live', d], new RegExp(`^ftvm: --on-live ${esc(d)}: is a directory, not a file$`)],
    ['an --on-live command the shell does not know', ['--on-live', 'ftvm-no-such-command --x'], /^ftvm: --on-live "ftvm-no-such-command --x": ftvm-no-such-command: command not found$/],
    ['an empty --on-live', ['--on-live', ' '], /^ftvm: --on-live wants a command/],
  ];
  // Each case on one of the three commands in turn (a process start costs a second on a loaded host).
  for (const [n, [name, args]] of commands.entries()) {
    it(`${name}: a malformed --disk or --net, or an --on-live that cannot run, is one line, exit 2, before anything runs`, () => {
      for (const [, extra, why] of flagErrors.filter((_, i) => i % commands.length === n)) {
        // A bad --disk replaces the good one (a flag given twice is an error of its own).
        const given = extra[0] === '--disk' ? args.filter((a, i) => a !== '--disk' && args[i - 1] !== '--disk') : args;
        const r = ftvm([...given, ...extra]);
        expect(r.status, `${extra.join(' ')}: ${r.stderr}`).toBe(2);
        expectOneLine(r.stderr, why);
        // pair checks them itself: no child started, no relayed line.
        expect(r.stderr).not.toMatch(/^(pair|primary|backup)\|/m);
        // Nothing claimed, the disk free (the next command takes its lock).
        expect(readdirSync(arbiter)).toEqual([]);
      }
    });
  }

  it('a --disk file that is missing, a directory or on /proc is one line, exit 2: a backup meets it at start, not at go-live', () => {
    const cases: [string, RegExp][] = [
      [join(d, 'no-such.img'), /: no such file$/],
      [d, /: is a directory, not a disk image$/],
      ['/proc/version', /^ftvm: \/proc\/version: on the proc pseudo filesystem, not a disk image$/],
    ];
    const run = ['run', DNS, '--max-instructions', '1000'];
    // Each on run or primary in turn (a start costs seconds on a loaded host), and on a backup.
    for (const [i, [path, why]] of cases.entries()) {
      for (const args of [[run, commands[0]![1]][i % 2]!, commands[1]![1]]) {
        const r = ftvm([...args.filter((a) => a !== '--disk' && a !== `file:${disk}`), '--disk', `file:${path}`]);
        expect(r.status, `${args[0]} ${path}: ${r.stderr}`).toBe(2);
        expectOneLine(r.stderr, why);
        expect(readdirSync(arbiter)).toEqual([]);
      }
    }
  });

  it('a backup names the service port the primary bound, not 0', () => {
    const r = ftvm([...commands[1]![1], '--net', 'udp:0:53']);
    expect(r.status).toBe(2);
    expectOneLine(r.stderr, /^ftvm: --net udp:0:53: a backup binds its service port at go-live; name the port the primary bound, not 0$/);
  });

  it('an NBD server out of reach is a run-time failure: one line, exit 1, no usage line', async () => {
    // A port that was just free: nothing listens there.
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    for (const [name, args] of commands.slice(0, 2)) {
      const r = ftvm([...args.filter((a) => a !== '--disk' && a !== `file:${disk}`), '--disk', `nbd://127.0.0.1:${port}/zone`]);
      expect(r.status, `${name}: ${r.stderr}`).toBe(1);
      expectOneLine(r.stderr, new RegExp(`^ftvm: nbd://127\\.0\\.0\\.1:${port}/zone: connect ECONNREFUSED`));
      expect(r.stderr).not.toMatch(/^usage:/m);
    }
    // pair: the primary child fails; pair says so in its own one line, with the child's reason.
    const p = ftvm(['pair', DNS, '--disk', `nbd://127.0.0.1:${port}/zone`]);
    expect(p.status, p.stderr).toBe(1);
    expectOneLine(p.stderr, new RegExp(`^ftvm: the primary did not start \\(exit 1\\): nbd://127\\.0\\.0\\.1:${port}/zone: connect ECONNREFUSED`));
    expect(readdirSync(arbiter)).toEqual([]);
  });

  it('an export the NBD server does not have is the flag\'s error: one line, exit 2', async () => {
    const nbd = await startNbdServer(d, disk, 'zone');
    try {
      for (const [name, args] of commands.slice(0, 2)) {
        const r = ftvm([...args.filter((a) => a !== '--disk' && a !== `file:${disk}`), '--disk', `nbd://127.0.0.1:${nbd.port}/zome`]);
        expect(r.status, `${name}: ${r.stderr}`).toBe(2);
        expectOneLine(r.stderr, new RegExp(`^ftvm: nbd://127\\.0\\.0\\.1:${nbd.port}/zome: server refused export 'zome'`));
      }
    } finally {
      await nbd.stop();
    }
  });

  it('primary: a service port or a --listen port in use is one line, and the disk is let go', async () => {
    const s = createSocket('udp4');
    await new Promise<void>((r) => s.bind(0, '127.0.0.1', r));
    const tcp = createServer();
    await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
    try {
      const udpPort = s.address().port;
      let r = ftvm([...commands[0]![1], '--net', `udp:${udpPort}:53`]);
      expect(r.status).toBe(2);
      expectOneLine(r.stderr, new RegExp(`^ftvm: --net: udp 127\\.0\\.0\\.1:${udpPort} is in use$`));
      const tcpPort = (tcp.address() as AddressInfo).port;
      r = ftvm(['primary', DNS, '--listen', `127.0.0.1:${tcpPort}`, ...pairFlags, '--disk', `file:${disk}`, '--net', 'udp:0:53']);
      expect(r.status).toBe(1);
      expectOneLine(r.stderr, new RegExp(`^ftvm: cannot listen on 127\\.0\\.0\\.1:${tcpPort}: listen EADDRINUSE`));
      // It had opened (and locked) the disk: flushed and let go before it exited.
      expect(r.stderr).toMatch(/disk file:.*zone\.img flushed/);
      const run = ftvm(['run', DNS, '--disk', `file:${disk}`, '--max-instructions', '1000']);
      expect(run.stderr).not.toMatch(/in use/);
      expect(run.status).not.toBe(4);
    } finally {
      s.close();
      tcp.close();
    }
  });

  it('a key file shorter than 16 bytes is named', () => {
    const short = join(d, 'short.key');
    writeFileSync(short, 'abcd');
    for (const args of [commands[0]![1], commands[1]![1]]) {
      const r = ftvm([...args.map((a) => (a === key ? short : a))]);
      expect(r.status, r.stderr).toBe(2);
      expectOneLine(r.stderr, /short\.key: pre-shared key: 4 bytes, need at least 16$/);
    }
  });

  it('backup: --join to nothing is exit 1; --connect with --join is exit 2', () => {
    let r = ftvm(['backup', DNS, '--join', '127.0.0.1:1', '--connect-timeout-ms', '300', ...pairFlags, '--disk', `file:${disk}`, '--net', 'udp:5353:53']);
    expect(r.status).toBe(1);
    expectOneLine(r.stderr, /^ftvm: no primary: cannot connect to primary 127\.0\.0\.1:1: connect ECONNREFUSED/);
    expect(readdirSync(arbiter)).toEqual([]);
    r = ftvm(['backup', DNS, '--join', '127.0.0.1:1', '--connect', '127.0.0.1:1', ...pairFlags]);
    expect(r.status).toBe(2);
    expectOneLine(r.stderr, /^ftvm: --connect \(boot with a new primary\) or --join \(join a running one\), not both$/);
  });

  it('an --on-live that fails is one ftvm: line; the node serves on and stops cleanly', async () => {
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), ...commands[0]![1], '--net', 'udp:0:53', '--on-live', 'echo moving nothing; exit 3'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    while (!/primary listening/.test(err) && child.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGTERM');
    expect(await exited, err).toBe(0);
    clearTimeout(timer);
    expect(err).toMatch(/^on-live\| moving nothing$/m);
    expectOneLine(err, /^ftvm: on-live start: hook failed \(exit 3\) after \d+ ms; the node serves on$/);
  });
});
