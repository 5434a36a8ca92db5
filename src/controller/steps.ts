/**
 * What each migration step does, and what undoes it. The order, the journal
 * and the rollback policy live in machine.ts; this module only knows how to
 * talk to agents, drivers and hooks.
 *
 * A step that changes agents' maps runs on a group of apps at once (a
 * migration is a group of one): its map updates go to each agent either in
 * one POST /v1/batch for the whole group (a drain), or one request per app
 * and update (a migration, and the per-app fallback of a batch that
 * failed). It is the same step either way; only the transport differs.
 * Steps that drive the app itself (start, probe, stop) run per app.
 *
 * Every action is idempotent: a resumed controller may run a step again
 * that had (partly) happened before it died, and that must be harmless.
 */
import { isIP } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Action, type AgentApi, type AgentStatus, type App, type DeliverySpec, type Op, AgentRefusedError } from './agent-client.js';
import type { AnnounceHook, Announcement } from './announce.js';
import type { Facts, PlanRecord, PreserveOptions, Timing } from './journal.js';
import type { DriverContext, ProbeSpec, WorkloadApp, WorkloadDriver, WorkloadHost } from '../workload/driver.js';
import type { RunLeases } from './leases.js';

/** Everything a step needs about one app. `facts` is filled by PREPARE and restored from the journal on resume. */
export interface StepContext {
  journalId: string;
  plan: PlanRecord;
  source: AgentApi;
  dest: AgentApi;
  driver: WorkloadDriver;
  announce: AnnounceHook;
  timing: Timing;
  facts: Facts;
  /**
   * When SWITCH completed in this process (performance.now()), if it did:
   * STOP's grace runs from there. Not journaled: after a resume the grace
   * is taken whole.
   */
  switchedAt?: number;
  /** A note for the operator (driver remarks, skipped sub-steps). */
  note(message: string): void;
  /** The run's leases on its apps' names (leases.ts); every write is made as their owner, `journalId`. */
  leases?: RunLeases;
  /** --preserve-connections: SWITCH sets PRESERVE, DRAIN_FLOWS waits for the old flows (drain-flows.ts). */
  preserve?: PreserveOptions;
  /** DRAIN_FLOWS: when its wait ends (epoch ms), set when the phase first starts and journaled with its `enter`; restored on resume. */
  drainDeadline?: number;
  /** DRAIN_FLOWS: the source's count of old flows still alive changed. */
  progress?(activeFlows: number, elapsedMs: number): void;
}

/** The apps a step runs on together (they share one driver, hook and timing), and how their map updates travel. */
export interface StepGroup {
  apps: readonly StepContext[];
  /** true: one POST /v1/batch per agent for the whole group. false: one request per app and update. */
  batched: boolean;
}

class StepFailure extends Error {
  override readonly name = 'StepFailure';
}

function original(ctx: StepContext): App {
  const o = ctx.facts.original;
  if (!o) throw new StepFailure(`the source entry of ${ctx.plan.app} was never recorded (PREPARE did not complete)`);
  return o;
}

function tunnel(ctx: StepContext): string {
  const t = ctx.facts.tunnel;
  if (!t) throw new StepFailure(`the tunnel address of ${ctx.plan.to} was never recorded (PREPARE did not complete)`);
  return t;
}

function workloadApp(ctx: StepContext): WorkloadApp {
  const o = original(ctx);
  return { name: o.name, address: o.address, proto: o.proto, port: o.port, migrationId: ctx.journalId };
}

function sourceHost(ctx: StepContext): WorkloadHost {
  return { role: 'source', agentUrl: ctx.plan.from, index: 0 };
}

function destHost(ctx: StepContext): WorkloadHost {
  return { role: 'destination', agentUrl: ctx.plan.to, index: ctx.plan.toIndex };
}

function driverCtx(ctx: StepContext): DriverContext {
  return { log: (m) => ctx.note(m) };
}

