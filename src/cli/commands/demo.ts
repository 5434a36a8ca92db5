/** `routeshift demo`: a two-host live migration and a host drain, live, in network namespaces. */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { CommandModule } from 'yargs';
import type { DemoResult, StreamResult } from '../../demo/scenario.js';
import { run } from '../../testbed/netns.js';
import { UsageError } from '../common.js';
import { ExitCode } from '../exit.js';
import { printJson } from '../json.js';

interface DemoArgs {
  json: boolean;
  duration: number;
  rate: number;
  keep: boolean;
  out: string;
  cleanup: boolean;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')).join('\n');
}

function streamRows(label: string, streams: StreamResult[]): string[][] {
  return streams.map((s) => [label, s.app, String(s.sent), String(s.received), String(s.lost), String(s.duplicated), s.maxGapMs.toFixed(1)]);
}

function summary(r: DemoResult): string {
  const head = ['run', 'app', 'sent', 'received', 'lost', 'dup', 'max gap ms'];
  const lines = [
    '',
    table([head, ...streamRows('routeshift (XDP)', r.routeshift.streams), ...streamRows('kernel (route + VXLAN)', r.kernelBaseline.streams)]),
    '',
    `migration of x: ${r.routeshift.migration.outcome}, ${r.routeshift.migration.totalMs} ms; steps: ` +
      r.routeshift.migration.steps.map((s) => `${s.step} ${s.ms} ms`).join(', '),
    `drain of host A: ${r.routeshift.drain.outcome}, ${r.routeshift.drain.totalMs} ms, switch as ${r.routeshift.drain.switchMode}; ` +
      `host A left with ${r.routeshift.hostAEntriesAfter.local} LOCAL entries`,
    `kernel baseline switch (ip route replace into VXLAN): ${r.kernelBaseline.switchMs} ms`,
    `plot: ${r.plot}`,
    `result: ${r.resultFile}`,
  ];
  if (r.kept) {
    const a = r.kept.agents[0]!;
    lines.push(
      '',
      'left running for inspection (--keep):',
      ...r.kept.agents.map((g) => `  agent ${g.host}: ${g.url} (pid ${g.pid}), maps in ${g.pinDir}`),
      `  bpftool map dump pinned ${a.pinDir}/rs_redirect`,
      `  curl -s -H "Authorization: Bearer $(cat ${r.kept.tokenFile})" ${a.url}/metrics | grep routeshift_app`,
      `  ip netns list | grep ${r.kept.prefix}`,
      `  remove it all: routeshift demo --cleanup --out ${join(r.resultFile, '..')}`,
    );
  }
  return lines.join('\n');
}

/** Undo a --keep run: stop its agents (only those pids, only if they are our agents), delete its namespaces and pins. */
function cleanupKept(out: string): string[] {
  const file = join(out, 'routeshift-demo.json');
  if (!existsSync(file)) throw new UsageError(`no kept demo in ${out} (${file} missing)`);
  const r = JSON.parse(readFileSync(file, 'utf8')) as DemoResult;
  if (!r.kept) return ['the last demo in this directory was not kept; nothing to remove'];
  const done: string[] = [];
  for (const a of r.kept.agents) {
    try {
      const cmdline = readFileSync(`/proc/${a.pid}/cmdline`, 'utf8');
      if (cmdline.includes('agent') && cmdline.includes(a.pinDir)) {
        process.kill(a.pid, 'SIGTERM');
        done.push(`stopped agent ${a.host} (pid ${a.pid})`);
      }
    } catch {
      /* already gone */
    }
  }
  for (const ns of r.kept.namespaces) {
    try {
      run('ip', ['netns', 'del', ns]);
      done.push(`deleted namespace ${ns}`);
    } catch {
      /* already gone */
    }
  }
  for (const p of [...r.kept.agents.map((a) => a.pinDir), r.kept.workDir]) {
    if (existsSync(p)) {
      rmSync(p, { recursive: true, force: true });
      done.push(`removed ${p}`);
    }
  }
  rmSync(file);
  return done;
}

export const demoCommand: CommandModule<object, DemoArgs> = {
  command: 'demo',
  describe: 'Live-migrate an app between two hosts and drain a host, in network namespaces, with live counters',
  builder: (y) =>
    y
      .option('duration', { type: 'number', default: 12, describe: 'Seconds of traffic (3-600)' })
      .option('rate', { type: 'number', default: 2000, describe: 'Packets per second per application (100-50000)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON (no live output)' })
      .option('keep', { type: 'boolean', default: false, describe: 'Leave namespaces and agents up and print how to look at them' })
      .option('out', { type: 'string', default: 'routeshift-demo', describe: 'Directory for the SVG plot and the JSON result' })
      .option('cleanup', { type: 'boolean', default: false, describe: 'Remove what a --keep run left (reads --out)' })
      .example('$0 demo', 'run it (as root)')
      .example('$0 demo --duration 30 --rate 20000 --keep', 'longer, faster, and keep it up afterwards') as never,
  handler: async (args) => {
    if (args.cleanup) {
      for (const line of cleanupKept(args.out)) process.stdout.write(`${line}\n`);
      return;
    }
    if (!(args.duration >= 3 && args.duration <= 600)) throw new UsageError('--duration must be between 3 and 600 seconds');
    if (!(Number.isInteger(args.rate) && args.rate >= 100 && args.rate <= 50_000)) {
      throw new UsageError('--rate must be an integer between 100 and 50000 packets/s');
    }
    if (process.getuid?.() !== 0) throw new UsageError('the demo creates network namespaces and loads XDP programs: run it as root');
    const tty = !args.json && process.stdout.isTTY === true;
    let lastLive = 0;
    const { runDemo } = await import('../../demo/scenario.js'); // the testbed and agents: only for this command
    const result = await runDemo({
      durationS: args.duration,
      ratePps: args.rate,
      keep: args.keep,
      outDir: args.out,
      log: (line) => {
        if (args.json) return;
        if (tty) process.stdout.write('\r\x1b[2K');
        process.stdout.write(`${line}\n`);
      },
      live: (line) => {
        if (args.json) return;
        if (tty) {
          process.stdout.write(`\r\x1b[2K${line.slice(0, (process.stdout.columns || 120) - 1)}`);
        } else if (Date.now() - lastLive >= 1000) {
          lastLive = Date.now();
          process.stdout.write(`${line}\n`);
        }
      },
    });
    if (tty) process.stdout.write('\r\x1b[2K');
    if (args.json) printJson('DemoResult', { ...result });
    else process.stdout.write(`${summary(result)}\n`);
    const lost = result.routeshift.streams.some((s) => s.lost > 0 || s.duplicated > 0);
    if (result.routeshift.migration.outcome !== 'done' || result.routeshift.drain.outcome !== 'done' || lost) process.exitCode = ExitCode.Failed;
  },
};
