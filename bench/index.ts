/** Every benchmark, in the order `routeshift bench` runs them. */
import { fwd } from './fwd.js';
import type { Benchmark } from './harness.js';
import { scale } from './scale.js';

export const BENCHMARKS: readonly Benchmark[] = [fwd, scale];
