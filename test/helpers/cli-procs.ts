// `ftvm` processes for tests: each a direct child of the test (node bin/ftvm.js ...), its
// stderr collected, killed by PID when the suite ends.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const root = fileURLToPath(new URL('../..', import.meta.url));
export const cli = join(root, 'bin/ftvm.js');

export interface Proc {
  child: ChildProcess;
  err: () => string;
  /** Resolves with the first match of `re` in its stderr. */
  waitErr: (re: RegExp, ms?: number) => Promise<RegExpExecArray>;
  exit: Promise<string>;
}

const started: ChildProcess[] = [];

/** Kill what is still running (an afterAll of every suite that starts processes). */
export function killAll(): void {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
}

export function startFtvm(args: string[]): Proc {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  started.push(child);
  let text = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { text += s; });
  const exit = new Promise<string>((resolve) => child.once('exit', (code, sig) => resolve(sig ?? String(code))));
  const waitErr = async (re: RegExp, ms = 20_000): Promise<RegExpExecArray> => {
    const t0 = Date.now();
    for (;;) {
      const m = re.exec(text);
      if (m) return m;
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${re} in:\n${text}`);
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`exited before ${re}:\n${text}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, err: () => text, waitErr, exit };
}

/** The process exists (a zombie its parent has not reaped counts). */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

export const outputsIn = (file: string): number => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').length - 1 : 0);

export async function waitOutputs(file: string, n: number, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (outputsIn(file) < n) {
    if (Date.now() - t0 > ms) throw new Error(`${file}: fewer than ${n} outputs after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `node bin/ftvm.js ...` as a direct child; spawnSync kills it (by its PID) at the timeout. */
export function ftvm(args: string[], timeoutMs = 20_000): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', input: '', timeout: timeoutMs, killSignal: 'SIGKILL' });
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
