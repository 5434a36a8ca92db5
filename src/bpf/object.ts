/**
 * A BPF ELF object (built from bpf/*.c): open, size and pin its maps, load
 * (the verifier's log comes with any failure), then take programs and maps.
 */
import { existsSync } from 'node:fs';
import type { Codec } from './codec.js';
import { Link } from './link.js';
import { BpfMap } from './map.js';
import { addon, isErrno, type NativeObject, type NativeObjectMapInfo } from './native.js';
import { Program } from './program.js';

/** Kernel object names hold 15 characters (BPF_OBJ_NAME_LEN - 1). */
const KERNEL_NAME_LEN = 15;

export interface ObjectOptions {
  /** Override max_entries per map name before load. */
  maxEntries?: Record<string, number>;
  /**
   * Pin path per map name: at load, a map already pinned there is reused
   * (its entries kept), otherwise the new map is pinned there.
   */
  pinPaths?: Record<string, string>;
  /**
   * An existing map per map name, used instead of creating one at load (so
   * two objects share it, or a restarted agent takes back maps it found
   * by id). It must have the type, key and value sizes and name the object
   * declares, and the size `maxEntries` asks for if it names the map
   * (otherwise the reused map's own size stands). Checked in open().
   */
  reuseMaps?: Record<string, BpfMap<unknown, unknown>>;
}

function einval(message: string): Error {
  return Object.assign(new Error(`${message}: EINVAL (Invalid argument)`), { code: 'EINVAL', errno: 22 });
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
      for (const [name, map] of Object.entries(opts.reuseMaps ?? {})) obj.#reuse(name, map, opts.maxEntries?.[name]);
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

  /** A map with raw byte keys and values of its sizes (per-CPU values: all CPUs' bytes). */
  rawMap(name: string): BpfMap<Buffer, Buffer> {
    return BpfMap.raw(this.#handle.map(name));
  }

  /** Attach a loaded program where its section says (e.g. tp_btf/xdp_redirect_err); closing the Link detaches. */
  attach(programName: string): Link {
    return new Link(this.#handle.attach(programName));
  }

  /** A typed handle on one map; it stays valid after the object is closed. */
  map<K, V>(name: string, key: Codec<K>, value: Codec<V>): BpfMap<K, V> {
    return new BpfMap(this.#handle.map(name), key, value);
  }

  close(): void {
    this.#handle.close();
  }

  // libbpf's bpf_map__reuse_fd compares nothing: it takes the reused map's
  // type, sizes and name as the object's. Compare here, so a mismatch is an
  // error naming both maps and not a verifier failure or a renamed map.
  #reuse(name: string, map: BpfMap<unknown, unknown>, maxEntries: number | undefined): void {
    const want = this.#handle.maps().find((m) => m.name === name);
    const what = `reuse map ${map.name} (id ${map.info.id}) as ${name} in ${this.path}`;
    if (!want) throw Object.assign(new Error(`${what}: ENOENT (the object has no map ${name})`), { code: 'ENOENT', errno: 2 });
    const got = map.info;
    const diffs: string[] = [];
    if (got.type !== want.type) diffs.push(`type ${got.type}, expected ${want.type}`);
    if (got.keySize !== want.keySize) diffs.push(`key ${got.keySize} bytes, expected ${want.keySize}`);
    if (got.valueSize !== want.valueSize) diffs.push(`value ${got.valueSize} bytes, expected ${want.valueSize}`);
    if (got.name !== name.slice(0, KERNEL_NAME_LEN)) diffs.push(`name ${got.name}, expected ${name}`);
    if (maxEntries !== undefined && got.maxEntries !== maxEntries) {
      diffs.push(`${got.maxEntries} entries, maxEntries asks for ${maxEntries}`);
    }
    if (diffs.length) throw einval(`${what}: ${diffs.join('; ')}`);
    this.#handle.reuseMapFd(name, map.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
