// Embedding ftvm in a Node service: a fault-tolerant pair runs the `seq` demo guest; its
// primary is killed after 20 lines and the backup takes over. Run: node examples/embed.mjs
import { readFileSync } from 'node:fs';
import { createPair, guestPath, SeqChecker } from 'ftvm';

const pair = createPair({ image: readFileSync(guestPath('seq-short')) });
const client = new SeqChecker(); // drops duplicates by output index, checks every line
pair.events$.subscribe((e) => { if (e.type === 'failover') console.log(`failover: ${e.detail}`); });
let killed = false;
pair.outputs$.subscribe((o) => {
  client.accept(o);
  if (!killed && client.lines === 20) {
    killed = true;
    pair.kill('primary');
  }
});
const outcome = await pair.start();
console.log(`exit ${outcome.code}, failovers ${outcome.failovers}, lines ${client.lines}, duplicates ${client.duplicates}, lost ${client.lost}`);
process.exitCode = client.ok ? 0 : 1;
