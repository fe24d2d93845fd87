import { parseArgs } from 'node:util';
import type { Command } from '../cli.js';
import { diagramFiles, drawAll, writeDiagrams, type DiagramFormat } from '../diagram/export.js';
import { checkWritableDir, CliError, errorLine } from './common.js';

const USAGE = 'diagram [--format mermaid|svg] [--out DIR]';

async function diagram(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { format: { type: 'string' }, out: { type: 'string' } } });
  const f = values.format;
  if (f !== undefined && f !== 'mermaid' && f !== 'svg') throw new CliError(`--format must be mermaid or svg, got '${f}'`);
  // Before the (slow) drawing: a bad target is refused at once.
  if (values.out !== undefined) checkWritableDir('--out', values.out);
  const drawings = await drawAll();
  if (values.out === undefined) {
    // To stdout: one chart after another, mermaid unless svg was asked for.
    for (const d of drawings) process.stdout.write(f === 'svg' ? d.svg : `%% ${d.id}\n${d.mermaid}\n`);
    return 0;
  }
  const formats: DiagramFormat[] = f === undefined ? ['mermaid', 'svg'] : [f];
  const files = diagramFiles(drawings, formats);
  try {
    writeDiagrams(values.out, files);
  } catch (e) {
    // Checked above, but a disk can still fill up or a directory change under us.
    throw new CliError(`--out ${values.out}: ${(e as Error).message}`, 1);
  }
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
        // Exit 1: the target could not be written (a run-time failure, not a usage error).
        const code = (e as CliError).exitCode ?? 2;
        process.stderr.write(`ftvm: ${errorLine(e)}\n${code === 1 ? '' : `usage: ftvm ${USAGE}\n`}`);
        return code;
      }
      throw e;
    }
  },
};
