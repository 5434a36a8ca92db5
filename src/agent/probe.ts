/**
 * POST /v1/probe: the agent checks, from its own host, that the app behind
 * one of its delivery entries answers — the copy on this host, not one the
 * network would route a probe from elsewhere to. The probe goes to the
 * delivery's address only when this host's route to it leaves through the
 * delivery's device (the app's veth or bridge), so it reaches what the
 * entry delivers to. It is not a relay: it only ever reaches addresses of
 * this agent's own delivery entries, one datagram or one connection, bounded in time.
 *
 * UDP: one datagram on a connected socket; any answer from the address and
 * port is ready, an ICMP port unreachable is not (ECONNREFUSED). TCP: one
 * connection accepted. Both are sent from this host's tunnel address (when
 * it has one of the family): an app answers a datagram from the address its
 * route back to the sender gives, and the route back to the host's own
 * address is the app's default one, from the app's address — the one the
 * connected socket waits for (from the link address of a routed veth, the
 * app's answer would come from its side of that link and not count).
 */
import { createSocket } from 'node:dgram';
import { Socket, isIPv6 } from 'node:net';
import { ifindexOf, linkInfo, routeGet } from '../bpf/index.js';
import type { ProbeBody, ProbeView } from '../model/entry.js';
import { ConflictError } from '../model/errors.js';

/** What is sent in a UDP probe (an echo app answers it). */
export const AGENT_PROBE_PAYLOAD = 'routeshift-probe';

/** Where a delivery entry delivers: what the probe needs of it. */
export interface DeliveryTarget {
  address: string;
  dev: string;
}

/** A 409 when the probe cannot reach the delivery's device from here (nothing was sent). */
function checkRoute(t: DeliveryTarget, name: string): void {
  let ifindex: number;
  try {
    ifindex = ifindexOf(t.dev);
  } catch {
    throw new ConflictError(`delivery ${JSON.stringify(name)}: its device ${t.dev} does not exist on this host: nothing to probe`);
  }
  let via: number;
  try {
    via = routeGet(t.address).ifindex;
  } catch (err) {
    throw new ConflictError(`delivery ${JSON.stringify(name)}: no route to ${t.address} on this host (${(err as Error).message}): nothing was sent`);
  }
  if (via !== ifindex) {
    let other = `ifindex ${via}`;
    try {
      other = linkInfo(via).name;
    } catch {
      /* keep the index */
    }
    throw new ConflictError(
      `delivery ${JSON.stringify(name)}: this host routes ${t.address} out of ${other}, not the delivery's device ${t.dev} (ifindex ${ifindex}): ` +
        'a probe would not reach the app behind it; nothing was sent',
    );
  }
}

function udpRoundTrip(address: string, port: number, timeoutMs: number, local: string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = createSocket(isIPv6(address) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (error: string | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(error);
    };
    const timer = setTimeout(() => finish(`no answer within ${timeoutMs} ms`), timeoutMs);
    sock.on('message', (_msg, rinfo) => {
      if (rinfo.port === port) finish(undefined);
    });
    sock.on('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? `nothing listens on udp/${port} (port unreachable)` : err.message));
    const send = (): void => sock.connect(port, address, () => sock.send(AGENT_PROBE_PAYLOAD, (err) => err && finish(err.message)));
    if (local) sock.bind({ address: local, port: 0 }, send);
    else send();
  });
}

function tcpConnect(address: string, port: number, timeoutMs: number, local: string | undefined): Promise<string | undefined> {
  return new Promise((resolve) => {
    const sock = new Socket();
    let done = false;
    const finish = (error: string | undefined): void => {
      if (done) return;
      done = true;
      sock.destroy();
      resolve(error);
    };
    sock.setTimeout(timeoutMs, () => finish(`not accepted within ${timeoutMs} ms`));
    sock.once('connect', () => finish(undefined));
    sock.once('error', (err: NodeJS.ErrnoException) => finish(err.code === 'ECONNREFUSED' ? `nothing listens on tcp/${port} (connection refused)` : err.message));
    sock.connect({ host: address, port, ...(local ? { localAddress: local } : {}) });
  });
}

/**
 * Probe the app behind a delivery entry (looked up by the caller, so only
 * this agent's own entries are probed), from `tunnel`'s address of its family.
 */
export async function probeDelivery(
  name: string,
  target: DeliveryTarget,
  req: Required<Omit<ProbeBody, 'name'>>,
  tunnel: { v4: string | null; v6: string | null },
): Promise<ProbeView> {
  checkRoute(target, name);
  const local = (isIPv6(target.address) ? tunnel.v6 : tunnel.v4) ?? undefined;
  const t0 = performance.now();
  const error =
    req.proto === 'udp' ? await udpRoundTrip(target.address, req.port, req.timeoutMs, local) : await tcpConnect(target.address, req.port, req.timeoutMs, local);
  const base = { address: target.address, dev: target.dev };
  if (error !== undefined) return { ok: false, ...base, rttMs: null, error };
  return { ok: true, ...base, rttMs: Math.round((performance.now() - t0) * 1000) / 1000 };
}
