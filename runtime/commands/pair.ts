// `ftvm pair`: a pair across two processes on this host, for trying the real thing in one
// command: a generated key, a file arbiter in a temp directory unless one is given, the
// primary and the backup as child processes on loopback. Their state changes are relayed
// to stderr with the child's name; the guest's console comes from whichever one is live.
// With --reprotect, whenever one replica is left alone (the other died, it won the arbiter
// and listens), a new backup process joins it (`ftvm backup --join`, DESIGN §3), so a pair
// under repeated kills stays protected.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { checkImage, CliError, memoryFlag, positiveInt, elfCountProblem } from './common.js';
import { cliRun, EXIT_REFUSED, loadArbiter, takeInspectFlag } from './primary.js';
import { checkPortFree } from '../dashboard/cli.js';
import { createSocket } from 'node:dgram';
import { checkLiveHook } from './on-live.js';
import { parseDiskSpec, parseNetSpec } from '../io/spec.js';

/**
 * The `--net` rules both children get: the primary binds them now, the backup at go-live, on
 * this one host the same port (DESIGN §3 the service moves with the live replica). A rule for
 * port 0 gets a free port here, so that both children name the same one.
 */
async function concreteForwards(specs: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const spec of specs) {
    let f;
    try {
      f = parseNetSpec(spec);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
    if (f.hostPort === 0) {
      const s = createSocket('udp4');
      f.hostPort = await new Promise<number>((resolve, reject) => {
        s.once('error', (e) => reject(new CliError(`--net ${spec}: ${e.message}`)));
        s.bind(0, f.hostAddr, () => resolve(s.address().port));
      }).finally(() => s.close());
    }
    out.push(`udp:${f.hostAddr}:${f.hostPort}:${f.guestPort}`);
  }
  return out;
}

// --inspect PORT: one relay per replica process (each inspects its own charts): the primary's
// on PORT, the backup's on PORT+1, a re-protecting backupN's on PORT+N; without PORT (or 0,
// or past 65535) each takes any free port. Every replica prints its ws:// URL, relayed here with its name.
const USAGE = 'pair <elf> [--arbiter SPEC] [--pair-id ID] [--mem MiB] [--suspect-ms N] [--heartbeat-link] [--reprotect]\n' +
  '      [--disk file:PATH|nbd://HOST:PORT/EXPORT] [--net udp:[ADDR:]HOSTPORT:GUESTPORT]... [--on-live CMD]\n' +
  '      [--inspect [PORT]]  (primary on PORT, backup on PORT+1, backupN on PORT+N)';

/** 128 + SIGPIPE, as `ftvm run` exits when its reader goes away. */
const EXIT_BROKEN_PIPE = 141;

/**
 * The children report released console bytes as JSON lines on fd 3 (their --outputs); this process
 * is their client: it prints each console byte once, dropping by output index the duplicates
 * a failover re-issues (DESIGN §3), as a TCP receiver drops segments by sequence number.
 */
class Client {
  private next = 0;
  /** Set once stdout failed (EPIPE): whoever read the console is gone. */
  broken = false;
  take(line: string): void {
    let o: { i: number; k: string; v: number };
    try {
      o = JSON.parse(line) as typeof o;
    } catch {
      return;
    }
    if (o.i < this.next) return;
    this.next = o.i + 1;
    if (o.k === 'console' && !this.broken) process.stdout.write(Buffer.of(o.v));
  }
}

function relay(child: ChildProcess, name: string, client: Client, onLine?: (line: string) => void): void {
  createInterface({ input: child.stdio[3] as NodeJS.ReadableStream }).on('line', (line) => client.take(line));
  createInterface({ input: child.stderr! }).on('line', (line) => {
    process.stderr.write(`${name}| ${line}\n`);
    onLine?.(line);
  });
}

const exited = (c: ChildProcess): Promise<number> =>
  new Promise((resolve) => {
    if (c.exitCode !== null || c.signalCode !== null) resolve(c.exitCode ?? 128);
    else c.once('exit', (code, sig) => resolve(code ?? (sig ? 128 : 1)));
  });

interface Replica {
  name: string;
  child: ChildProcess;
  /** Where it takes a joining backup: the primary from the start, a backup once live. */
  port?: number;
  joined: boolean;
  done: Promise<number>;
  /** The last `ftvm:` line it printed: why it failed, if it did. */
  said?: string;
}

