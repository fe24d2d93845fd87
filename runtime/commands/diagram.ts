import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { diagramFiles, drawAll, writeDiagrams, type DiagramFormat } from '../diagram/export.js';
import { CliError } from './common.js';

const USAGE = 'diagram [--format mermaid|svg] [--out DIR]';

async function diagram(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { format: { type: 'string' }, out: { type: 'string' } } });
  const f = values.format;
  if (f !== undefined && f !== 'mermaid' && f !== 'svg') throw new CliError(`--format must be mermaid or svg, got '${f}'`);
  const drawings = await drawAll();
  if (values.out === undefined) {
    // To stdout: one chart after another, mermaid unless svg was asked for.
    for (const d of drawings) process.stdout.write(f === 'svg' ? d.svg : `%% ${d.id}\n${d.mermaid}\n`);
    return 0;
  }
  const formats: DiagramFormat[] = f === undefined ? ['mermaid', 'svg'] : [f];
  const files = diagramFiles(drawings, formats);
  writeDiagrams(values.out, files);
  process.stdout.write(`wrote ${files.size} files for ${drawings.length} charts to ${values.out}\n`);
  return 0;
}

export const command: Command = {
  usage: USAGE,
  summary: 'draw every statechart from its definition: mermaid stateDiagram-v2 text and SVG (both by default)',
  run: async (argv) => {
    try {
      return await diagram(argv);
    } catch (e) {
      if (e instanceof CliError || (e as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
        process.stderr.write(`ftvm: ${(e as Error).message}\nusage: ftvm ${USAGE}\n`);
        return 2;
      }
      throw e;
    }
  },
};
