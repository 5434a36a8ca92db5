/**
 * `{app}`-style placeholders in user-given names and command lines, so one
 * option can describe every app of a drain (e.g. `--dst-netns app-{app}-b`).
 */
import type { WorkloadApp, WorkloadHost } from './driver.js';

export function templateVars(app: WorkloadApp, host?: WorkloadHost): Record<string, string> {
  return {
    app: app.name,
    address: app.address,
    port: String(app.port),
    proto: String(app.proto),
    ...(host ? { index: String(host.index), role: host.role } : {}),
  };
}

/** Replace `{name}`; an unknown placeholder is an error, not silently kept. */
export function expand(template: string, vars: Record<string, string>): string {
  return template.replace(/\{([a-z]+)\}/g, (whole, key: string) => {
    const v = vars[key];
    if (v === undefined) throw new Error(`unknown placeholder ${whole} in ${JSON.stringify(template)} (known: ${Object.keys(vars).map((k) => `{${k}}`).join(' ')})`);
    return v;
  });
}
