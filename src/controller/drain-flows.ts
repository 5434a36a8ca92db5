/**
 * DRAIN_FLOWS, the phase between SWITCH and STOP of a migration that
 * preserves connections (--preserve-connections). SWITCH made the source
 * entry PRESERVE: TCP flows that existed then are still delivered to the
 * source copy, new flows go to the destination (bpf/flows.h). This phase
 * waits until the source agent reports none of those old flows alive
 * (GET /v1/apps/:name/flows: FIN/RST seen, or idle), bounded by
 * --max-drain; then every source entry becomes FORWARD (one batch per
 * source in a drain), as a migration without the flag has it from SWITCH
 * on, and STOP stops the source copy. Flows still alive at the deadline
 * are counted as cut (journaled with the step's `done`).
 *
 * Without --preserve-connections the phase does nothing. Its deadline
 * (start + --max-drain) is journaled with its `enter`: run again after a
 * crash (resume) or retried, it waits only until that deadline — at once
 * FORWARD when it has passed — for the apps whose entry still preserves;
 * entries already FORWARD are left as they are.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AgentApi, App, FlowsView } from './agent-client.js';
import type { Facts, PreserveOptions } from './journal.js';
import type { StepContext, StepGroup } from './steps.js';

class FlowDrainFailure extends Error {
  override readonly name = 'FlowDrainFailure';
}

async function readFlows(agent: AgentApi, app: string, p: PreserveOptions): Promise<FlowsView> {
  if (!agent.flows) throw new FlowDrainFailure(`agent ${agent.url} cannot report flows (--preserve-connections needs GET /v1/apps/:name/flows)`);
  return agent.flows(app, { idleMs: p.idleMs, lingerMs: p.lingerMs });
}

/** The apps by their source agent (one entry per agent, in first-seen order). */
function bySource(apps: readonly StepContext[]): { agent: AgentApi; apps: StepContext[] }[] {
  const out = new Map<string, { agent: AgentApi; apps: StepContext[] }>();
  for (const ctx of apps) {
    const e = out.get(ctx.source.url) ?? { agent: ctx.source, apps: [] };
    e.apps.push(ctx);
    out.set(ctx.source.url, e);
  }
  return [...out.values()];
}

/** The apps whose source entry still preserves: one GET for an app alone, one listing per source for a group. */
async function stillPreserving(apps: readonly StepContext[]): Promise<StepContext[]> {
  const out: StepContext[] = [];
  await Promise.all(
    bySource(apps).map(async ({ agent, apps: mine }) => {
      const entries: (App | undefined)[] =
        mine.length === 1 ? [await agent.getApp((mine[0] as StepContext).plan.app)] : await listed(agent, mine);
      mine.forEach((ctx, i) => {
        if (entries[i]?.action.type === 'preserve') out.push(ctx);
      });
    }),
  );
  return out;
}

async function listed(agent: AgentApi, apps: readonly StepContext[]): Promise<(App | undefined)[]> {
  const byName = new Map((await agent.listApps()).map((a) => [a.name, a]));
  return apps.map((ctx) => byName.get(ctx.plan.app));
}

function tunnelOf(ctx: StepContext): string {
  const t = ctx.facts.tunnel;
  if (!t) throw new FlowDrainFailure(`the tunnel address of ${ctx.plan.to} was never recorded (PREPARE did not complete)`);
  return t;
}

/**
 * Every app's source entry to FORWARD, made as the run's lease owner (its
 * journal id): one batch per source when the group is batched. Only the
 * entry SWITCH wrote is changed (its generation, when known). Answers each
 * app's entry generation after it (0: unknown).
 */
