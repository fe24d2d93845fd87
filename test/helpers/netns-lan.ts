// A LAN of network namespaces for the README's two-host tests: a bridge in namespace `lan`,
// and each host a namespace whose end of a veth pair is its eth0 (as in the README's
// commands), with its address on a /24.
import { execFileSync } from 'node:child_process';

const ip = (...args: string[]): void => {
  execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] });
};

/** Make the bridge's namespace `lan` and, for each `[ns, address]`, a host on it (the bridge's namespace first: it throws if namespaces cannot be made). */
export function buildLan(lan: string, hosts: readonly (readonly [ns: string, address: string])[]): void {
  ip('netns', 'add', lan);
  ip('-n', lan, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', lan, 'link', 'set', 'br0', 'up');
  hosts.forEach(([ns, address], i) => {
    ip('netns', 'add', ns);
    ip('-n', lan, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', lan, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
    ip('-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  });
}
