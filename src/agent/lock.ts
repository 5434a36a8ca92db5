/**
 * One agent per pin directory: an exclusive flock(2) on a lock file, held
 * for the agent's life. The kernel releases it when the agent exits or is
 * killed, so a SIGKILLed agent can be restarted at once, a reused PID
 * cannot keep a dead agent's lock, and two agents starting together cannot
 * both win. The file holds the owner's PID, for the refusal message.
 */
import { closeSync, existsSync, fstatSync, ftruncateSync, mkdirSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { addon, isErrno } from '../bpf/native.js';

export const LOCK_DIR = '/run/routeshift';

/** The lock an agent takes: one per pin directory (so one per uplink by default). */
export function agentLockName(pinDir: string): string {
  return `agent-${pinDir}`;
}

/** The lock an agent takes for its uplink, whatever its pin directory: one per (network namespace, device). */
export function uplinkLockName(netnsInode: bigint, uplink: string): string {
  return `uplink-${netnsInode}-${uplink}`;
}

function lockPath(resource: string, dir: string): string {
  return join(dir, `${resource.replace(/[^A-Za-z0-9_.-]/g, '_')}.lock`);
}

export class PidLock {
  private constructor(
    readonly path: string,
    private fd: number | undefined,
  ) {}

  /** Take the lock named after `resource`, or throw naming the holder. */
  static acquire(resource: string, what: string, dir: string = LOCK_DIR): PidLock {
    mkdirSync(dir, { recursive: true });
    const path = lockPath(resource, dir);
    for (let attempt = 0; attempt < 5; attempt++) {
      let fd: number;
      try {
        fd = addon().lockFile(path);
      } catch (err) {
        if (!isErrno(err, 'EWOULDBLOCK') && !isErrno(err, 'EAGAIN')) throw err;
        const holder = readHolder(path);
        throw new Error(`${what} is already owned by ${holder ? `process ${holder}` : 'another process'} (lock ${path})`);
      }
      // The holder before us may have unlinked the file after we opened it:
      // then we locked a file nobody else will see. Only the file at `path` counts.
      if (sameFile(fd, path)) {
        ftruncateSync(fd, 0);
        writeSync(fd, `${process.pid}\n`, 0);
        return new PidLock(path, fd);
      }
      closeSync(fd);
    }
    throw new Error(`could not take lock ${path}`);
  }

  /**
   * Remove a lock file nobody holds (what a killed agent leaves behind);
   * returns its path when it removed one. A held lock is left alone.
   */
  static removeIfFree(resource: string, dir: string = LOCK_DIR): string | undefined {
    const path = lockPath(resource, dir);
    if (!existsSync(path)) return undefined;
    try {
      PidLock.acquire(resource, resource, dir).release();
      return path;
    } catch {
      return undefined;
    }
  }

  /** Remove the file and drop the lock (also dropped by the kernel if the process dies). */
  release(): void {
    if (this.fd === undefined) return;
    try {
      if (sameFile(this.fd, this.path)) unlinkSync(this.path);
    } finally {
      closeSync(this.fd);
      this.fd = undefined;
    }
  }
}

function sameFile(fd: number, path: string): boolean {
  try {
    const a = fstatSync(fd);
    const b = statSync(path);
    return a.ino === b.ino && a.dev === b.dev;
  } catch {
    return false;
  }
}

function readHolder(path: string): number | undefined {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}
