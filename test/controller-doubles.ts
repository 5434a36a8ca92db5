/**
 * Test doubles shared by the controller tests: a recording workload driver,
 * a recording announce hook, and a pair of in-memory agents holding app x
 * (to migrate) and app y (never touched). Not a test file itself.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AnnounceHook, Announcement } from '../src/controller/announce.js';
import { DEFAULT_TIMING, type Timing } from '../src/controller/journal.js';
import { MemoryAgent } from './lib/memory-agent.js';
import type { WorkloadApp, WorkloadDriver, WorkloadHost } from '../src/workload/driver.js';

export interface HasTeardown {
  teardown(fn: () => void | Promise<void>): void;
}

export const FAST: Timing = { ...DEFAULT_TIMING, readyTimeoutMs: 300, probeIntervalMs: 5, stopGraceMs: 1, announceGraceMs: 1, forwardAttempts: 2 };

/** A driver double that records calls and can be told to fail. */
export class FakeDriver implements WorkloadDriver {
  readonly kind = 'fake';
  calls: string[] = [];
  running = new Set<string>(['source']);
  fail: Partial<Record<'start' | 'probe' | 'stop', number>> = {};
  neverReady = false;
  private take(m: 'start' | 'probe' | 'stop'): void {
    const n = this.fail[m] ?? 0;
    if (n > 0) {
      this.fail[m] = n - 1;
      throw new Error(`injected ${m} failure`);
    }
  }
  async start(_a: WorkloadApp, h: WorkloadHost): Promise<void> {
    this.calls.push(`start ${h.role}`);
    this.take('start');
    this.running.add(h.role);
  }
  async probe(_a: WorkloadApp, h: WorkloadHost): Promise<boolean> {
    this.take('probe');
    return !this.neverReady && this.running.has(h.role);
  }
  async stop(_a: WorkloadApp, h: WorkloadHost): Promise<void> {
    this.calls.push(`stop ${h.role}`);
    this.take('stop');
    this.running.delete(h.role);
  }
}

export class FakeAnnounce implements AnnounceHook {
  readonly kind = 'exec' as const;
  announced: Announcement[] = [];
  constructor(readonly movesTraffic = true) {}
  async announce(a: Announcement): Promise<void> {
    this.announced.push(a);
  }
  async announceAll(l: readonly Announcement[]): Promise<void> {
    this.announced.push(...l);
  }
}

export type Env = ReturnType<typeof agents> & { driver: FakeDriver };

export function agents(): { a: MemoryAgent; b: MemoryAgent; connect: (u: string) => MemoryAgent } {
  const a = new MemoryAgent('http://a:7000', { v4: '192.0.2.1' });
  const b = new MemoryAgent('http://b:7000', { v4: '192.0.2.2' });
  a.apps.set('x', {
    name: 'x', address: '10.200.0.10', proto: 'udp', port: 5000, dev: 'vx-a', mac: '02:00:00:00:0a:01',
    macSource: 'given', path: { via: 'xdp' }, action: { type: 'local' }, appId: 7, generation: 1, counters: { local: { packets: '0', bytes: '0' }, forward: { packets: '0', bytes: '0' } },
  });
  a.apps.set('y', {
    name: 'y', address: '10.200.0.11', proto: 'any', port: 0, dev: 'vy-a', mac: '02:00:00:00:0a:02',
    macSource: 'given', path: { via: 'xdp' }, action: { type: 'local' }, appId: 8, generation: 2, counters: { local: { packets: '0', bytes: '0' }, forward: { packets: '0', bytes: '0' } },
  });
  const by: Record<string, MemoryAgent> = { [a.url]: a, [b.url]: b };
  return { a, b, connect: (u) => by[u] ?? new MemoryAgent(u, {}) };
}

export function stateDir(t: HasTeardown): string {
  const d = mkdtempSync(join(tmpdir(), 'rsct-machine-'));
  t.teardown(() => rmSync(d, { recursive: true, force: true }));
  return d;
}