async function forwardAll(g: StepGroup, apps: readonly StepContext[]): Promise<Map<StepContext, number>> {
  const gens = new Map<StepContext, number>();
  const op = (ctx: StepContext) => {
    const since = ctx.facts.generations?.switched;
    return { op: 'set-action' as const, name: ctx.plan.app, action: { type: 'forward' as const, tunnel: tunnelOf(ctx) }, ...(since ? { ifGeneration: since } : {}) };
  };
  if (!g.batched) {
    for (const ctx of apps) {
      const { ifGeneration, action, name } = op(ctx);
      const app = await ctx.source.setAction(name, action, { owner: ctx.journalId, ...(ifGeneration ? { ifGeneration } : {}) });
      gens.set(ctx, app.generation);
    }
    return gens;
  }
  await Promise.all(
    bySource(apps).map(async ({ agent, apps: mine }) => {
      const r = await agent.batch(mine.map(op), { owner: (mine[0] as StepContext).journalId, generations: true });
      mine.forEach((ctx, i) => gens.set(ctx, r.generations?.[i] ?? 0));
    }),
  );
  return gens;
}

/**
 * 6 DRAIN_FLOWS: wait for the old flows of every app of the group, then
 * FORWARD. Polls each still-busy app every `pollMs`; a failed poll is
 * noted and retried until the deadline (the source still forwards new
 * flows meanwhile, nothing is lost by waiting).
 */
export async function drainFlows(g: StepGroup): Promise<Facts[] | void> {
  const first = g.apps[0];
  const p = first?.preserve;
  if (!first || !p) return; // not preserving: SWITCH already made the entries FORWARD
  const t0 = Date.now();
  // The phase's journaled deadline (a resumed or retried phase waits only for what is left of it).
  const deadline = Math.min(...g.apps.map((ctx) => ctx.drainDeadline ?? t0 + p.maxDrainMs));
  const preserving = new Set(await stillPreserving(g.apps));
  const atStart = new Map<StepContext, number>();
  const left = new Map<StepContext, number>();
  const failedPolls = new Map<StepContext, string>();
  let busy = [...preserving];
  while (busy.length) {
    await Promise.all(
      busy.map(async (ctx) => {
        try {
          const v = await readFlows(ctx.source, ctx.plan.app, p);
          if (!atStart.has(ctx)) atStart.set(ctx, v.active);
          if (left.get(ctx) !== v.active) ctx.progress?.(v.active, Date.now() - t0);
          left.set(ctx, v.active);
          failedPolls.delete(ctx);
        } catch (err) {
          // an agent that cannot count flows is waited for until the deadline: its old flows still live meanwhile
          const why = err instanceof Error ? err.message : String(err);
          if (failedPolls.get(ctx) !== why) ctx.note(`could not read the flows of ${ctx.plan.app} on ${ctx.plan.from}: ${why}; trying again`);
          failedPolls.set(ctx, why);
        }
      }),
    );
    busy = busy.filter((ctx) => (left.get(ctx) ?? 1) > 0);
    if (!busy.length || Date.now() >= deadline) break;
    await sleep(Math.min(p.pollMs, Math.max(1, deadline - Date.now())));
  }
  for (const ctx of busy) {
    const n = left.get(ctx);
    ctx.note(
      n === undefined
        ? `--max-drain ${p.maxDrainMs} ms reached without a flow count from ${ctx.plan.from}: its old flows are cut`
        : `--max-drain ${p.maxDrainMs} ms reached: ${n} old flow${n === 1 ? '' : 's'} of ${ctx.plan.app} cut`,
    );
  }
  const gens = await forwardAll(g, [...preserving]);
  const now = performance.now();
  const waitedMs = Date.now() - t0;
  return g.apps.map((ctx) => {
    ctx.switchedAt = now; // STOP's grace runs from the entry's last change
    const cut = busy.includes(ctx) ? (left.get(ctx) ?? 0) : 0;
    const gen = gens.get(ctx);
    // a step's facts replace the whole field: the other generations are carried along
    return { flows: { atStart: atStart.get(ctx) ?? 0, cut, waitedMs }, ...(gen ? { generations: { ...ctx.facts.generations, switched: gen } } : {}) };
  });
}
