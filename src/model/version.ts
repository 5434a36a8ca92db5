/**
 * What build this is: the version from package.json (one statement of it,
 * for `--version`, the agent's /status and `routeshift_build_info`), and the
 * git commit when running from a checkout (an installed package has none).
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BuildInfo {
  version: string;
  /** 12 hex digits of the checkout's HEAD; absent outside a git checkout. */
  commit?: string;
}

/** The package root: the nearest directory above this file with a package.json (src/ or dist/src/ alike). */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('routeshift: no package.json above this module');
    dir = up;
  }
  return dir;
}

/** HEAD's commit, read from .git without running git (it may not be installed). */
function gitCommit(root: string): string | undefined {
  const git = join(root, '.git');
  try {
    const head = readFileSync(join(git, 'HEAD'), 'utf8').trim();
    const ref = /^ref: (.+)$/.exec(head)?.[1];
    let sha = ref ? undefined : head;
    if (ref) {
      if (existsSync(join(git, ref))) sha = readFileSync(join(git, ref), 'utf8').trim();
      else {
        // A packed ref: "<sha> <ref>" lines.
        const line = readFileSync(join(git, 'packed-refs'), 'utf8').split('\n').find((l) => l.endsWith(` ${ref}`));
        sha = line?.split(' ')[0];
      }
    }
    return sha && /^[0-9a-f]{40}$/.test(sha) ? sha.slice(0, 12) : undefined;
  } catch {
    return undefined;
  }
}

let cached: BuildInfo | undefined;

export function buildInfo(): BuildInfo {
  if (cached) return cached;
  const root = packageRoot();
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version?: unknown }).version;
  if (typeof version !== 'string') throw new Error(`routeshift: ${join(root, 'package.json')} has no version`);
  const commit = gitCommit(root);
  cached = { version, ...(commit ? { commit } : {}) };
  return cached;
}
