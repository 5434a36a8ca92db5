/** A ProbeSpec applied to one app on one host: defaults filled, namespace template expanded. */
import type { ProbeSpec, WorkloadApp, WorkloadHost } from './driver.js';
import { probe, probeInNetns } from './probe.js';
import { expand, templateVars } from './template.js';

export function runProbe(spec: ProbeSpec, app: WorkloadApp, host: WorkloadHost, defaultNetns?: string): Promise<boolean> {
  const address = spec.address ?? app.address;
  const timeout = spec.timeoutMs ?? 300;
  const ns = spec.netns !== undefined ? expand(spec.netns, templateVars(app, host)) : defaultNetns;
  return ns ? probeInNetns(ns, spec.proto, address, spec.port, timeout) : probe(spec.proto, address, spec.port, timeout);
}
