/**
 * One agent per pin directory: an exclusive lock file holding the owner's
 * PID. A lock whose PID is no longer alive is stale and taken over, so a
 * SIGKILLed agent can be restarted at once.
 */
import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { pidRunning } from '../workload/process.js';

export const LOCK_DIR = '/run/routeshift';

export class PidLock {
  private constructor(readonly path: string) {}

  /** Take the lock named after `resource`, or throw naming the holder. */
  static acquire(resource: string, what: string, dir: string = LOCK_DIR): PidLock {
    mkdirSync(dir, { recursive: true });
    const path = join(dir, `${resource.replace(/[^A-Za-z0-9_.-]/g, '_')}.lock`);
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const fd = openSync(path, 'wx', 0o644);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return new PidLock(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let holder = NaN;
      try {
        holder = Number(readFileSync(path, 'utf8').trim());
      } catch {
        continue; // released between our open and read: try again
      }
      if (Number.isInteger(holder) && holder > 0 && pidRunning(holder) && holder !== process.pid) {
        throw new Error(`${what} is already owned by process ${holder} (lock ${path})`);
      }
      unlinkSync(path); // stale: its owner is gone
    }
    throw new Error(`could not take lock ${path}`);
  }

  release(): void {
    try {
      if (Number(readFileSync(this.path, 'utf8').trim()) === process.pid) unlinkSync(this.path);
    } catch {
      /* already gone */
    }
  }
}
