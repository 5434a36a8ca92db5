/**
 * `migrate --dry-run`: what a migration would do, read from the agents and
 * changing nothing. The shape of a drain's plan (one item, or a `skipped`
 * reason when PREPARE would refuse), plus the protocol's steps.
 */
import { isIP } from 'node:net';
import type { AgentApi } from '../controller/agent-client.js';
import type { DrainPlan } from '../controller/drain.js';
import { STEPS, TABLE, type Step } from '../controller/machine.js';

export interface PlanStep {
  step: Step;
  does: string;
  undoes: string;
  onFailure: 'roll-back' | 'roll-forward';
}

export interface MigrationPlan extends DrainPlan {
  app: string;
  steps: PlanStep[];
}

/** Reads the source entry and the destination's status, as PREPARE does, and says what would happen. */
export async function planMigration(source: AgentApi, dest: AgentApi, app: string, destDev: string): Promise<MigrationPlan> {
  const [entry, status] = await Promise.all([source.getApp(app), dest.status()]);
  const plan: MigrationPlan = {
    app,
    source: source.url,
    destinations: [{ url: dest.url, tunnel: { v4: status.tunnel.v4, v6: status.tunnel.v6 } }],
    items: [],
    skipped: [],
    steps: STEPS.map((step) => ({ step, does: TABLE[step].does, undoes: TABLE[step].undoes, onFailure: TABLE[step].onFailure })),
  };
  const v6 = entry !== undefined && isIP(entry.address) === 6;
  const reason = !entry
    ? `agent ${source.url} has no app ${app}`
    : entry.action.type !== 'local'
      ? `not LOCAL on ${source.url}: it forwards to ${entry.action.type === 'forward' ? entry.action.tunnel : entry.action.type}`
      : !(v6 ? status.tunnel.v6 : status.tunnel.v4)
        ? `agent ${dest.url} has no ${v6 ? 'IPv6' : 'IPv4'} tunnel address`
        : undefined;
  if (reason || !entry) plan.skipped.push({ app, reason: reason ?? 'no entry' });
  else plan.items.push({ app, address: entry.address, proto: entry.proto, port: entry.port, sourceDev: entry.dev, to: dest.url, toIndex: 0, destDev });
  return plan;
}

export function migrationPlanText(plan: MigrationPlan, driver: string, announce: string): string {
  const lines = [`plan: migrate ${plan.app} ${plan.source} → ${plan.destinations[0]?.url ?? '?'} (driver ${driver}, announce ${announce})`];
  for (const i of plan.items) {
    lines.push(`  ${i.app}  ${i.address}${i.port ? `:${String(i.proto)}/${i.port}` : ''}  dev ${i.sourceDev} → dev ${i.destDev}`);
  }
  for (const s of plan.skipped) lines.push(`  ${s.app} cannot move: ${s.reason}`);
  lines.push('steps:');
  for (const s of plan.steps) lines.push(`  ${s.step.padEnd(8)} ${s.does}`);
  lines.push('nothing was changed');
  return lines.join('\n') + '\n';
}
