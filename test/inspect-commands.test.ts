// `--inspect` on the process commands: `ftvm run` runs the guest under its CPU chart (actor
// `cpu`) and `ftvm primary`/`backup` pass the inspector to their nodes; a WebSocket client
// attached to the relay URL printed on stderr sees the actors and their states.
// Runs the built CLI (bin/ftvm.js -> dist/), built once by test/global-setup.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { addi, andi, beq, lbu, lui, RAM, sw } from './cpu-asm.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'bin/ftvm.js');
const dirs: string[] = [];
const fresh = (): string => {
  const d = mkdtempSync(join(tmpdir(), 'ftvm-inspect-'));
  dirs.push(d);
  return d;
};
const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Msg { type: string; sessionId: string; name?: string; snapshot?: { value?: unknown } }

/** Waits on the UART until a byte arrives, then powers off with exit code 3: it runs until told. */
const WAIT_THEN_EXIT = [
  lui(5, 0x10000),
  lbu(6, 5, 5), // loop: LSR
  andi(6, 6, 1),
  beq(6, 0, -8),
  lui(29, 0x100),
  lui(30, 0x33),
  addi(30, 30, 0x333), // (3 << 16) | 0x3333: sifive_test fail with code 3
  sw(30, 29, 0),
  0x0000_006f,
];

/** An ELF32 RISC-V executable holding `words` at RAM. */
function elfOf(words: number[]): Uint8Array {
  const b = Buffer.alloc(84 + words.length * 4);
  b.set([0x7f, 0x45, 0x4c, 0x46, 1, 1, 1]);
  b.writeUInt16LE(2, 16); b.writeUInt16LE(243, 18); b.writeUInt32LE(1, 20);
  b.writeUInt32LE(RAM, 24); b.writeUInt32LE(52, 28);
  b.writeUInt16LE(52, 40); b.writeUInt16LE(32, 42); b.writeUInt16LE(1, 44);
  b.writeUInt32LE(1, 52); b.writeUInt32LE(84, 56); b.writeUInt32LE(RAM, 60); b.writeUInt32LE(RAM, 64);
  b.writeUInt32LE(words.length * 4, 68); b.writeUInt32LE(words.length * 4, 72);
  words.forEach((w, i) => b.writeInt32LE(w | 0, 84 + 4 * i));
  return b;
}

const until = async (cond: () => boolean, ms: number, what: string): Promise<void> => {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};

/** Start the CLI; its stderr is collected, and the relay URL it reports is picked out. */
function start(args: string[]): { child: ChildProcess; err: () => string; url: () => string | undefined; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [cli, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  child.stdout!.resume();
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, err: () => err, url: () => /inspecting every chart at (ws:\/\/\S+)/.exec(err)?.[1], exit };
}

const attach = (url: string): Promise<{ ws: WebSocket; got: Msg[] }> =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const got: Msg[] = [];
    ws.on('message', (d) => got.push(JSON.parse(d.toString()) as Msg));
    ws.once('open', () => resolve({ ws, got }));
    ws.once('error', reject);
  });

const actor = (got: Msg[], name: string): Msg | undefined => got.find((m) => m.type === '@xstate.actor' && m.name === name);
const states = (got: Msg[], name: string): string[] => {
  const session = actor(got, name)?.sessionId;
  return got.filter((m) => m.type === '@xstate.snapshot' && m.sessionId === session).map((m) => JSON.stringify(m.snapshot?.value));
};

describe('--inspect on the process commands', () => {
  it('`ftvm run --inspect` shows the cpu actor and its states', async () => {
    const elf = join(fresh(), 'wait.elf');
    writeFileSync(elf, elfOf(WAIT_THEN_EXIT));
    const p = start(['run', elf, '--inspect', '0']);
    await until(() => p.url() !== undefined, 10_000, 'the relay URL');
    expect(p.url()).toMatch(/^ws:\/\/127\.0\.0\.1:\d+$/);
    const viewer = await attach(p.url()!);
    await until(() => states(viewer.got, 'cpu').includes('"running"'), 10_000, 'the cpu actor running');
    // A byte on the console ends the guest: the chart reaches `halted` and the code is the guest's.
    p.child.stdin!.end('x');
    await until(() => states(viewer.got, 'cpu').includes('"halted"'), 10_000, 'the cpu actor halted');
    expect(await p.exit).toBe(3);
    viewer.ws.close();
  }, 30_000);

  it('`ftvm run` without --inspect is unchanged', async () => {
    const p = start(['run', join(root, 'guests/hello/hello.elf')]);
    p.child.stdin!.end();
    expect(await p.exit).toBe(0);
    expect(p.err()).not.toMatch(/inspecting/);
  }, 30_000);

  it("`ftvm primary --inspect` and `ftvm backup --inspect` show the nodes' charts", async () => {
    const d = fresh();
    writeFileSync(join(d, 'key'), 'ab'.repeat(32));
    const seq = join(root, 'guests/seq-short/seq-short.elf');
    const common = ['--key-file', join(d, 'key'), '--arbiter', `file:${d}`];
    const primary = start(['primary', seq, '--listen', '127.0.0.1:0', '--inspect', ...common]);
    await until(() => primary.url() !== undefined && / listening 127\.0\.0\.1:\d+ /.test(primary.err()), 10_000, 'the primary listening');
    const pv = await attach(primary.url()!);
    const port = / listening 127\.0\.0\.1:(\d+) /.exec(primary.err())![1]!;
    const backup = start(['backup', seq, '--connect', `127.0.0.1:${port}`, '--inspect', '0', ...common]);
    await until(() => backup.url() !== undefined, 10_000, 'the backup relay URL');
    const bv = await attach(backup.url()!);
    await until(() => states(pv.got, 'primary').includes('{"protected":"flowing"}'), 20_000, 'the primary protected');
    await until(() => actor(pv.got, 'primary.cpu') !== undefined, 10_000, 'the primary CPU chart');
    await until(() => actor(bv.got, 'backup') !== undefined && states(bv.got, 'backup').length > 0, 20_000, 'the backup chart');
    expect([await primary.exit, await backup.exit]).toEqual([0, 0]);
    pv.ws.close();
    bv.ws.close();
  }, 60_000);

  it('`ftvm pair --inspect` gives each replica its relay and relays their URLs', async () => {
    const p = start(['pair', join(root, 'guests/seq-short/seq-short.elf'), '--inspect']);
    expect(await p.exit).toBe(0);
    const urls = [...p.err().matchAll(/^(primary|backup)\| ftvm: inspecting every chart at (ws:\/\/127\.0\.0\.1:\d+)/gm)].map((m) => m[1]);
    expect(urls.sort()).toEqual(['backup', 'primary']);
  }, 60_000);
});
