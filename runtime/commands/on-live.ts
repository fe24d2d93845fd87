// `--on-live CMD` (DESIGN §3 The service moves with the live replica): an operator's hook run
// whenever this node becomes the one that serves, as keepalived runs its notify script on
// becoming MASTER. It typically moves the service address (`ip addr add 192.0.2.53/24 dev eth0`,
// a gratuitous ARP, a DNS or load-balancer update).

import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { CliError, readErrorText, writeAllSync } from './common.js';

/**
 * Refuse, before anything is opened, an `--on-live` whose command cannot run: its first word
 * a path that is missing, not a file or not executable, or a name the shell does not know.
 * Found only at a takeover, the mistake would leave the clients asking a dead host. A command
 * that starts with shell syntax is the shell's to judge.
 */
export function checkLiveHook(cmd: string): void {
  if (cmd.trim() === '') throw new CliError('--on-live wants a command (run by /bin/sh -c when the node starts serving)');
  const word = /^\s*([^\s;&|<>()$`'"\\{}=*?[\]#~]+)(?:\s|$)/.exec(cmd)?.[1];
  if (word === undefined) return;
  const bad = (why: string): CliError => new CliError(`--on-live ${word === cmd.trim() ? word : `${JSON.stringify(cmd)}: ${word}`}: ${why}`);
  if (word.includes('/')) {
    let st;
    try {
      st = statSync(word);
    } catch (e) {
      throw bad(readErrorText(e));
    }
    if (!st.isFile()) throw bad(st.isDirectory() ? 'is a directory, not a file' : 'not a file');
    try {
      accessSync(word, constants.X_OK);
    } catch {
      throw bad(`not executable (chmod +x ${word})`);
    }
    return;
  }
  // Builtins (exit, true), functions and $PATH, as the shell running the hook will see them.
  if (spawnSync('/bin/sh', ['-c', 'command -v -- "$1" >/dev/null 2>&1', 'sh', word], { stdio: 'ignore' }).status !== 0) throw bad('command not found');
}

/** The hooks' lifelines (fd 3): referenced here so that nothing closes them before the process ends. */
const lifelines = new Set<Socket>();

/** A hook that failed is the operator's to hear about: one `ftvm:` line, while the node serves on. */
const warn = (line: string): void => writeAllSync(2, Buffer.from(`ftvm: ${line}\n`));

/**
 * Why the hook runs, in FTVM_EVENT:
 *  - `start`: a primary starts serving (its first backup attached, the guest begins);
 *  - `go-live`: a backup won the arbiter and serves as the new primary;
 *  - `alone`: a live node lost its backup and won the arbiter, so it serves on alone.
 */
export type LiveEvent = 'start' | 'go-live' | 'alone';

export interface LiveHookContext {
  pairId: string;
  generation: number;
  role: 'primary' | 'backup';
  event: LiveEvent;
  /** The signal that stops the node, if one came while the hook ran (a start hook may stop its own node: README's does, when its address is in use elsewhere). */
  stopping?: () => string | undefined;
}

/**
 * Run `cmd` through /bin/sh -c, detached from the guest's console (stdin closed, stdout and
 * stderr to this process's stderr with a `on-live| ` prefix), never awaited by the guest: the
 * node keeps serving while the hook runs. Its exit status is reported; a failing hook is
 * reported, never fatal (the service may still be reachable, and the operator is told).
 * Resolves with the exit status (or the signal's name) for tests and callers that care.
 */
export function runLiveHook(cmd: string, ctx: LiveHookContext, note: (line: string) => void): Promise<string> {
  const env = {
    ...process.env,
    FTVM_PAIR_ID: ctx.pairId,
    FTVM_GENERATION: String(ctx.generation),
    FTVM_ROLE: ctx.role,
    FTVM_EVENT: ctx.event,
    // The node's own pid, for a hook that wants to know which process it serves.
    FTVM_PID: String(process.pid),
  };
  note(`on-live ${ctx.event}: running ${JSON.stringify(cmd)} (pair ${ctx.pairId}, generation ${ctx.generation}, role ${ctx.role})`);
  const t0 = performance.now();
  return new Promise((resolve) => {
    let child;
    try {
      // fd 3 is the node's lifeline: open for reading until this process ends, however it
      // ends (kill -9 included; the kernel closes the other end), so a watcher the hook leaves
      // behind (`read x <&3; ip addr del ...`) gives the service address up at once.
      child = spawn('/bin/sh', ['-c', cmd], { env, stdio: ['ignore', 'pipe', 'pipe', 'pipe'], detached: true });
    } catch (e) {
      warn(`on-live ${ctx.event}: cannot run the hook: ${(e as Error).message}`);
      resolve('error');
      return;
    }
    const lifeline = child.stdio[3] as Socket;
    // Held for the process's life (never closed, never read), and never what keeps it alive.
    lifeline.unref();
    lifelines.add(lifeline);
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => writeAllSync(2, Buffer.from(`on-live| ${line}\n`)));
    }
    // NOTE not unref'd: a hook the node waits for (at start) would otherwise let the event
    // loop empty once its pipes close, before its exit is seen. A node that has finished
    // is not kept by a hook still running: the CLI exits 2 s after its command returns.
    let settled = false;
    child.once('error', (e) => {
      if (settled) return;
      settled = true;
      warn(`on-live ${ctx.event}: cannot run the hook: ${e.message}`);
      resolve('error');
    });
    // The exit is reported once the hook's output is all out; not on 'close', which waits
    // for fd 3 too, that is for the watcher the hook may leave running. A job the hook left
    // in the background holding its stdout or stderr gets 100 ms, not the node's start.
    let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let open = 2;
    const report = (force = false): void => {
      if (settled || exited === undefined || (open > 0 && !force)) return;
      settled = true;
      const { code, signal } = exited;
      const ms = (performance.now() - t0).toFixed(0);
      if (code === 0) note(`on-live ${ctx.event}: hook exited 0 after ${ms} ms`);
      else {
        const stop = ctx.stopping?.();
        warn(`on-live ${ctx.event}: hook failed (${signal ? `killed by ${signal}` : `exit ${code}`}) after ${ms} ms; ${stop === undefined ? 'the node serves on' : `the node stops (${stop})`}`);
      }
      resolve(signal ?? String(code));
    };
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.once('close', () => {
        open--;
        report();
      });
    }
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      report();
      if (!settled) setTimeout(() => report(true), 100);
    });
  });
}

/**
 * Between this process's end and its hook's watcher taking the service address away (a
 * millisecond on an idle host, tens on a loaded one), the host still has the address and
 * nothing bound to the port: its kernel would refuse each client datagram (ICMP port
 * unreachable), and a client takes a refusal as an answer (dig and stub resolvers give up at
 * once, retries and all). A guard process holds the bound sockets for `holdMs` past the end of
 * this one, however it ends: datagrams then wait unanswered, and the client's retry reaches
 * the new live host. A clean stop releases the guard at once.
 */
export function guardServicePorts(fds: readonly number[], holdMs = 1000): { release(): void } {
  if (fds.length === 0) return { release: () => undefined };
  // fd 3: the lifeline (end of file when this process ends); 4...: the sockets, held not read.
  const guard = spawn('/bin/sh', ['-c', `read x <&3; sleep ${(holdMs / 1000).toFixed(3)}`], {
    stdio: ['ignore', 'ignore', 'ignore', 'pipe', ...fds], detached: true,
  });
  guard.on('error', () => undefined);
  guard.unref();
  const lifeline = guard.stdio[3] as Socket;
  lifeline.unref();
  lifelines.add(lifeline);
  return {
    release: () => {
      if (guard.exitCode === null && guard.signalCode === null && guard.pid !== undefined) guard.kill('SIGKILL');
    },
  };
}

/** Forwards on an address an `--on-live` hook moves between hosts (not loopback, not the wildcard). */
export const movedAddress = (hostAddr: string): boolean => !hostAddr.startsWith('127.') && hostAddr !== '0.0.0.0';