/** The app's address on the destination host: same key as on the source, the destination's interface. */
function destinationEntry(ctx: StepContext): DeliverySpec {
  const o = original(ctx);
  return {
    address: o.address,
    proto: o.proto,
    port: o.port,
    dev: ctx.plan.destDev,
    ...(ctx.plan.destMac ? { mac: ctx.plan.destMac } : {}),
  };
}

function announcement(ctx: StepContext): Announcement {
  const o = original(ctx);
  return {
    app: o.name,
    address: o.address,
    proto: o.proto,
    port: o.port,
    from: ctx.plan.from,
    to: ctx.plan.to,
    toIndex: ctx.plan.toIndex,
    tunnel: tunnel(ctx),
    migrationId: ctx.journalId,
  };
}

// ------------------------------------------------------- talking to agents

/** The group's apps by the agent `at` each (one entry per agent, in first-seen order). */
function byAgent(apps: readonly StepContext[], at: (ctx: StepContext) => AgentApi): [AgentApi, StepContext[]][] {
  const out = new Map<string, [AgentApi, StepContext[]]>();
  for (const ctx of apps) {
    const agent = at(ctx);
    const entry = out.get(agent.url);
    if (entry) entry[1].push(ctx);
    else out.set(agent.url, [agent, [ctx]]);
  }
  return [...out.values()];
}

/** One op as its own request, made as `owner`; answers the entry's generation after it (0: deleted). The answer to a set-action must show the action set. */
async function applyOne(agent: AgentApi, op: Op, owner: string): Promise<number> {
  const guard = { owner, ...(op.ifGeneration === undefined ? {} : { ifGeneration: op.ifGeneration }) };
  switch (op.op) {
    case 'put-app': {
      const { op: _op, name, ifGeneration: _if, ...spec } = op;
      return (await agent.putApp(name, spec, guard)).generation;
    }
    case 'set-action': {
      const { action, generation } = await agent.setAction(op.name, op.action, guard);
      if (action.type !== op.action.type || ('tunnel' in action && 'tunnel' in op.action && action.tunnel !== op.action.tunnel)) {
        throw new StepFailure(`agent ${agent.url} answered set-action of ${op.name} with action ${JSON.stringify(action)}`);
      }
      return generation;
    }
    case 'delete-app':
      await agent.deleteApp(op.name, guard);
      return 0;
    case 'put-delivery': {
      const { op: _op, name, ifGeneration: _if, ...spec } = op;
      return (await agent.putDelivery(name, spec, guard)).generation;
    }
    case 'delete-delivery':
      await agent.deleteDelivery(op.name, guard);
      return 0;
  }
}

/**
 * Each app's `op` to its agent `at`, made as the run's lease owner: one
 * batch per agent (all agents at once), or app by app. Answers each app's
 * entry generation after it, in the group's order (0: deleted, or an agent
 * that predates generations).
 */
async function write(g: StepGroup, at: (ctx: StepContext) => AgentApi, op: (ctx: StepContext) => Op): Promise<number[]> {
  const owner = (ctx: StepContext): string => ctx.journalId;
  if (!g.batched) {
    const out: number[] = [];
    for (const ctx of g.apps) out.push(await applyOne(at(ctx), op(ctx), owner(ctx)));
    return out;
  }
  const gens = new Map<StepContext, number>();
  await Promise.all(
    byAgent(g.apps, at).map(async ([agent, apps]) => {
      // a group is one run: its apps share the journal id, the lease owner
      const r = await agent.batch(apps.map(op), { owner: owner(apps[0] as StepContext), generations: true });
      apps.forEach((ctx, i) => gens.set(ctx, r.generations?.[i] ?? 0));
    }),
  );
  return g.apps.map((ctx) => gens.get(ctx) ?? 0);
}

/** The generations this run wrote, for the journal: a step's facts replace the whole field, so the others are carried along. */
function wrote(ctx: StepContext, which: 'delivery' | 'switched', generation: number): Facts {
  return generation > 0 ? { generations: { ...ctx.facts.generations, [which]: generation } } : {};
}

