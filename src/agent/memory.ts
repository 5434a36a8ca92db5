/**
 * Giving a large request's memory back once it is done.
 *
 * A batch of 100k ops stages ~100 MB of short-lived objects. Node runs no
 * garbage collection while idle, so an agent that goes quiet after a drain
 * would keep that garbage (and V8's grown heap) resident until the next
 * busy moment, possibly forever. After such a request the agent collects
 * and asks malloc to return its free pages: the agent's steady RSS is then
 * what it holds (its code and a few MB), not its largest request.
 *
 * The young generation is the other part: V8 grows it to 32 MB under a
 * batch's allocation rate and keeps it. The agent runs with it capped
 * (AGENT_NODE_FLAGS, set where the agent is launched: the CLI's shebang,
 * the systemd unit, the testbed), which costs no measurable batch speed.
 * bench/agent-memory.ts measures both effects.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { addon } from '../bpf/native.js';

/** Node flags the agent runs with (a V8 heap cannot be resized once it exists). */
export const AGENT_NODE_FLAGS = ['--max-semi-space-size=2'] as const;

/** Whether this process was started with AGENT_NODE_FLAGS (for a start-up hint). */
export function youngGenerationCapped(): boolean {
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return given.some((a) => a.startsWith('--max-semi-space-size'));
}

/** Requests touching at least this many entries are followed by a release. */
export const RELEASE_AFTER_OPS = 10_000;

let collect: (() => void) | undefined;

function gcFunction(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed) return exposed;
  // Without --expose-gc: the flag makes `gc` appear in contexts created afterwards.
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/**
 * Two full collections, then malloc_trim. Blocks for tens of ms: call it
 * off the request path. (Measured: one collection leaves ~25 MB more
 * resident than two; V8 sizes its heap from the survivors of the last one.)
 */
export function releaseMemory(): void {
  collect ??= gcFunction();
  collect();
  collect();
  addon().trimMemory();
}

/** Quiet time after the last heavy request before memory is given back. */
export const RELEASE_QUIET_MS = 250;

let timer: NodeJS.Timeout | undefined;

/**
 * Release once the agent has been quiet for RELEASE_QUIET_MS: a listing
 * paged through a million entries, or a load in many batches, pays for
 * one release at the end, not one per request (each costs ~0.1 s).
 */
export function scheduleRelease(): void {
  if (timer) clearTimeout(timer);
  timer = setTimeout(() => {
    timer = undefined;
    releaseMemory();
  }, RELEASE_QUIET_MS);
  timer.unref();
}
