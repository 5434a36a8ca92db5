/**
 * Per-application packet rates over time, read from the agents' /metrics
 * (the same counters an operator's Prometheus scrapes).
 */
export interface RateSample {
  /** Seconds since the monitor started. */
  t: number;
  /** "A x local" → packets per second over the last interval. */
  pps: Record<string, number>;
}

export interface MonitoredAgent {
  host: string;
  url: string;
  token: string;
}

const LINE = /^routeshift_app_packets_total\{app="([^"]+)",action="([^"]+)"[^}]*\} ([0-9.e+]+)$/;

/** Parse the per-app packet counters out of a Prometheus exposition. */
export function parseAppPackets(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (m) out.set(`${m[1]} ${m[2]}`, Number(m[3]));
  }
  return out;
}

export class RateMonitor {
  readonly samples: RateSample[] = [];
  readonly #last = new Map<string, number>();
  #lastAt = 0;
  #timer: NodeJS.Timeout | undefined;
  readonly #started = performance.now();

  constructor(
    private readonly agents: readonly MonitoredAgent[],
    private readonly intervalMs: number,
    private readonly onSample?: (s: RateSample) => void,
  ) {}

  /** Seconds since start, on the monitor's clock (for marking events). */
  now(): number {
    return (performance.now() - this.#started) / 1000;
  }

  async start(): Promise<void> {
    await this.#poll(); // baseline counters
    this.#timer = setInterval(() => void this.#poll(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  async #poll(): Promise<void> {
    const at = performance.now();
    const counts = new Map<string, number>();
    await Promise.all(
      this.agents.map(async (a) => {
        try {
          const res = await fetch(`${a.url}/metrics`, { headers: { authorization: `Bearer ${a.token}` }, signal: AbortSignal.timeout(this.intervalMs) });
          for (const [k, v] of parseAppPackets(await res.text())) counts.set(`${a.host} ${k}`, v);
        } catch {
          /* an agent restarting: no sample from it this round */
        }
      }),
    );
    if (this.#lastAt) {
      const dt = (at - this.#lastAt) / 1000;
      const pps: Record<string, number> = {};
      for (const [k, v] of counts) {
        const prev = this.#last.get(k);
        if (prev !== undefined && v >= prev) pps[k] = (v - prev) / dt;
      }
      const sample = { t: (at - this.#started) / 1000, pps };
      this.samples.push(sample);
      this.onSample?.(sample);
    }
    for (const [k, v] of counts) this.#last.set(k, v);
    this.#lastAt = at;
  }
}
