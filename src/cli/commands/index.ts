/** Every CLI command, in the order --help lists them. */
import type { CommandModule } from 'yargs';
import { agentCommand } from './agent.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- yargs' own CommandModule default
export const commands: CommandModule<any, any>[] = [agentCommand];