async function pair(argv: string[]): Promise<number> {
  const { rest, inspect } = takeInspectFlag(argv);
  /** The --inspect flag for the replica that is the `n`th (0: primary, 1: backup, N: backupN). */
  const inspectFor = (n: number): string[] => (inspect === undefined ? [] : ['--inspect', String(inspect === 0 || inspect + n > 65535 ? 0 : inspect + n)]);
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      arbiter: { type: 'string' }, 'pair-id': { type: 'string' }, mem: { type: 'string' }, 'suspect-ms': { type: 'string' }, batch: { type: 'string' },
      reprotect: { type: 'boolean' }, disk: { type: 'string' }, net: { type: 'string', multiple: true }, 'on-live': { type: 'string' },
      'heartbeat-link': { type: 'boolean' },
    },
  });
  const elfProblem = elfCountProblem(positionals, argv);
  if (elfProblem !== undefined) throw new CliError(elfProblem);
  const elf = positionals[0]!;
  // Checked here, not by the children: a bad flag or image is one `ftvm:` line of this command.
  const memoryMiB = memoryFlag(values.mem);
  positiveInt('suspect-ms', values['suspect-ms'], 1);
  positiveInt('batch', values.batch, 1);
  checkImage(elf, memoryMiB);
  if (values.disk !== undefined) {
    try {
      parseDiskSpec(values.disk);
    } catch (e) {
      throw new CliError((e as Error).message);
    }
  }
  if (values['on-live'] !== undefined) checkLiveHook(values['on-live']);
  const forwards = await concreteForwards(values.net ?? []);
  if (values.arbiter !== undefined) await loadArbiter(values.arbiter).close();
  // Each child would fail on a taken port with a relayed line: check the first two here.
  if (inspect !== undefined && inspect !== 0) {
    await checkPortFree('--inspect', inspect);
    if (inspect < 65535) await checkPortFree('--inspect', inspect + 1);
  }
  const reprotect = values.reprotect === true;
  // A stop signal from here on is this command's to handle: its children are stopped and waited
  // for and its directory (the key, the arbiter) removed, also while the primary is starting
  // (was: Node's default death, exit 143 with no line, the directory left behind).
  let stopped: string | undefined;
  let stopAll = (): void => undefined;
  const onSignal = (signal: string) => (): void => {
    stopped ??= signal;
    stopAll();
  };
  const onTerm = onSignal('SIGTERM');
  const onInt = onSignal('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  const dir = mkdtempSync(join(tmpdir(), 'ftvm-pair-'));
  try {
    const keyFile = join(dir, 'key');
    writeFileSync(keyFile, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
    const arbiter = values.arbiter ?? `file:${dir}`;
    // The primary makes the pair instance id (DESIGN §3 Identity); --pair-id resumes one.
    const pairId = values['pair-id'] === undefined ? [] : ['--pair-id', values['pair-id']];
    const extra = [
      ...(values.mem ? ['--mem', values.mem] : []),
      ...(values['suspect-ms'] ? ['--suspect-ms', values['suspect-ms']] : []),
      ...(values.batch ? ['--batch', values.batch] : []),
      // The heartbeat link (off by default) in every replica, if asked (primary.ts heartbeatLink).
      ...(values['heartbeat-link'] ? ['--heartbeat-link'] : []),
    ];
    // Both replicas name the same disk and ports: the primary uses them, the backup at go-live.
    const io = [
      ...(values.disk === undefined ? [] : ['--disk', values.disk]),
      ...forwards.flatMap((f) => ['--net', f]),
      ...(values['on-live'] === undefined ? [] : ['--on-live', values['on-live']]),
    ];
    // The children's console only: a service's frames would each cost a JSON line, a write
    // and a parse here, and nothing here reads them.
    const common = ['--key-file', keyFile, '--arbiter', arbiter, ...pairId, '--outputs', 'console:fd:3', ...extra, ...io];
    const client = new Client();
    const stdio: ['ignore', 'ignore', 'pipe', 'pipe'] = ['ignore', 'ignore', 'pipe', 'pipe'];
    const cli = process.argv[1]!;
    const replicas: Replica[] = [];
    const codes: number[] = [];
    let finished = false;
    let joins = 0;
    // No joiner before the first backup has been started (the primary alone waits for it).
    let paired = false;
    let retry: NodeJS.Timeout | undefined;

    const launch = (name: string, args: string[]): Replica => {
      const child = spawn(process.execPath, [cli, ...args], { stdio });
      const r: Replica = { name, child, joined: false, done: exited(child) };
      // So that a replica can be killed by its pid, to watch the other one take over.
      process.stderr.write(`pair| ${name} pid ${child.pid}\n`);
      relay(child, name, client, (line) => {
        const m = / (?:primary|backup) listening [^ ]+:(\d+) /.exec(line);
        if (m) {
          r.port = Number(m[1]);
          maybeJoin();
        }
        if (/ joined [^ ]+ pair /.test(line)) r.joined = true;
        if (line.startsWith('ftvm: ')) r.said = line.slice(6);
      });
      replicas.push(r);
      void r.done.then((code) => {
        codes.push(code);
        if (code === 0) finished = true;
        replicas.splice(replicas.indexOf(r), 1);
        // A joiner turned away (the survivor not alone yet: busy) is tried again shortly.
        if (!finished) {
          clearTimeout(retry);
          retry = setTimeout(maybeJoin, r.joined || r.name === 'primary' || r.name === 'backup' ? 0 : 200);
        }
      });
      return r;
    };
    /** One replica left, live and listening: give it a new backup. */
    const maybeJoin = (): void => {
      if (!reprotect || !paired || finished || replicas.length !== 1 || replicas[0]!.port === undefined) return;
      const survivor = replicas[0]!;
      joins++;
      process.stderr.write(`pair| re-protecting: backup${joins + 1} joins ${survivor.name} on port ${survivor.port}\n`);
      launch(`backup${joins + 1}`, ['backup', elf, '--join', `127.0.0.1:${survivor.port}`, '--listen', '127.0.0.1:0', '--name', `backup${joins + 1}`, ...inspectFor(joins + 1), ...common]);
    };

    const stop = (): void => {
      finished = true;
      for (const r of replicas) r.child.kill('SIGTERM');
    };
    stopAll = stop;
    const primary = launch('primary', ['primary', elf, '--listen', '127.0.0.1:0', ...inspectFor(0), ...common]);
    const port = await new Promise<number | undefined>((resolve) => {
      const t = setInterval(() => {
        if (stopped !== undefined) resolve(undefined);
        else if (primary.port !== undefined) resolve(primary.port);
        else if (primary.child.exitCode !== null || primary.child.signalCode !== null) resolve(undefined);
        if (stopped !== undefined || primary.port !== undefined || primary.child.exitCode !== null || primary.child.signalCode !== null) clearInterval(t);
      }, 5);
    });
    if (stopped !== undefined) {
      // Stopped while the primary was starting: it stops before its guest runs (exit 0, its line).
      await primary.done;
      process.stderr.write(`pair| stopped by ${stopped} while starting: the guest never ran\n`);
      return 0;
    }
    if (port === undefined) {
      // The primary failed before it listened (a disk or port it could not open): say so as
      // this command's own line; its relayed lines above carry the details.
      const code = (await primary.done) || 1;
      process.stderr.write(`ftvm: the primary did not start (exit ${code})${primary.said ? `: ${primary.said}` : ''}\n`);
      return code;
    }
    launch('backup', ['backup', elf, '--connect', `127.0.0.1:${port}`, ...(reprotect ? ['--listen', '127.0.0.1:0'] : []), ...inspectFor(1), ...common]);
    paired = true;
    // The console's reader went away (`ftvm pair ... | head`): stop the children, as SIGPIPE would stop us.
    const onStdoutError = (): void => {
      client.broken = true;
      stop();
    };
    process.stdout.on('error', onStdoutError);
    // Until no replica is left (a joiner may be started while we wait).
    while (replicas.length > 0) await Promise.all(replicas.map((r) => r.done));
    clearTimeout(retry);
    // NOTE the stdout listener stays: writes already queued may still fail after we return.
    if (client.broken) return EXIT_BROKEN_PIPE;
    // The guest's exit code is whichever replica finished it; a halted replica exits with 3.
    // A joiner turned away (5) says nothing about the guest.
    return codes.includes(0) ? 0 : codes.find((c) => c !== 3 && c !== 1 && c !== EXIT_REFUSED) ?? codes[0] ?? 1;
  } finally {
    process.off('SIGTERM', onTerm);
    process.off('SIGINT', onInt);
    rmSync(dir, { recursive: true, force: true });
  }
}

export const command: Command = {
  usage: USAGE,
  summary: 'run a pair as two processes on loopback (generated key, file arbiter), relaying their state changes',
  run: cliRun(USAGE, pair),
};
