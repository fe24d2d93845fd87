// Several suites run the compiled CLI (bin/ftvm.js -> dist/). Build once, before any suite
// starts, so no two suites rebuild dist/ under each other's feet (npm ci builds it too, but
// a developer's tree may be newer than its dist/).
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
}
