// Operator errors found by the fifth pass (docs/RELIABILITY.md "Operator errors, fifth pass"):
// each is one `ftvm:` line, the README's exit code, and nothing lost. One test per defect;
// each failed before its fix.
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { expectOneLine, ftvm, killAll, root, startFtvm } from './helpers/cli-procs.js';

const HELLO = join(root, 'guests/hello/hello.elf');
const DNS = join(root, 'guests/dns/dns.elf');
const dir = mkdtempSync(join(tmpdir(), 'ftvm-operator-audit-'));
afterAll(() => {
  killAll();
  rmSync(dir, { recursive: true, force: true });
});

describe('record keeps the log an earlier run left when it refuses to start', () => {
  const log = join(dir, 'kept.log');
  const notElf = join(dir, 'not.elf');
  writeFileSync(notElf, 'hello\n');

  it('a bad image or a --mem the machine cannot have: one line, exit 2, the old log untouched', () => {
    const first = ftvm(['record', HELLO, '--log', log]);
    expect(first.status, first.stderr).toBe(0);
    const before = readFileSync(log);
    for (const [args, line] of [
      [[notElf], /^ftvm: .*not\.elf: not an ELF file \(bad magic\)$/],
      [[join(root, 'test/fixtures/hello-rv32imac.elf')], /^ftvm: .*hello-rv32imac\.elf: .*/],
      [[HELLO, '--mem', '99999'], /^ftvm: --mem wants 1 to \d+ MiB, got '99999'$/],
    ] as const) {
      const r = ftvm(['record', ...args, '--log', log]);
      expect(r.status, r.stderr).toBe(2);
      expectOneLine(r.stderr, line);
      expect(readFileSync(log).equals(before), `${args.join(' ')} rewrote the log`).toBe(true);
    }
    // And the log is still whole: it replays.
    const rep = ftvm(['replay', HELLO, '--log', log]);
    expect(rep.status, rep.stderr).toBe(0);
  });
});

describe('a primary refused at start never runs its --on-live hook', () => {
  // A hook takes the service address and leaves a watcher that gives it up when its ftvm
  // process ends (README, two hosts). A second primary refused after its hook ran would take
  // the address from the live one as it exits.
  const key = join(dir, 'key');
  writeFileSync(key, 'ab'.repeat(32));
  const arbiter = join(dir, 'arbiter');
  mkdirSync(arbiter);
  const disk = join(dir, 'zone.img');
  copyFileSync(join(root, 'guests/dns/zone.img'), disk);
  const hookLog = join(dir, 'hook.log');
  const hook = join(dir, 'hook.sh');
  writeFileSync(hook, `#!/bin/sh\necho "take $FTVM_PID" >> ${hookLog}\n(read x <&3; echo "give-up $FTVM_PID" >> ${hookLog}) &\n`);
  chmodSync(hook, 0o755);
  const takes = (): string[] => (existsSync(hookLog) ? readFileSync(hookLog, 'utf8').split('\n').filter((l) => l.startsWith('take')) : []);

  it('a disk in use, a missing disk, a --listen, service or --inspect port in use: its line and exit code, and no hook', async () => {
    const live = startFtvm(['primary', DNS, '--listen', '127.0.0.1:0', '--key-file', key, '--arbiter', `file:${arbiter}`,
      '--disk', `file:${disk}`, '--net', 'udp:0:53', '--inspect', '0', '--on-live', hook]);
    const listening = await live.waitErr(/primary listening 127\.0\.0\.1:(\d+) /);
    const udp = (await live.waitErr(/forwarding udp 127\.0\.0\.1:(\d+) /))[1]!;
    const inspect = (await live.waitErr(/ws:\/\/127\.0\.0\.1:(\d+)/))[1]!;
    const tcp = listening[1]!;
    expect(takes()).toHaveLength(1);
    const other = join(dir, 'other.img');
    copyFileSync(disk, other);
    const second = (args: string[]): string[] => ['primary', DNS, '--key-file', key, '--arbiter', `file:${arbiter}`, '--on-live', hook, ...args];
    for (const [args, code, line] of [
      [['--listen', '127.0.0.1:0', '--disk', `file:${disk}`, '--net', 'udp:0:53'], 4, /^ftvm: disk .*zone\.img is in use by another guest/],
      [['--listen', '127.0.0.1:0', '--disk', `file:${join(dir, 'missing.img')}`, '--net', 'udp:0:53'], 2, /^ftvm: .*missing\.img: no such file$/],
      [['--listen', `127.0.0.1:${tcp}`, '--disk', `file:${other}`, '--net', 'udp:0:53'], 1, new RegExp(`^ftvm: cannot listen on 127\\.0\\.0\\.1:${tcp}: .*EADDRINUSE`)],
      [['--listen', '127.0.0.1:0', '--disk', `file:${other}`, '--net', `udp:${udp}:53`], 2, new RegExp(`^ftvm: --net: udp 127\\.0\\.0\\.1:${udp} is in use$`)],
      [['--listen', '127.0.0.1:0', '--disk', `file:${other}`, '--net', 'udp:0:53', '--inspect', inspect], 1, /^ftvm: --inspect.*/],
    ] as const) {
      const r = ftvm(second([...args]));
      expect(r.status, r.stderr).toBe(code);
      expectOneLine(r.stderr, line);
      expect(r.stderr).not.toMatch(/on-live start|on-live\|/);
    }
    // Only the live primary's hook ran, and nobody gave its address up.
    expect(readFileSync(hookLog, 'utf8').trim().split('\n')).toEqual([expect.stringMatching(/^take \d+$/)]);
    live.child.kill('SIGTERM');
    expect(await live.exit).toBe('0');
    expect(statSync(hookLog).size).toBeGreaterThan(0);
  });
});

