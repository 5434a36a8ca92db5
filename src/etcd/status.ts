/**
 * The value of a host's status key (`<prefix>hosts/<host>/status`, JSON):
 * written by the host's agent (src/agent/etcd-source.ts), read by the
 * controller (src/controller/etcd-agent.ts). docs/etcd.md, "The status key".
 */
import type { EntryKind } from './layout.js';

/** An entry etcd asks for that this agent does not hold as asked. */
export interface EntryError {
  kind: EntryKind | 'key';
  name: string;
  /** The etcd revision of the value that failed. */
  revision: number;
  error: string;
}

/** The status key's value (JSON). */
export interface EtcdStatusReport {
  host: string;
  /** ok: connected and every entry applied; degraded: some entries failed; syncing: not caught up with etcd. */
  state: 'ok' | 'degraded' | 'syncing';
  /** Every change up to this etcd revision is applied (or listed in errors). */
  appliedRevision: number;
  fullSyncs: number;
  lastFullSync: { reason: 'start' | 'compacted' | 'retry'; revision: number; at: string } | null;
  errorCount: number;
  errors: EntryError[];
  health: Record<string, unknown>;
  /** The agent's API URL (reads, probes, flows); absent from agents that predate it. */
  url?: string;
  updatedAt: string;
}
