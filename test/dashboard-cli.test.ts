// `ftvm demo --dashboard`: the command serves the page, the buttons act on its pair (kill the
// primary, then re-protect it with a new backup), and it keeps serving after the run until
// Ctrl-C. Runs the built CLI, as a user would.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { takeViewFlags, ViewFlagError } from '../runtime/dashboard/cli.js';

const root = join(import.meta.dirname, '..');

describe('--inspect / --dashboard flags', () => {
  it('take an optional port and leave the other arguments alone', () => {
    expect(takeViewFlags(['--seed', '7', '--dashboard', '--quiet'])).toEqual({ rest: ['--seed', '7', '--quiet'], flags: { inspect: undefined, dashboard: 8080 } });
    expect(takeViewFlags(['--pace', '40', '--dashboard', '--seed', '3'])).toEqual({ rest: ['--seed', '3'], flags: { inspect: undefined, dashboard: 8080, pace: 40 } });
    expect(takeViewFlags(['--pace=100'])).toEqual({ rest: [], flags: { inspect: undefined, dashboard: undefined, pace: 100 } });
    for (const bad of [['--pace'], ['--pace', '0'], ['--pace=101'], ['--pace', 'slow']]) expect(() => takeViewFlags(bad)).toThrow(ViewFlagError);
    expect(takeViewFlags(['--dashboard', '9000', '--inspect'])).toEqual({ rest: [], flags: { inspect: 0, dashboard: 9000 } });
    expect(takeViewFlags(['--inspect=4100', 'x.elf'])).toEqual({ rest: ['x.elf'], flags: { inspect: 4100, dashboard: undefined } });
    expect(() => takeViewFlags(['--dashboard=abc'])).toThrow(ViewFlagError);
    expect(() => takeViewFlags(['--dashboard=70000'])).toThrow(ViewFlagError);
  });
});

describe('ftvm demo --dashboard', () => {
  it('serves the page, kills the primary and adds a backup on POST, passes the checker, and stays up until SIGINT', async () => {
    // At half speed: alone after the failover, the primary would otherwise end `seq` within a second.
    const child = spawn(process.execPath, [join(root, 'bin/ftvm.js'), 'demo', '--guest', 'seq', '--quiet', '--dashboard', '0', '--inspect', '--pace', '50'], { cwd: root });
    // Also when the test times out (its finally never runs then): no demo left serving.
    onTestFinished(() => { child.kill('SIGKILL'); });
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
      // The three lines are separate writes to a pipe: wait for the last, not the first chunk.
      await until(() => /dashboard at http/.test(err) && /pacing this thread/.test(err), 30_000, 'the dashboard URL and the pacing line');
      expect(err).toMatch(/inspecting every chart at ws:\/\/127\.0\.0\.1:\d+/);
      expect(err).toContain('pacing this thread (pair and dashboard) at 50% of host speed');
      const url = /dashboard at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err)![1]!;
      const html = await (await fetch(url)).text();
      expect(html).toContain('Kill primary');
      type View = { outputs: number; actors: { node: string; chart: string | undefined; value: unknown; status: string }[] };
      const state = async (): Promise<View> => ((await (await fetch(`${url}api/state`)).json()) as { view: View }).view;
      const pairState = async (): Promise<unknown> => (await state()).actors.find((a) => a.node === 'pair' && a.chart === 'pair')?.value;
      const addBackup = async (): Promise<{ status: number; message: string }> => {
        const r = await fetch(`${url}api/add-backup`, { method: 'POST' });
        return { status: r.status, message: ((await r.json()) as { message: string }).message };
      };
      await until(async () => (await state()).outputs > 1000, 30_000, 'outputs');
      // A protected pair takes no second backup: 409 with the pair's reason.
      expect(await addBackup()).toEqual({ status: 409, message: expect.stringMatching(/^addBackup: the pair is "protected", not unprotected/) as unknown as string });
      const kill = await fetch(`${url}api/kill-primary`, { method: 'POST' });
      expect(kill.status).toBe(200);
      await until(async () => (await pairState()) === 'unprotected', 5000, 'the pair chart in unprotected');
      const add = await addBackup();
      expect(add.status).toBe(200);
      expect(add.message).toMatch(/^adding a backup to backup/);
      await until(async () => (await pairState()) === 'protected', 5000, 'the pair chart protected again');
      expect((await state()).actors.some((a) => a.node === 'backup-1' && a.chart === 'backup')).toBe(true);
      // The whole seq run at half speed: ~20 s on an idle 2-core host, more under load.
      await until(() => /checker: (PASS|FAIL)/.test(out), 120_000, 'the summary');
      expect(out).toContain('failovers: 1');
      expect(out).toContain('lost: 0');
      expect(out).toContain('checker: PASS');
      // The run is over, the page still answers.
      await until(() => /stays up/.test(err), 5000, 'the linger notice');
      expect((await fetch(url)).status).toBe(200);
      expect((await addBackup()).status).toBe(409);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 150_000);
});