describe('a stop signal while a node is still starting', () => {
  // Before its own handlers were set, SIGTERM killed a node with Node's default action: exit
  // 143, no line, and a start hook left running without its node.
  const key = join(dir, 'key2');
  writeFileSync(key, 'cd'.repeat(32));
  const arbiter = join(dir, 'arbiter2');
  mkdirSync(arbiter);
  const pairFlags = ['--key-file', key, '--arbiter', `file:${arbiter}`];

  it('primary, during its start hook: the hook ends first, then exit 0 and one note; the guest never ran', async () => {
    const hookLog = join(dir, 'slow-hook.log');
    const hook = join(dir, 'slow-hook.sh');
    writeFileSync(hook, `#!/bin/sh\necho start >> ${hookLog}\nsleep 1\necho done >> ${hookLog}\n`);
    chmodSync(hook, 0o755);
    const p = startFtvm(['primary', HELLO, '--listen', '127.0.0.1:0', ...pairFlags, '--on-live', hook]);
    await p.waitErr(/on-live start: running/);
    p.child.kill('SIGTERM');
    expect(await p.exit, p.err()).toBe('0');
    expect(readFileSync(hookLog, 'utf8')).toBe('start\ndone\n');
    expect(p.err()).toMatch(/primary stopped by SIGTERM while starting: the guest never ran/);
    expect(p.err()).not.toMatch(/primary listening/);
    expect(p.err()).not.toMatch(/^ftvm:/m);
  });

  for (const who of ['primary', 'backup'] as const) {
    it(`${who}, while its NBD server has not answered yet: exit 0 and one note, no NBD error`, async () => {
      // A server that takes the connection and never says a word: the handshake waits.
      const { createServer } = await import('node:net');
      let connected = false;
      const silent = createServer(() => { connected = true; });
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const nbdPort = (silent.address() as { port: number }).port;
      try {
        const where = who === 'primary' ? ['--listen', '127.0.0.1:0'] : ['--connect', '127.0.0.1:1'];
        const p = startFtvm([who, DNS, ...where, ...pairFlags, '--disk', `nbd://127.0.0.1:${nbdPort}/zone`, '--net', 'udp:5399:53']);
        const t0 = Date.now();
        while (!connected && Date.now() - t0 < 20_000) await new Promise((r) => setTimeout(r, 20));
        expect(connected).toBe(true);
        p.child.kill('SIGTERM');
        expect(await p.exit, p.err()).toBe('0');
        expect(p.err()).toMatch(new RegExp(`${who} stopped by SIGTERM while starting: the guest never ran`));
        expect(p.err()).not.toMatch(/^ftvm:/m);
      } finally {
        silent.close();
      }
    });
  }
});

describe('plain words where a raw error or nothing was said', () => {
  it('ftvm with no command: one line and the usage, exit 2', () => {
    const r = ftvm([]);
    expect(r.status).toBe(2);
    expectOneLine(r.stderr, /^ftvm: missing command$/);
    expect(r.stderr).toMatch(/^usage: ftvm <command>/m);
  });

  it('replay --log DIR and primary --outputs DIR: "is a directory, not a file"', () => {
    const d = join(dir, 'a-directory');
    mkdirSync(d, { recursive: true });
    const rep = ftvm(['replay', HELLO, '--log', d]);
    expect(rep.status).toBe(2);
    expectOneLine(rep.stderr, /^ftvm: .*a-directory: is a directory, not a file$/);
    const key = join(dir, 'key3');
    writeFileSync(key, 'ef'.repeat(32));
    const p = ftvm(['primary', HELLO, '--listen', '127.0.0.1:0', '--key-file', key, '--arbiter', `file:${dir}`, '--outputs', d]);
    expect(p.status).toBe(2);
    expectOneLine(p.stderr, /^ftvm: --outputs .*a-directory: is a directory, not a file$/);
  });
});