/** A refusal because the entry moved on (412, a conditional write). */
function moved(err: unknown): err is AgentRefusedError {
  return err instanceof AgentRefusedError && err.status === 412;
}

/** Each app's entry on its source (undefined: none): one listing per source, or one GET per app. */
async function sourceEntries(g: StepGroup): Promise<(App | undefined)[]> {
  if (!g.batched) {
    const out: (App | undefined)[] = [];
    for (const ctx of g.apps) out.push(await ctx.source.getApp(ctx.plan.app));
    return out;
  }
  const sources = byAgent(g.apps, (ctx) => ctx.source).map(([agent]) => agent);
  const listings = await Promise.all(sources.map(async (s) => new Map((await s.listApps()).map((a) => [a.name, a]))));
  const bySource = new Map(sources.map((s, i) => [s.url, listings[i]]));
  return g.apps.map((ctx) => bySource.get(ctx.source.url)?.get(ctx.plan.app));
}

/** Each destination's tunnel endpoints: one GET /status per destination. */
async function destTunnels(g: StepGroup): Promise<Map<string, AgentStatus['tunnel']>> {
  const dests = byAgent(g.apps, (ctx) => ctx.dest).map(([agent]) => agent);
  const statuses = await Promise.all(dests.map((d) => d.status()));
  return new Map(dests.map((d, i) => [d.url, (statuses[i] as AgentStatus).tunnel]));
}

// ------------------------------------------------------------------ actions

/** 1 PREPARE: each app's source entry exists and is LOCAL; remember it, and its destination's tunnel. */
export async function prepare(g: StepGroup): Promise<Facts[]> {
  const entries = await sourceEntries(g);
  const originals = g.apps.map((ctx, i) => {
    const { app, from } = ctx.plan;
    const entry = entries[i];
    if (!entry) throw new StepFailure(`agent ${from} has no app ${app} (add it with \`routeshift app add\`)`);
    if (entry.action.type !== 'local') {
      throw new StepFailure(`app ${app} on ${from} is not LOCAL (it forwards to ${entry.action.tunnel}): is it being migrated already? see --resume`);
    }
    return entry;
  });
  const tunnels = await destTunnels(g);
  return g.apps.map((ctx, i) => {
    const entry = originals[i] as App;
    const v6 = isIP(entry.address) === 6;
    const t = v6 ? tunnels.get(ctx.dest.url)?.v6 : tunnels.get(ctx.dest.url)?.v4;
    if (!t) throw new StepFailure(`agent ${ctx.dest.url} has no ${v6 ? 'IPv6' : 'IPv4'} tunnel address (start it with --tunnel-addr)`);
    return { original: entry, tunnel: t };
  });
}

/** 2 START: the driver starts the app on the destination. */
export async function start(ctx: StepContext): Promise<void> {
  await ctx.driver.start(workloadApp(ctx), destHost(ctx), driverCtx(ctx));
}

/** undo START: stop what the driver started on the destination. */
export async function stopOnDestination(ctx: StepContext): Promise<void> {
  await ctx.driver.stop(workloadApp(ctx), destHost(ctx), driverCtx(ctx));
}

/** 3 DELIVER: each destination hands tunnelled packets for its apps to their interfaces there. */
export async function deliver(g: StepGroup): Promise<Facts[]> {
  const gens = await write(g, (ctx) => ctx.dest, (ctx) => ({ op: 'put-delivery', name: ctx.plan.app, ...destinationEntry(ctx) }));
  return g.apps.map((ctx, i) => wrote(ctx, 'delivery', gens[i] ?? 0));
}

/** undo DELIVER: only the delivery this run wrote (its generation); one written since is someone else's and stays. */
export async function removeDelivery(ctx: StepContext): Promise<void> {
  const generation = ctx.facts.generations?.delivery;
  try {
    await ctx.dest.deleteDelivery(ctx.plan.app, { owner: ctx.journalId, ...(generation ? { ifGeneration: generation } : {}) });
  } catch (err) {
    if (!moved(err)) throw err;
    ctx.note(`the delivery of ${ctx.plan.app} on ${ctx.plan.to} was written by someone else after DELIVER (${err.agentMessage ?? err.message}): left as it is`);
  }
}

