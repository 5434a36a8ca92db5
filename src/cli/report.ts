/**
 * After a run, hand each source agent the outcome and phase durations of
 * the migrations that left it (POST /v1/migrations), so that Prometheus,
 * which cannot scrape a CLI run, sees them on the agent's /metrics. A
 * report that fails is said on stderr and changes nothing else: the
 * migration's own result and exit code stand.
 */
import { AgentRefusedError, type AgentConnector } from '../controller/agent-client.js';
import type { MigrationResult } from '../controller/machine.js';
import { message } from '../controller/machine.js';
import type { MigrationReport } from '../model/migration-report.js';

/** Reports per request: a drain of a big host goes in a few of them. */
const CHUNK = 10_000;

export async function reportMigrations(connect: AgentConnector, results: readonly MigrationResult[]): Promise<void> {
  const bySource = new Map<string, MigrationReport[]>();
  for (const r of results) {
    const list = bySource.get(r.from) ?? [];
    list.push({ outcome: r.outcome, phasesMs: { ...r.phases } as Record<string, number> });
    bySource.set(r.from, list);
  }
  await Promise.all(
    [...bySource].map(async ([url, reports]) => {
      const agent = connect(url);
      if (!agent.reportMigrations) return;
      try {
        for (let i = 0; i < reports.length; i += CHUNK) await agent.reportMigrations({ migrations: reports.slice(i, i + CHUNK) });
      } catch (err) {
        if (err instanceof AgentRefusedError && err.status === 404) return; // an agent older than the endpoint
        process.stderr.write(`routeshift: the migration result was not counted on ${url}'s /metrics: ${message(err)}\n`);
      }
    }),
  );
}
