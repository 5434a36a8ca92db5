#!/usr/bin/env -S node --max-semi-space-size=2
/**
 * routeshift command line. Each command lives in its own module under
 * src/cli/commands/ and is registered here.
 */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { message } from '../controller/machine.js';
import { buildInfo } from '../model/version.js';
import { commands } from './commands/index.js';
import { UsageError } from './common.js';
import { ExitCode, exitCodeOfError } from './exit.js';
import { checkUnknownFlags, type OptionsView } from './flags.js';
import { errorBody, printJson, wantsJson } from './json.js';

const args = hideBin(process.argv);

async function main(): Promise<void> {
  let parser = yargs(args)
    .scriptName('routeshift')
    .usage('$0 <command> [options]\n\nLive-migrate applications between hosts and drain hosts by changing BPF map entries.')
    .strict()
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .demandCommand(1, 'say which command to run (see --help)')
    .recommendCommands()
    // Before yargs' own validation: an unknown flag is named as such, not reported as a missing one.
    .middleware((_argv, command?: unknown) => checkUnknownFlags(args, command as OptionsView), true)
    .help()
    .alias('h', 'help')
    .version(buildInfo().version)
    .wrap(Math.min(110, process.stdout.columns || 100))
    .fail((msg, err) => {
      // Bad usage: say what is wrong and exit 2; never a stack trace.
      throw err ?? new UsageError(msg);
    });
  for (const c of commands) parser = parser.command(c);
  await parser.parseAsync();
}

main().catch((err: unknown) => {
  const code = exitCodeOfError(err);
  const text = message(err);
  // With --json, stdout holds one document whatever happens: here an Error.
  if (wantsJson(args)) printJson('Error', errorBody(err, text));
  process.stderr.write(`routeshift: ${text}\n`);
  if (code === ExitCode.Usage) process.stderr.write('run `routeshift --help` for usage\n');
  process.exitCode = code;
});
