// Finds every chart of the project: `allMachines` from machines/index when it exists, and
// otherwise each `*.machine` module's exported machines. Loaded by path at run time, so this
// works from the sources (vitest) and from the compiled `dist/` alike.
import { existsSync, readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import type { AnyStateMachine } from 'xstate';

const isMachine = (v: unknown): v is AnyStateMachine =>
  typeof v === 'object' && v !== null && 'root' in v && 'id' in v && typeof (v as { transition?: unknown }).transition === 'function';

/** `import.meta.url` of a module in runtime/<dir>/ points two levels up at the package (or dist) root. */
export function machinesDir(): string {
  return fileURLToPath(new URL('../../machines/', import.meta.url));
}

function moduleFile(dir: string, base: string): string | undefined {
  // Compiled JS first; under vitest only the .ts sources exist.
  for (const ext of ['.js', '.ts']) {
    const f = join(dir, base + ext);
    if (existsSync(f)) return f;
  }
  return undefined;
}

/**
 * Charts by name, sorted: the `allMachines` key (the file name, `arbiter-client`), or for
 * loose modules the file's base name without `.machine`.
 */
export async function loadMachines(dir = machinesDir()): Promise<Map<string, AnyStateMachine>> {
  const found: [string, AnyStateMachine][] = [];
  const index = moduleFile(dir, 'index');
  if (index) {
    const mod = (await import(pathToFileURL(index).href)) as { allMachines?: unknown };
    const all = mod.allMachines;
    if (all && typeof all === 'object') {
      for (const [name, m] of Object.entries(all as Record<string, unknown>)) if (isMachine(m)) found.push([name, m]);
    }
  }
  if (found.length === 0) {
    const bases = readdirSync(dir)
      .filter((f) => /\.machine\.(js|ts)$/.test(f) && !f.endsWith('.d.ts'))
      .map((f) => f.replace(/\.(js|ts)$/, ''));
    for (const base of [...new Set(bases)].sort()) {
      const mod = (await import(pathToFileURL(moduleFile(dir, base)!).href)) as Record<string, unknown>;
      for (const m of Object.values(mod).filter(isMachine)) found.push([base.replace(/\.machine$/, ''), m]);
    }
  }
  const byName = new Map<string, AnyStateMachine>();
  for (const [name, m] of found.sort((a, b) => a[0].localeCompare(b[0]))) if (!byName.has(name)) byName.set(name, m);
  return byName;
}
