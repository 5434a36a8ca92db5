/**
 * bpf/watch.o, the watcher: tp_btf programs on the xdp_redirect_err and
 * xdp_exception tracepoints that count the frames rs_uplink sent on but the
 * kernel failed to transmit (RS_DROP_XMIT_FAILED), taking them back from
 * the app counters. Loaded with rs_uplink's own counter maps, told the id of
 * the rs_uplink program to watch, and attached by links pinned in the pin
 * directory, so it keeps counting while the agent restarts.
 */
import { existsSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { BpfObject, u32, type BpfMap, type Link } from '../bpf/index.js';
import { repoRoot } from '../bpf/native.js';
import { WATCH_PROGRAMS, WATCH_SHARED_MAPS, watchConfigCodec } from './structs.js';

export function watchObjectPath(): string {
  return join(repoRoot(), 'bpf', 'watch.o');
}

/** Pin path of one watcher program's link. */
function linkPin(pinDir: string, program: string): string {
  return join(pinDir, `link_${program}`);
}

export class Watcher {
  private constructor(private readonly links: Link[]) {}

  /**
   * Load the watcher over `uplink`'s counter maps, point it at the rs_uplink
   * program `uplinkProgId`, attach it, and pin its links in place of the
   * previous agent's (which watched that agent's program).
   */
  static start(uplink: BpfObject, uplinkProgId: number, pinDir: string, objectPath = watchObjectPath()): Watcher {
    const shared: BpfMap<Buffer, Buffer>[] = WATCH_SHARED_MAPS.map((name) => uplink.rawMap(name));
    const links: Link[] = [];
    try {
      using obj = BpfObject.load(objectPath, { reuseMaps: Object.fromEntries(WATCH_SHARED_MAPS.map((n, i) => [n, shared[i]!])) });
      using cfg = obj.map('rs_watch_config', u32, watchConfigCodec);
      cfg.update(0, uplinkProgId);
      for (const program of Object.values(WATCH_PROGRAMS)) {
        const link = obj.attach(program);
        links.push(link);
        const pin = linkPin(pinDir, program);
        if (existsSync(pin)) unlinkSync(pin); // the previous agent's link goes with its last pin
        link.pin(pin);
      }
      return new Watcher(links);
    } catch (err) {
      for (const l of links) l.close();
      throw err;
    } finally {
      for (const m of shared) m.close();
    }
  }

  close(): void {
    for (const l of this.links) l.close(); // pinned: the links stay attached
  }
}
