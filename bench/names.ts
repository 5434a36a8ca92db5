/**
 * The benchmarks' names in run order, apart from the benchmarks so the CLI
 * can list and check them without loading them (bench/index.ts verifies
 * this list against the modules).
 */
export const BENCHMARK_NAMES = ['fwd', 'scale', 'pps', 'paths', 'map-update', 'batch-update', 'switchover', 'drain', 'agent-memory'] as const;
