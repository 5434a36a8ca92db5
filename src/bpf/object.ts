/**
 * A BPF ELF object (built from bpf/*.c): open, size and pin its maps, load
 * (the verifier's log comes with any failure), then take programs and maps.
 */
import { existsSync } from 'node:fs';
import type { Codec } from './codec.js';
import { BpfMap } from './map.js';
import { addon, isErrno, type NativeObject, type NativeObjectMapInfo } from './native.js';
import { Program } from './program.js';

export interface ObjectOptions {
  /** Override max_entries per map name before load. */
  maxEntries?: Record<string, number>;
  /**
   * Pin path per map name: at load, a map already pinned there is reused
   * (its entries kept), otherwise the new map is pinned there.
   */
  pinPaths?: Record<string, string>;
}

export class BpfObject implements Disposable {
  readonly path: string;
  #handle: NativeObject;
  #loaded = false;

  private constructor(path: string, handle: NativeObject) {
    this.path = path;
    this.#handle = handle;
  }

  /** Open and configure an object without loading it. */
  static open(path: string, opts: ObjectOptions = {}): BpfObject {
    if (!existsSync(path)) {
      const err = new Error(`open BPF object ${path}: ENOENT (no such file; run \`npm run build:bpf\`?)`);
      throw Object.assign(err, { code: 'ENOENT', errno: 2 });
    }
    const obj = new BpfObject(path, new (addon().ObjectHandle)(path));
    try {
      for (const [name, n] of Object.entries(opts.maxEntries ?? {})) obj.#handle.setMapMaxEntries(name, n);
      for (const [name, p] of Object.entries(opts.pinPaths ?? {})) obj.#handle.setMapPinPath(name, p);
    } catch (err) {
      obj.close();
      throw err;
    }
    return obj;
  }

  /** Open, configure and load in one step. */
  static load(path: string, opts: ObjectOptions = {}): BpfObject {
    const obj = BpfObject.open(path, opts);
    try {
      obj.load();
    } catch (err) {
      obj.close();
      throw err;
    }
    return obj;
  }

  load(): void {
    try {
      this.#handle.load();
    } catch (err) {
      if (isErrno(err, 'EACCES') || isErrno(err, 'EINVAL')) {
        if (err.log?.includes('processed')) err.message = `verifier rejected a program: ${err.message}`;
      }
      if (isErrno(err, 'EPERM')) err.message += ' (needs root or CAP_BPF + CAP_NET_ADMIN)';
      throw err;
    }
    this.#loaded = true;
  }

  get loaded(): boolean {
    return this.#loaded;
  }

  programs(): { name: string; section: string; type: number }[] {
    return this.#handle.programs();
  }

  maps(): NativeObjectMapInfo[] {
    return this.#handle.maps();
  }

  /** A handle on one program; it stays valid after the object is closed. */
  program(name: string): Program {
    return new Program(this.#handle.program(name));
  }

  /** A typed handle on one map; it stays valid after the object is closed. */
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(this.#handle.map(name), key, value);
  }

  close(): void {
    this.#handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