/** 4 READY: wait for the driver to say the app executes on the destination, bounded by the ready timeout. */
export async function awaitReady(ctx: StepContext): Promise<void> {
  const { readyTimeoutMs, probeIntervalMs } = ctx.timing;
  const deadline = Date.now() + readyTimeoutMs;
  const maxRounds = Math.ceil(readyTimeoutMs / Math.max(1, probeIntervalMs)) + 2;
  const app = workloadApp(ctx);
  const host = destHost(ctx);
  const viaAgent = ctx.driver.agentProbe;
  let last = '';
  for (let round = 0; round < maxRounds && Date.now() <= deadline; round++) {
    if (viaAgent) {
      const r = await probeOnDestination(ctx, viaAgent);
      if (r === true) return;
      last = r;
    } else if (await ctx.driver.probe(app, host, driverCtx(ctx))) return;
    await sleep(Math.min(probeIntervalMs, Math.max(0, deadline - Date.now())));
  }
  const how = viaAgent ? `the destination agent's ${viaAgent.proto}:${viaAgent.port} probe${last ? `: ${last}` : ''}` : `driver ${ctx.driver.kind}`;
  throw new StepFailure(`${app.name} did not become ready on ${ctx.plan.to} within ${readyTimeoutMs} ms (${how})`);
}

/**
 * A network probe run by the destination agent, on its host, toward the
 * app behind the delivery entry DELIVER put there: it reaches the
 * destination's copy whatever the network routes the app's address to
 * (a probe from the controller may be answered by the source's copy).
 * true, or why not.
 */
async function probeOnDestination(ctx: StepContext, spec: ProbeSpec): Promise<true | string> {
  try {
    const r = await ctx.dest.probe({ name: ctx.plan.app, proto: spec.proto, port: spec.port, ...(spec.timeoutMs ? { timeoutMs: spec.timeoutMs } : {}) });
    return r.ok ? true : `${r.error ?? 'no answer'} (${r.address} on ${r.dev})`;
  } catch (err) {
    return message(err); // refused (no delivery, no route through its device) or unreachable: not ready yet
  }
}

function message(err: unknown): string {
  return err instanceof AgentRefusedError ? (err.agentMessage ?? err.message) : err instanceof Error ? err.message : String(err);
}

function sameAction(a: Action, b: Action): boolean {
  return a.type === b.type && ('tunnel' in a ? a.tunnel : undefined) === ('tunnel' in b ? b.tunnel : undefined);
}

/** 5 SWITCH: each source entry becomes FORWARD(destination) in one atomic update — a drain's all in one batch. */
export async function switchToForward(g: StepGroup): Promise<Facts[]> {
  // Only the entry PREPARE saw is switched: one written since (its generation moved) is someone else's.
  const since = (ctx: StepContext): { ifGeneration?: number } => (original(ctx).generation ? { ifGeneration: original(ctx).generation } : {});
  let gens: number[];
  try {
    gens = await write(g, (ctx) => ctx.source, (ctx) => ({ op: 'set-action', name: ctx.plan.app, action: switchAction(ctx), ...since(ctx) }));
  } catch (err) {
    // Alone (a migration, or the per-app retry of a batch whose answer was lost), a 412 may be
    // this run's own switch: the entry tells.
    const ctx = g.apps[0];
    if (g.batched || g.apps.length !== 1 || !ctx || !moved(err)) throw err;
    const now = await ctx.source.getApp(ctx.plan.app);
    if (!now || !sameAction(now.action, switchAction(ctx))) {
      throw new StepFailure(`the source entry of ${ctx.plan.app} on ${ctx.plan.from} was written by someone else after PREPARE (${message(err)}): not switched`);
    }
    gens = [now.generation];
  }
  return g.apps.map((ctx, i) => wrote(ctx, 'switched', gens[i] ?? 0));
}

