/**
 * A memory probe preloaded into a process under measurement
 * (NODE_OPTIONS=--import=<this file>, RS_MEM_PROBE_OUT=<file>): on SIGUSR2
 * it writes process.memoryUsage() before and after a full GC and V8's heap
 * space statistics to that file. It changes nothing else in the process
 * (used by bench/agent-memory.ts on a real `routeshift agent`).
 */
import { renameSync, writeFileSync } from 'node:fs';
import v8 from 'node:v8';
import vm from 'node:vm';

const out = process.env.RS_MEM_PROBE_OUT;
if (out) {
  process.on('SIGUSR2', () => {
    const before = process.memoryUsage();
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    gc();
    const after = process.memoryUsage();
    const spaces = v8.getHeapSpaceStatistics().map((s) => ({ name: s.space_name, used: s.space_used_size, size: s.space_size }));
    writeFileSync(`${out}.tmp`, JSON.stringify({ before, after, spaces, heap: v8.getHeapStatistics() }));
    renameSync(`${out}.tmp`, out);
  });
}
