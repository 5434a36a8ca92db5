/**
 * `routeshift completion [bash|zsh]`: print a shell completion script. The
 * script asks routeshift itself for the words (yargs' completion mode,
 * `--get-yargs-completions`), so commands and flags never go stale.
 */
import { basename } from 'node:path';
import type { CommandModule } from 'yargs';
import { UsageError } from '../common.js';

export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

function bashScript(): string {
  return `# routeshift completion for bash: source this file, or install it as
# /etc/bash_completion.d/routeshift (routeshift completion bash > …)
_routeshift_completions() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" words IFS=$'\\n'
  words=$(SHELL=bash routeshift --get-yargs-completions "\${COMP_WORDS[@]:0:COMP_CWORD+1}" 2>/dev/null) || return 0
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o default -F _routeshift_completions routeshift
`;
}

function zshScript(): string {
  return `#compdef routeshift
# routeshift completion for zsh: install it as _routeshift in a directory of
# $fpath (routeshift completion zsh > …/_routeshift), or source it after compinit
_routeshift() {
  local -a completions
  completions=("\${(@f)$(SHELL=zsh routeshift --get-yargs-completions "\${words[@]:0:$CURRENT}" 2>/dev/null)}")
  if [[ -n "\${completions[1]}" ]]; then
    _describe 'routeshift' completions
  else
    _files
  fi
}
if [[ "\${zsh_eval_context[-1]}" == loadautofunc ]]; then
  _routeshift "$@"
else
  compdef _routeshift routeshift
fi
`;
}

export function completionScript(shell: Shell): string {
  return shell === 'zsh' ? zshScript() : bashScript();
}

/** The shell to write for when none is named: the user's login shell if it is one we know, else bash. */
function defaultShell(): Shell {
  const login = basename(process.env.SHELL ?? '');
  return (SHELLS as readonly string[]).includes(login) ? (login as Shell) : 'bash';
}

export const completionCommand: CommandModule<object, { shell?: string }> = {
  command: 'completion [shell]',
  describe: 'print a shell completion script (bash or zsh; default: your $SHELL)',
  builder: (y) =>
    y
      .positional('shell', { type: 'string', describe: `one of ${SHELLS.join(', ')}` })
      .example('$0 completion bash > /etc/bash_completion.d/routeshift', 'bash, for every user')
      .example('$0 completion zsh > "${fpath[1]}/_routeshift"', 'zsh') as never,
  handler: (args) => {
    const shell = args.shell ?? defaultShell();
    if (!(SHELLS as readonly string[]).includes(shell)) throw new UsageError(`completion: unknown shell ${JSON.stringify(shell)} (known: ${SHELLS.join(', ')})`);
    process.stdout.write(completionScript(shell as Shell));
  },
};
