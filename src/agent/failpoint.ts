/**
 * Failpoints: testing only. ROUTESHIFT_FAILPOINT=<point>:<n> makes the
 * agent SIGKILL itself the n-th time it passes <point> (e.g. `apply:7`:
 * after the 7th batched map write of an apply), so a test can crash it at
 * an exact place in a change and check what a restart makes of it. Unset,
 * a failpoint costs one comparison.
 */
const spec = /^([a-z-]+):(\d+)$/.exec(process.env.ROUTESHIFT_FAILPOINT ?? '');
const point = spec?.[1];
let left = spec ? Number(spec[2]) : 0;

export function crashPoint(name: string): void {
  if (name !== point) return;
  if (--left === 0) process.kill(process.pid, 'SIGKILL');
}
