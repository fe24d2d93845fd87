// The fault proxy (proxy.ts) in a process of its own (proxy-child.ts starts it, forked by the
// harness as a direct child). In the harness's own thread the proxy relayed every log chunk
// and every heartbeat datagram of one or two pairs on a thread that also runs the batch's
// timers and reads four nodes' stderr: on a loaded host that thread was starved like any
// other, and a datagram it did not relay in time looked like the network losing it
// (docs/BENCHMARKS.md, "Detection, fourth pass"). Here it relays on a thread that does
// nothing else, at a higher priority where the host permits it (nice −10, as the heartbeat
// link's thread): it stands for the network, which a host's user load does not starve.
//
//   node proxy-process.js TARGET_HOST TARGET_PORT [LISTEN_HOST]
// Messages from the parent (IPC): stall, cut, corrupt, hold, close; it answers 'ready' with
// its port, 'holding' once a hold is set, and 'closed' with what it relayed, then exits. It exits too when the parent goes.
import { setPriority } from 'node:os';
import { FaultProxy } from './proxy.js';
import type { ProxyRequest, ProxyReport } from './proxy-child.js';

export const PROXY_NICE = -10;

const [targetHost, targetPort, host] = process.argv.slice(2);
const send = (m: ProxyReport): void => {
  process.send?.(m);
};

let raised = false;
try {
  setPriority(0, PROXY_NICE);
  raised = true;
} catch {
  raised = false;
}

const proxy = await FaultProxy.start(targetHost ?? '127.0.0.1', Number(targetPort), host ?? '127.0.0.1');
let closing = false;
const close = async (): Promise<void> => {
  if (closing) return;
  closing = true;
  await proxy.close();
  const m: ProxyReport = { type: 'closed', bytes: { ...proxy.bytes }, datagrams: { ...proxy.datagrams } };
  if (!process.send) process.exit(0);
  process.send(m, () => process.exit(0));
};
process.on('message', (m: ProxyRequest) => {
  switch (m.type) {
    case 'stall': proxy.stall(m.ms); break;
    case 'cut': proxy.cut(); break;
    case 'corrupt': proxy.corrupt(); break;
    case 'hold':
      proxy.holdWhen(Buffer.from(m.pattern, 'hex'), m.ms);
      send({ type: 'holding' });
      break;
    case 'close': void close(); break;
  }
});
// The harness gone (killed, crashed): nothing is left to relay for.
process.on('disconnect', () => {
  if (!closing) void proxy.close().then(() => process.exit(0));
});
send({ type: 'ready', port: proxy.port, raised });