/** What SWITCH sets: FORWARD to the destination (PRESERVE when preserving connections: old TCP flows stay on the source until DRAIN_FLOWS). */
function switchAction(ctx: StepContext): Action {
  return { type: ctx.preserve ? 'preserve' : 'forward', tunnel: tunnel(ctx) };
}

/**
 * undo SWITCH: the source entry exactly as it was (LOCAL) — if it is still
 * what this run left it: the generation its SWITCH wrote, or the one
 * PREPARE saw when that is not known (SWITCH never answered). One written
 * since by someone else is not this run's to undo: that needs an operator.
 */
export async function restoreSource(ctx: StepContext): Promise<void> {
  const o = original(ctx);
  const mine = ctx.facts.generations?.switched ?? (o.generation || undefined);
  try {
    await ctx.source.setAction(o.name, o.action, { owner: ctx.journalId, ...(mine ? { ifGeneration: mine } : {}) });
  } catch (err) {
    if (moved(err)) {
      const now = await ctx.source.getApp(o.name);
      if (now && sameAction(now.action, o.action)) return; // already as it was
      if (now && ctx.facts.generations?.switched === undefined && sameAction(now.action, switchAction(ctx))) {
        // this run's own SWITCH, whose answer never came: undone as it is now
        await ctx.source.setAction(o.name, o.action, { owner: ctx.journalId, ifGeneration: now.generation });
        return;
      }
      throw new StepFailure(`the source entry of ${o.name} on ${ctx.plan.from} was written by someone else (${message(err)}): not restored`);
    }
    // The entry vanished (someone deleted it): put the remembered one back whole, unless someone made a new one.
    if (!(err instanceof AgentRefusedError && err.status === 404)) throw err;
    await ctx.source.putApp(
      o.name,
      { address: o.address, proto: o.proto, port: o.port, dev: o.dev, ...(o.mac ? { mac: o.mac } : {}), action: o.action },
      { owner: ctx.journalId, ifGeneration: 0 },
    );
  }
}

/**
 * After a crash inside SWITCH: what the source entry shows. 'switched' when
 * it forwards to the recorded tunnel, 'local' when it is still LOCAL,
 * otherwise what it is (for an operator). Throws when the source does not answer.
 */
export async function switchState(ctx: StepContext): Promise<{ state: 'switched' | 'local' | 'other'; observed: string }> {
  const entry = await ctx.source.getApp(ctx.plan.app);
  const observed = entry ? JSON.stringify(entry.action) : 'no entry';
  if ((entry?.action.type === 'forward' || entry?.action.type === 'preserve') && entry.action.tunnel === ctx.facts.tunnel) return { state: 'switched', observed };
  return { state: entry?.action.type === 'local' ? 'local' : 'other', observed };
}

/**
 * 6 STOP: once a grace period has passed since SWITCH (for packets already
 * queued to it), stop the app on the source. Counted from SWITCH, not from
 * this step: a drain flips a thousand apps in one batch, so their grace
 * periods run together instead of one after another.
 */
export async function stopOnSource(ctx: StepContext): Promise<void> {
  const since = ctx.switchedAt === undefined ? 0 : performance.now() - ctx.switchedAt;
  await sleep(Math.max(0, ctx.timing.stopGraceMs - since));
  await ctx.driver.stop(workloadApp(ctx), sourceHost(ctx), driverCtx(ctx));
}

/**
 * 7 ANNOUNCE, in the only order that loses nothing:
 *  a. each destination gets its own LOCAL redirect entry first, so packets
 *     the network starts delivering straight to it are delivered locally;
 *  b. the hook moves the network's routes to the destinations (one call);
 *     a hook whose sources announced too (bgp) withdraws theirs a grace
 *     period later, and the next step waits another;
 *  c. after a grace period (packets already routed to the source are still
 *     forwarded by it), the source entries are removed — the source is empty;
 *  d. after another short grace (tunnelled packets still in flight from the
 *     source), the destinations' delivery entries are removed.
 * (c) and (d) remove only the entries as this run left them (removeOwn).
 * With no hook that moves traffic (`none`), the network still sends the
 * apps' packets to the source: (c) and (d) are skipped and the source keeps
 * forwarding.
 */
