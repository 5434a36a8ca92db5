/**
 * Run a user hook script with extra environment variables and a timeout.
 * Used by the `exec` workload driver and the `exec` announce hook. The
 * script is run directly (it needs a shebang and the execute bit), never
 * through a shell, so nothing in the variables can be interpreted.
 */
import { spawn } from 'node:child_process';

export interface HookResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** The last 2 KiB of stderr, to quote in errors. */
  stderr: string;
  stdout: string;
}

const TAIL = 2048;

export function runHook(script: string, env: Record<string, string>, timeoutMs: number): Promise<HookResult> {
  return new Promise((resolve, reject) => {
    // Its own process group: on timeout the script AND what it started are
    // killed (the group exists only because we created it), so a hung hook
    // cannot hold its output pipes open past the timeout.
    const child = spawn(script, [], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (b: Buffer) => (stdout = (stdout + b.toString()).slice(-TAIL)));
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-TAIL)));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot run hook ${script}: ${(err as NodeJS.ErrnoException).code ?? err.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, timedOut, stderr: stderr.trim(), stdout: stdout.trim() });
    });
  });
}

/** One line describing why a hook did not succeed. */
export function describeHookFailure(script: string, r: HookResult, timeoutMs: number): string {
  const why = r.timedOut ? `timed out after ${timeoutMs} ms` : r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  const tail = r.stderr.split('\n').slice(-3).join(' | ');
  return `hook ${script} ${why}${tail ? `: ${tail}` : ''}`;
}
