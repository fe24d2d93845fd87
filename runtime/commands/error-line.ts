/**
 * An error's one line for the operator. Node's parseArgs adds advice about positionals to an
 * unknown option ("To specify a positional argument starting with a '-' ...") that misleads
 * more than it helps when the option is simply misspelt: keep the first sentence.
 */
export function errorLine(e: unknown): string {
  const message = (e as Error).message;
  if ((e as NodeJS.ErrnoException).code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return message;
  const m = /^Unknown option '([^']*)'/.exec(message);
  return m ? `unknown option '${m[1]}'` : message;
}
