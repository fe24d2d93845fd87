// `npm run soak`: the fault runs of scripts/faults.mjs for a fixed time instead of a fixed
// count, e.g. `npm run soak -- --minutes 60`. Same checker, same report.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { minutes: { type: 'string', default: '10' }, parallel: { type: 'string', default: '2' }, json: { type: 'string' } } });
const script = fileURLToPath(new URL('./faults.mjs', import.meta.url));
const args = [script, '--runs', '1000000', '--minutes', values.minutes, '--parallel', values.parallel, '--etcd-runs', '0', ...(values.json ? ['--json', values.json] : [])];
process.exit(spawnSync(process.execPath, args, { stdio: 'inherit' }).status ?? 1);
