// A guest booted on a deterministic machine, with its outputs collected (machine tests).
import { readFileSync } from 'node:fs';
import { Machine } from '../../runtime/machine.js';
import { DeterministicEnv } from '../../runtime/env/deterministic.js';
import type { Output } from '../../runtime/types.js';

export const image = (name: string) => new Uint8Array(readFileSync(new URL(`../../guests/${name}/${name}.elf`, import.meta.url)));

export function boot(name: string, seed = 7) {
  const outputs: Output[] = [];
  const env = new DeterministicEnv({ seed });
  const m = new Machine({ env, onOutput: (o) => outputs.push(o) });
  m.loadElf(image(name));
  return { m, env, outputs };
}

/** The console bytes among `outs`, as text. */
export const text = (outs: Output[]) => String.fromCharCode(...outs.flatMap((o) => (o.kind === 'console' ? [o.byte] : [])));
