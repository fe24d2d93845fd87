// `ftvm demo --dashboard`: the command serves the page, the buttons act on its pair, and it
// keeps serving after the run until Ctrl-C. Runs the built CLI, as a user would.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { takeViewFlags, ViewFlagError } from '../runtime/dashboard/cli.js';

const root = join(import.meta.dirname, '..');

describe('--inspect / --dashboard flags', () => {
  it('take an optional port and leave the other arguments alone', () => {
    expect(takeViewFlags(['--seed', '7', '--dashboard', '--quiet'])).toEqual({ rest: ['--seed', '7', '--quiet'], flags: { inspect: undefined, dashboard: 8080 } });
    expect(takeViewFlags(['--dashboard', '9000', '--inspect'])).toEqual({ rest: [], flags: { inspect: 0, dashboard: 9000 } });
    expect(takeViewFlags(['--inspect=4100', 'x.elf'])).toEqual({ rest: ['x.elf'], flags: { inspect: 4100, dashboard: undefined } });
    expect(() => takeViewFlags(['--dashboard=abc'])).toThrow(ViewFlagError);
    expect(() => takeViewFlags(['--dashboard=70000'])).toThrow(ViewFlagError);
  });
});

describe('ftvm demo --dashboard', () => {
  it('serves the page, kills the primary on POST, passes the checker, and stays up until SIGINT', async () => {
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'demo', '--guest', 'seq', '--quiet', '--dashboard', '0', '--inspect'], { cwd: root });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const until = async (cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> => {
      const end = Date.now() + ms;
      while (!(await cond())) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nstdout: ${out}\nstderr: ${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    try {
      await until(() => /dashboard at http/.test(err), 30_000, 'the dashboard URL');
      expect(err).toMatch(/inspecting every chart at ws:\/\/127\.0\.0\.1:\d+/);
      const url = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err)![1]!;
      const html = await (await fetch(url)).text();
      expect(html).toContain('Kill primary');
      const state = async () => ((await (await fetch(`${url}api/state`)).json()) as { view: { outputs: number } }).view;
      await until(async () => (await state()).outputs > 1000, 30_000, 'outputs');
      const kill = await fetch(`${url}api/kill-primary`, { method: 'POST' });
      expect(kill.status).toBe(200);
      const add = await fetch(`${url}api/add-backup`, { method: 'POST' });
      expect(add.status).toBe(501);
      expect(((await add.json()) as { message: string }).message).toMatch(/^not available yet/);
      await until(() => /checker: (PASS|FAIL)/.test(out), 60_000, 'the summary');
      expect(out).toContain('failovers: 1');
      expect(out).toContain('lost: 0');
      expect(out).toContain('checker: PASS');
      // The run is over, the page still answers.
      await until(() => /stays up/.test(err), 5000, 'the linger notice');
      expect((await fetch(url)).status).toBe(200);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
