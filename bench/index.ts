/** Every benchmark, in the order `routeshift bench` runs them. */
import { agentMemory } from './agent-memory.js';
import { batchUpdate } from './batch-update.js';
import { drainBench } from './drain.js';
import { fwd } from './fwd.js';
import type { Benchmark } from './harness.js';
import { mapUpdate } from './map-update.js';
import { netnsPps } from './netns-pps.js';
import { pathsBench } from './paths.js';
import { scale } from './scale.js';
import { switchover } from './switchover.js';

import { BENCHMARK_NAMES } from './names.js';

export const BENCHMARKS: readonly Benchmark[] = [fwd, scale, netnsPps, pathsBench, mapUpdate, batchUpdate, switchover, drainBench, agentMemory];

if (BENCHMARKS.map((b) => b.name).join() !== BENCHMARK_NAMES.join()) {
  throw new Error(`bench/names.ts lists ${BENCHMARK_NAMES.join(', ')}, but the benchmarks are ${BENCHMARKS.map((b) => b.name).join(', ')}`);
}