describe('a flag given twice', () => {
  it('is one line and exit 2 before anything starts, for every command; --net may repeat', () => {
    const arb = join(dir, 'twice-arb');
    for (const args of [
      ['backup', HELLO, '--connect', '127.0.0.1:1', '--key-file', '/nonexistent', '--arbiter', `file:${arb}`, '--arbiter', 'etcd:127.0.0.1:1'],
      ['primary', HELLO, '--listen', '127.0.0.1:0', '--arbiter', `file:${arb}`, '--key-file', '/a', '--key-file=/b'],
      ['run', HELLO, '--mem', '8', '--mem', '16'],
      ['pair', HELLO, '--suspect-ms', '100', '--suspect-ms=200'],
    ]) {
      const r = ftvm(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      const flag = args[0] === 'backup' ? 'arbiter' : args[0] === 'primary' ? 'key-file' : args[0] === 'run' ? 'mem' : 'suspect-ms';
      expectOneLine(r.stderr, new RegExp(`^ftvm: --${flag} given more than once: give it once$`));
    }
    // Nothing started: no arbiter directory was made.
    expect(existsSync(arb)).toBe(false);
    // Each --net is a forward of its own: given twice it is no error of this kind.
    const r = ftvm(['run', HELLO, '--net', 'udp:127.0.0.1:0:53', '--net', 'udp:127.0.0.1:0:54']);
    expect(r.stderr).not.toMatch(/given more than once/);
  });
});

describe('a word after --inspect that is not a port', () => {
  it('is named in the one line that says one <elf> only, exit 2, for every command that takes --inspect', () => {
    for (const cmd of ['run', 'primary', 'backup', 'pair']) {
      const r = ftvm([cmd, '--inspect', 'abc', HELLO]);
      expect(r.status, `${cmd}: ${r.stderr}`).toBe(2);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('ftvm:'));
      expect(lines, r.stderr).toEqual([`ftvm: one <elf> only, got 2: 'abc', '${HELLO}' ('abc' follows --inspect, whose port is a number)`]);
    }
    // Two images and no --inspect: both named, no hint.
    const r = ftvm(['record', HELLO, HELLO, '--log', join(dir, 'two-elf.log')]);
    expect(r.status).toBe(2);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('ftvm:'))).toEqual([`ftvm: one <elf> only, got 2: '${HELLO}', '${HELLO}'`]);
  });
});

describe('an etcd arbiter out of reach and a start that fails', () => {
  it('says only why the start failed: the probe cut short by the close is not a second line', () => {
    const key = join(dir, 'etcd-key');
    writeFileSync(key, 'a'.repeat(64));
    const missing = join(dir, 'no-such-dir', 'disk.img');
    const common = ['--key-file', key, '--arbiter', 'etcd:127.0.0.1:1', '--disk', `file:${missing}`];
    for (const args of [
      ['primary', HELLO, '--listen', '127.0.0.1:0', ...common],
      ['backup', HELLO, '--connect', '127.0.0.1:9', ...common],
    ]) {
      const r = ftvm(args);
      expect(r.status, `${args[0]}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split('\n').filter((l) => l.startsWith('ftvm:')), `${args[0]}: ${r.stderr}`).toEqual([`ftvm: ${missing}: no such file`]);
    }
  });
});

describe('an option without its value, or a flag given one', () => {
  it('is one ftvm: line naming the option, exit 2', () => {
    for (const [args, line] of [
      [['backup', DNS, '--connect', '127.0.0.1:9', '--join', '--net', 'udp:5353:53'], "ftvm: --join needs a value, and the word after it is an option (a value that starts with '-' is given as --join=VALUE)"],
      [['pair', DNS, '--on-live'], 'ftvm: --on-live needs a value'],
      [['primary', DNS, '--listen'], 'ftvm: --listen needs a value'],
      [['run', HELLO, '--stats=yes'], 'ftvm: --stats takes no value'],
      [['record', HELLO, '--log'], 'ftvm: --log needs a value'],
    ] as const) {
      const r = ftvm([...args]);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('usage:') && !l.startsWith('      ')), args.join(' ')).toEqual([line]);
    }
  });
});
