/**
 * A process identified by PID *and* start time, so a PID that was reused by
 * an unrelated process after ours died is never mistaken for ours — the
 * workload drivers only ever signal processes they started, and the
 * controller's per-app lock only ever trusts holders that are still the same
 * process. Plain /proc and signals: below the workload and the controller,
 * which both use it.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessIdentity {
  pid: number;
  /** Field 22 of /proc/PID/stat: start time in clock ticks after boot. */
  startTime: string;
}

/** Read a process's stat; undefined when it does not exist. */
function readStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); field 22 is rest[19].
  const state = rest[0];
  const startTime = rest[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

export function identify(pid: number): ProcessIdentity | undefined {
  const s = readStat(pid);
  return s && { pid, startTime: s.startTime };
}

/** Is this exact process still running (not exited, not a zombie)? */
export function isAlive(id: ProcessIdentity): boolean {
  const s = readStat(id.pid);
  return s !== undefined && s.startTime === id.startTime && s.state !== 'Z' && s.state !== 'X';
}

/**
 * SIGTERM this exact process, wait up to `killAfterMs`, then SIGKILL and wait
 * again (bounded). Returns how it ended.
 */
export async function terminate(id: ProcessIdentity, killAfterMs: number): Promise<'not-running' | 'terminated' | 'killed'> {
  if (!isAlive(id)) return 'not-running';
  signal(id, 'SIGTERM');
  const deadline = Date.now() + killAfterMs;
  while (Date.now() < deadline) {
    if (!isAlive(id)) return 'terminated';
    await sleep(20);
  }
  signal(id, 'SIGKILL');
  for (let i = 0; i < 100 && isAlive(id); i++) await sleep(20);
  if (isAlive(id)) throw new Error(`process ${id.pid} survived SIGKILL for 2 s`);
  return 'killed';
}

function signal(id: ProcessIdentity, sig: NodeJS.Signals): void {
  // Re-check identity right before signalling: never signal a reused PID.
  if (!isAlive(id)) return;
  try {
    process.kill(id.pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
