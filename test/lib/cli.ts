/**
 * Run the built CLI as a user would: its own process, stdout and stderr
 * kept apart, killed after a deadline so a hung command fails its test.
 */
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export const CLI = join(process.cwd(), 'dist/src/cli/main.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Added to the environment (after isolation). */
  env?: Record<string, string>;
  /** A HOME of its own and none of the caller's ROUTESHIFT_* or XDG_CONFIG_HOME: no credentials leak in. */
  isolatedHome?: string;
  timeoutMs?: number;
}

export function runCli(args: readonly string[], o: CliOptions = {}): Promise<CliRun> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined) continue;
    if (o.isolatedHome !== undefined && (k.startsWith('ROUTESHIFT_') || k === 'XDG_CONFIG_HOME')) continue;
    env[k] = v;
  }
  if (o.isolatedHome !== undefined) {
    mkdirSync(o.isolatedHome, { recursive: true });
    env.HOME = o.isolatedHome;
  }
  Object.assign(env, o.env);
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => c.kill('SIGKILL'), o.timeoutMs ?? 60_000);
    c.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
