/**
 * What each migration step does, and what undoes it — for one app. The
 * order, the journal and the rollback policy live in machine.ts; this module
 * only knows how to talk to agents, drivers and hooks.
 *
 * Every action is idempotent: a resumed controller may run a step again
 * that had (partly) happened before it died, and that must be harmless.
 */
import { isIP } from 'node:net';
import { type AgentApi, type App, type DeliverySpec, AgentRefusedError } from './agent-client.js';
import type { AnnounceHook, Announcement } from './announce.js';
import type { Facts, PlanRecord, Timing } from './journal.js';
import type { DriverContext, WorkloadApp, WorkloadDriver, WorkloadHost } from '../workload/driver.js';

/** Everything a step needs. `facts` is filled by PREPARE and restored from the journal on resume. */
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
}

export class StepFailure extends Error {
  override readonly name = 'StepFailure';
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export function original(ctx: StepContext): App {
  const o = ctx.facts.original;
  if (!o) throw new StepFailure(`the source entry of ${ctx.plan.app} was never recorded (PREPARE did not complete)`);
  return o;
}

function tunnel(ctx: StepContext): string {
  const t = ctx.facts.tunnel;
  if (!t) throw new StepFailure(`the tunnel address of ${ctx.plan.to} was never recorded (PREPARE did not complete)`);
  return t;
}

export function workloadApp(ctx: StepContext): WorkloadApp {
  const o = original(ctx);
  return { name: o.name, address: o.address, proto: o.proto, port: o.port, migrationId: ctx.journalId };
}

export function sourceHost(ctx: StepContext): WorkloadHost {
  return { role: 'source', agentUrl: ctx.plan.from, index: 0 };
}

export function destHost(ctx: StepContext): WorkloadHost {
  return { role: 'destination', agentUrl: ctx.plan.to, index: ctx.plan.toIndex };
}

function driverCtx(ctx: StepContext): DriverContext {
  return { log: (m) => ctx.note(m) };
}

/** The destination's tunnel endpoint for an address of this family. */
export async function tunnelFor(dest: AgentApi, address: string): Promise<string> {
  const st = await dest.status();
  const v6 = isIP(address) === 6;
  const t = v6 ? st.tunnel.v6 : st.tunnel.v4;
  if (!t) throw new StepFailure(`agent ${dest.url} has no ${v6 ? 'IPv6' : 'IPv4'} tunnel address (start it with --tunnel-addr)`);
  return t;
}

// ------------------------------------------------------------------ actions

/** 1 PREPARE: the source entry exists and is LOCAL; remember it, and the destination's tunnel. */
export async function prepare(ctx: StepContext): Promise<Facts> {
  const { app, from } = ctx.plan;
  const entry = await ctx.source.getApp(app);
  if (!entry) throw new StepFailure(`agent ${from} has no app ${app} (add it with \`routeshift app add\`)`);
  if (entry.action.type !== 'local') {
    throw new StepFailure(`app ${app} on ${from} is not LOCAL (it forwards to ${entry.action.tunnel}): is it being migrated already? see --resume`);
  }
  return { original: entry, tunnel: await tunnelFor(ctx.dest, entry.address) };
}

/** 2 START: the driver starts the app on the destination. */
export async function start(ctx: StepContext): Promise<void> {
  await ctx.driver.start(workloadApp(ctx), destHost(ctx), driverCtx(ctx));
}

/** undo START: stop what the driver started on the destination. */
export async function stopOnDestination(ctx: StepContext): Promise<void> {
  await ctx.driver.stop(workloadApp(ctx), destHost(ctx), driverCtx(ctx));
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

/** 3 DELIVER: the destination hands tunnelled packets for the app to its interface there. */
export async function deliver(ctx: StepContext): Promise<void> {
  await ctx.dest.putDelivery(original(ctx).name, destinationEntry(ctx));
}

/** undo DELIVER. */
export async function removeDelivery(ctx: StepContext): Promise<void> {
  await ctx.dest.deleteDelivery(ctx.plan.app);
}

/** 4 READY: wait for the driver to say the app executes on the destination, bounded by the ready timeout. */
export async function awaitReady(ctx: StepContext): Promise<void> {
  const { readyTimeoutMs, probeIntervalMs } = ctx.timing;
  const deadline = Date.now() + readyTimeoutMs;
  const maxRounds = Math.ceil(readyTimeoutMs / Math.max(1, probeIntervalMs)) + 2;
  const app = workloadApp(ctx);
  const host = destHost(ctx);
  for (let round = 0; round < maxRounds && Date.now() <= deadline; round++) {
    if (await ctx.driver.probe(app, host, driverCtx(ctx))) return;
    await sleep(Math.min(probeIntervalMs, Math.max(0, deadline - Date.now())));
  }
  throw new StepFailure(`${app.name} did not become ready on ${ctx.plan.to} within ${readyTimeoutMs} ms (driver ${ctx.driver.kind})`);
}

/** 5 SWITCH: one atomic update of the source entry to FORWARD(destination). */
export async function switchToForward(ctx: StepContext): Promise<void> {
  const t = tunnel(ctx);
  const app = await ctx.source.setAction(ctx.plan.app, { type: 'forward', tunnel: t });
  if (app.action.type !== 'forward' || app.action.tunnel !== t) {
    throw new StepFailure(`agent ${ctx.plan.from} answered SWITCH of ${ctx.plan.app} with action ${JSON.stringify(app.action)}`);
  }
}

/** undo SWITCH: the source entry exactly as it was (LOCAL). */
export async function restoreSource(ctx: StepContext): Promise<void> {
  const o = original(ctx);
  try {
    await ctx.source.setAction(o.name, o.action);
  } catch (err) {
    // The entry vanished (someone deleted it): put the remembered one back whole.
    if (!(err instanceof AgentRefusedError && err.status === 404)) throw err;
    await ctx.source.putApp(o.name, { address: o.address, proto: o.proto, port: o.port, dev: o.dev, ...(o.mac ? { mac: o.mac } : {}), action: o.action });
  }
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

/** The destination's own redirect entry: LOCAL to the app's interface there. */
export async function claimOnDestination(ctx: StepContext): Promise<void> {
  await ctx.dest.putApp(original(ctx).name, { ...destinationEntry(ctx), action: { type: 'local' } });
}

export function announcement(ctx: StepContext): Announcement {
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

/**
 * 7 ANNOUNCE, in the only order that loses nothing:
 *  a. the destination gets its own LOCAL redirect entry first, so packets
 *     the network starts delivering straight to it are delivered locally;
 *  b. the hook moves the network's route to the destination;
 *  c. after a grace period (packets already routed to the source are still
 *     forwarded by it), the source entry is removed — the source is empty;
 *  d. after another short grace (tunnelled packets still in flight from the
 *     source), the destination's delivery entry is removed.
 * With no hook that moves traffic (`none`), the network still sends the
 * app's packets to the source: (c) and (d) are skipped and the source keeps
 * forwarding.
 */
export async function announce(ctx: StepContext): Promise<void> {
  await claimOnDestination(ctx);
  await ctx.announce.announce(announcement(ctx));
  if (!ctx.announce.movesTraffic) {
    ctx.note(`no announce hook: ${ctx.plan.from} keeps forwarding ${ctx.plan.app} to ${ctx.plan.to}`);
    return;
  }
  await sleep(ctx.timing.announceGraceMs);
  await ctx.source.deleteApp(ctx.plan.app);
  await sleep(Math.min(ctx.timing.announceGraceMs, 200));
  await ctx.dest.deleteDelivery(ctx.plan.app);
}
