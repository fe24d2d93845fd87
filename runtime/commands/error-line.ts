/**
 * An error's one line for the operator. Node's parseArgs adds advice about positionals to an
 * unknown option ("To specify a positional argument starting with a '-' ...") that misleads
 * more than it helps when the option is simply misspelt, and says a missing value in three
 * lines when the next word is another option (`--join --net …`): one line each, in our words.
 */
export function errorLine(e: unknown): string {
  const message = (e as Error).message;
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const m = /^Unknown option '([^']*)'/.exec(message);
    return m ? `unknown option '${m[1]}'` : message;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const missing = /^Option '(?:-\w, )?(--?[^' ]+)(?: <value>)?' argument missing/.exec(message);
    if (missing) return `${missing[1]} needs a value`;
    const ambiguous = /^Option '(?:-\w, )?(--?[^' ]+)' argument is ambiguous/.exec(message);
    if (ambiguous) return `${ambiguous[1]} needs a value, and the word after it is an option (a value that starts with '-' is given as ${ambiguous[1]}=VALUE)`;
    const flag = /^Option '(?:-\w, )?(--?[^' ]+)' does not take an argument/.exec(message);
    if (flag) return `${flag[1]} takes no value`;
  }
  return message.split('\n')[0]!;
}
