import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';

const run = promisify(execFile);
const root = new URL('../../', import.meta.url).pathname;


it('the README embedding example fails over and loses nothing', async () => {
  const { stdout } = await run('node', ['examples/embed.mjs'], { cwd: root });
  expect(stdout).toMatch(/^failover: backup is live at icount \d+$/m);
  expect(stdout).toMatch(/exit 0, failovers 1, lines 50, duplicates \d+, lost 0/);
});
