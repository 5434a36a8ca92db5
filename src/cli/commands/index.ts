/** Every CLI command, in the order --help lists them. */
import type { CommandModule } from 'yargs';
import { agentCommand } from './agent.js';
import { appCommand } from './app.js';
import { migrateCommand } from './migrate.js';
import { drainCommand } from './drain.js';
import { statusCommand } from './status.js';
import { benchCommand } from './bench.js';
import { demoCommand } from './demo.js';
import { completionCommand } from './completion.js';
import { mapsCommand } from './maps.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- yargs' own CommandModule default
export const commands: CommandModule<any, any>[] = [agentCommand, appCommand, migrateCommand, drainCommand, statusCommand, mapsCommand, demoCommand, benchCommand, completionCommand];
