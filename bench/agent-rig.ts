/**
 * A one-host (or two-host) topology with real `routeshift agent` processes,
 * their pin directories and a shared token: what the agent-level
 * benchmarks stand on. Everything is removed by exact name in close().
 */
import { AgentProcess } from '../src/testbed/agent-process.js';
import { Topology, type AppPlacement } from '../src/testbed/topology.js';
import { pinDirFor, removePinDir, tokenDir } from './common.js';

export class AgentRig {
  readonly agents: Record<string, AgentProcess> = {};
  readonly #pins: string[] = [];
  private constructor(
    readonly topo: Topology,
    readonly token: ReturnType<typeof tokenDir>,
  ) {}

  static async create(opts: { hosts: string[]; apps: AppPlacement[]; agentArgs?: string[]; agentEnv?: Record<string, string>; startAgents?: boolean }): Promise<AgentRig> {
    const topo = Topology.create({ ipv6: false, hosts: opts.hosts, apps: opts.apps });
    const rig = new AgentRig(topo, tokenDir(topo.prefix));
    try {
      if (opts.startAgents ?? true) for (const h of opts.hosts) await rig.startAgent(h, opts.agentArgs ?? [], opts.agentEnv);
    } catch (err) {
      await rig.close();
      throw err;
    }
    return rig;
  }

  pinDir(host: string): string {
    return pinDirFor(this.topo.prefix, host);
  }

  async startAgent(host: string, args: string[], env?: Record<string, string>): Promise<AgentProcess> {
    const pin = this.pinDir(host);
    if (!this.#pins.includes(pin)) this.#pins.push(pin);
    // AgentProcess spawns with this process' environment: add to it for the spawn only
    const saved: Record<string, string | undefined> = {};
    for (const [k, v] of Object.entries(env ?? {})) {
      saved[k] = process.env[k];
      process.env[k] = v;
    }
    try {
      const a = await AgentProcess.start({ netns: this.topo.host(host).ns.name, pinDir: pin, tokenFile: this.token.tokenFile, args, readyTimeoutMs: 90_000 /* adopting a million pinned entries on a loaded machine */ });
      this.agents[host] = a;
      return a;
    } finally {
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  }

  agent(host: string): AgentProcess {
    const a = this.agents[host];
    if (!a) throw new Error(`no agent on ${host}`);
    return a;
  }

  async close(): Promise<void> {
    for (const a of Object.values(this.agents)) await a.stop().catch(() => undefined);
    this.topo.destroy();
    for (const p of this.#pins) removePinDir(p);
    this.token.remove();
  }
}

/** The i-th benchmark address, 10.64.0.0 + i (the keys bench/out/update_c builds). */
export function benchAddr(i: number): string {
  const n = ((10 << 24) | (64 << 16) | i) >>> 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

/** POST /v1/batch with the rig's token; throws unless 200. Returns ms taken. */
export async function postBatch(a: AgentProcess, ops: unknown[]): Promise<number> {
  const t0 = performance.now();
  const r = await a.request('POST', '/v1/batch', { ops });
  const ms = performance.now() - t0;
  if (r.status !== 200) throw new Error(`POST /v1/batch of ${ops.length} ops → ${r.status}: ${r.text.slice(0, 300)}`);
  return ms;
}
