import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The package root, found by walking up from this module: the same code runs from the
 * TypeScript sources (tests) and from dist/ (the CLI).
 */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'guests'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('ftvm: cannot find the package root (guests/)');
    dir = up;
  }
}

/** Path of a built guest image shipped with the package, e.g. guestPath('seq'). */
export const guestPath = (name: string): string => join(packageRoot(), 'guests', name, `${name}.elf`);
