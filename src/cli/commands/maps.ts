/**
 * `routeshift maps`: print the data plane's pinned maps, decoded (entries by
 * name, addresses as text, actions by name, counters), without the agent.
 */
import type { CommandModule } from 'yargs';
import { UsageError } from '../common.js';
import { printJson } from '../json.js';

interface MapsArgs {
  'pin-dir'?: string;
  uplink?: string;
  netns?: string;
  json: boolean;
}

export const mapsCommand: CommandModule<object, MapsArgs> = {
  command: 'maps',
  describe: 'Print the pinned maps of a host decoded (entries, counters, drops), read from bpffs: works while the agent is down',
  builder: (y) =>
    y
      .option('pin-dir', { type: 'string', describe: "The agent's --pin-dir [default: that of --uplink, as the agent picks it]" })
      .option('uplink', { type: 'string', describe: "The agent's uplink: its default pin dir /sys/fs/bpf/routeshift/<uplink>" })
      .option('netns', { type: 'string', describe: 'With --uplink: the uplink is in this named network namespace (…/netns-<name>/<uplink>)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a Maps document (docs/json.md)' })
      .example('$0 maps --uplink eth0', 'the maps of the agent on eth0')
      .example('$0 maps --pin-dir /sys/fs/bpf/routeshift/eth0 --json', 'the same, as JSON') as never,
  handler: async (args) => {
    if (!args['pin-dir'] && !args.uplink) throw new UsageError('maps needs --pin-dir or --uplink');
    if (args['pin-dir'] && (args.uplink || args.netns)) throw new UsageError('give --pin-dir, or --uplink (with --netns); not both');
    // Loaded here: the other commands start without the addon.
    const { DEFAULT_PIN_ROOT } = await import('../../datapath/host.js');
    const { join } = await import('node:path');
    const pinDir = args['pin-dir'] ?? (args.netns ? join(DEFAULT_PIN_ROOT, `netns-${args.netns}`, args.uplink!) : join(DEFAULT_PIN_ROOT, args.uplink!));
    const { mapsText, readPinnedMaps } = await import('../maps.js');
    const dump = readPinnedMaps(pinDir);
    if (args.json) printJson('Maps', { ...dump });
    else process.stdout.write(mapsText(dump));
  },
};