export async function announce(g: StepGroup): Promise<void> {
  const first = g.apps[0];
  if (!first) return;
  const { announce: hook, timing } = first;
  await write(g, (ctx) => ctx.dest, (ctx) => ({ op: 'put-app', name: ctx.plan.app, ...destinationEntry(ctx), action: { type: 'local' } }));
  await hook.announceAll(g.apps.map(announcement));
  if (!hook.movesTraffic) {
    for (const ctx of g.apps) ctx.note(`no announce hook: ${ctx.plan.from} keeps forwarding ${ctx.plan.app} to ${ctx.plan.to}`);
    return;
  }
  await sleep(timing.announceGraceMs);
  if (hook.withdrawAll) {
    // The sources stop announcing once the destinations' routes had a grace period to spread; the network may
    // still send packets to a source for a moment after, and it forwards them until its entry goes (next grace).
    await hook.withdrawAll(g.apps.map(announcement));
    await sleep(timing.announceGraceMs);
  }
  await removeOwn(g, 'source');
  await sleep(Math.min(timing.announceGraceMs, 200));
  await removeOwn(g, 'delivery');
}

/**
 * ANNOUNCE's removals, like the undos: only the entry this run wrote last
 * (its generation — SWITCH's or DRAIN_FLOWS' on the source, DELIVER's on the
 * destination). One written since is someone else's: left as it is, noted.
 * A batch refused for one app's entry (412) fails the step, and the per-app
 * retry sorts it out app by app.
 */
async function removeOwn(g: StepGroup, which: 'source' | 'delivery'): Promise<void> {
  const at = (ctx: StepContext): AgentApi => (which === 'source' ? ctx.source : ctx.dest);
  const op = (ctx: StepContext): Op => {
    const mine = which === 'source' ? ctx.facts.generations?.switched : ctx.facts.generations?.delivery;
    return { op: which === 'source' ? 'delete-app' : 'delete-delivery', name: ctx.plan.app, ...(mine ? { ifGeneration: mine } : {}) };
  };
  if (g.batched) {
    await write(g, at, op);
    return;
  }
  for (const ctx of g.apps) {
    try {
      await applyOne(at(ctx), op(ctx), ctx.journalId);
    } catch (err) {
      if (!moved(err)) throw err;
      // A write of this run whose generation never reached the journal (DRAIN_FLOWS' FORWARD, the controller
      // stopped before its `done`) leaves the entry as this run makes it: removed at the generation it has now.
      const now = await currentIfOurs(ctx, which);
      if (now !== undefined) {
        await applyOne(at(ctx), { ...op(ctx), ifGeneration: now }, ctx.journalId);
        continue;
      }
      const what = which === 'source' ? `the source entry of ${ctx.plan.app} on ${ctx.plan.from}` : `the delivery of ${ctx.plan.app} on ${ctx.plan.to}`;
      ctx.note(`${what} was written by someone else after this migration wrote it (${message(err)}): left as it is`);
    }
  }
}

/** The generation of the app's entry when it is exactly as this run leaves it (source: FORWARD to the destination; delivery: DELIVER's), else undefined. */
async function currentIfOurs(ctx: StepContext, which: 'source' | 'delivery'): Promise<number | undefined> {
  if (which === 'source') {
    const now = await ctx.source.getApp(ctx.plan.app);
    return now && sameAction(now.action, { type: 'forward', tunnel: tunnel(ctx) }) ? now.generation : undefined;
  }
  const now = (await ctx.dest.listDeliveries()).find((d) => d.name === ctx.plan.app);
  const want = destinationEntry(ctx);
  const same = now && now.address === want.address && now.proto === want.proto && now.port === want.port && now.dev === want.dev && (!want.mac || now.mac === want.mac);
  return same ? now.generation : undefined;
}
