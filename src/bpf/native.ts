/**
 * The compiled addon (native/, built by node-gyp) and the shapes of what it
 * returns. Only src/bpf/ imports this module; everyone else uses the typed
 * wrappers.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeMapInfo {
  name: string;
  id: number;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  perCpu: boolean;
  possibleCpus: number;
}

export interface NativeLookupBatch {
  keys: Buffer;
  values: Buffer;
  count: number;
  token: Buffer;
  done: boolean;
}

/** Single-entry calls on the key and value buffers bound by NativeMap.bindScratch. */
export interface NativeScratchOps {
  /** update(scratch key, scratch value, flags). */
  update(flags: number): void;
  /** Looks the scratch key up into the scratch value; false when absent. */
  lookup(): boolean;
  /** Deletes the scratch key; false when absent. */
  delete(): boolean;
}

export interface NativeMap {
  readonly fd: number;
  info(): NativeMapInfo;
  /** Bind a key and a value buffer (the handle keeps them alive): single-entry calls on them, passing no buffers. */
  bindScratch(key: Buffer, value: Buffer): NativeScratchOps;
  /** Writes the value into `out` (the map's value size); false when absent. */
  lookupInto(key: Buffer, out: Buffer): boolean;
  /** `count` keys back to back: values into `values` (value size each), found[i] 1 or 0; returns how many were found. */
  lookupMany(keys: Buffer, count: number, values: Buffer, found: Buffer): number;
  update(key: Buffer, value: Buffer, flags: number): void;
  delete(key: Buffer): boolean;
  nextKey(key: Buffer | null): Buffer | null;
  updateBatch(keys: Buffer, values: Buffer, count: number, flags: number): number;
  lookupBatch(token: Buffer | null, count: number): NativeLookupBatch;
  deleteBatch(keys: Buffer, count: number): number;
  pin(path: string): void;
  freeze(): void;
  close(): void;
}

export interface NativeTestRunOptions {
  repeat?: number;
  ctx?: Buffer;
  dataSizeOut?: number;
  flags?: number;
  cpu?: number;
  batchSize?: number;
}

export interface NativeTestRunResult {
  retval: number;
  data: Buffer;
  durationNs: number;
  ctx?: Buffer;
}

export interface NativeTcOptions {
  handle?: number;
  priority?: number;
  flags?: number;
}

export interface NativeTcAttachment {
  hookCreated: boolean;
  handle: number;
  priority: number;
  progId: number;
}

export interface NativeProgram {
  readonly fd: number;
  info(): { name: string; id: number; type: number; mapIds: number[] };
  /** bpf_prog_bind_map: the program keeps the map alive and lists it in mapIds. */
  bindMap(mapFd: number): void;
  attachXdp(ifindex: number, flags: number): void;
  attachTc(ifindex: number, point: 'ingress' | 'egress', opts: NativeTcOptions): NativeTcAttachment;
  testRun(data: Buffer, opts: NativeTestRunOptions): NativeTestRunResult;
  pin(path: string): void;
  close(): void;
}

export interface NativeObjectMapInfo {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  internal: boolean;
  pinPath: string | null;
  pinned: boolean;
}

export interface NativeObject {
  setMapMaxEntries(name: string, maxEntries: number): void;
  setMapPinPath(name: string, path: string): void;
  /** bpf_map__reuse_fd before load: use an existing map (libbpf adopts its definition and name). */
  reuseMapFd(name: string, fd: number): void;
  load(): void;
  programs(): { name: string; section: string; type: number }[];
  maps(): NativeObjectMapInfo[];
  program(name: string): NativeProgram;
  map(name: string): NativeMap;
  /** bpf_program__attach: attach by section name (tp_btf/..., fentry/...). */
  attach(name: string): NativeLink;
  close(): void;
}

export interface NativeLinkInfo {
  id: number;
  progId: number;
  /** enum bpf_link_type */
  type: number;
}

export interface NativeLink {
  readonly fd: number;
  info(): NativeLinkInfo;
  pin(path: string): void;
  /** BPF_LINK_UPDATE: swap the program; EINVAL/EOPNOTSUPP for link types that cannot. */
  updateProgram(progFd: number): void;
  close(): void;
}

export interface NativeRoute {
  ifindex: number;
  gateway: Buffer | null;
  prefsrc: Buffer | null;
  /** rtm_type (RTN_*) */
  type: number;
  table: number;
}

export interface NativeNeighbour {
  mac: string | null;
  /** NUD_* bits */
  state: number;
  /** NTF_* bits */
  flags: number;
  /** NDA_FLAGS_EXT: NTF_EXT_* bits (MANAGED, LOCKED, EXT_VALIDATED) */
  flagsExt: number;
}

export interface NativeLinkDetails {
  ifindex: number;
  name: string;
  kind: string | null;
  masterIfindex: number | null;
  linkIfindex: number | null;
  linkNetnsid: number | null;
  mac: string | null;
  mtu: number;
  /** IFF_* bits */
  flags: number;
  /** IF_OPER_* */
  operState: number;
  xdpProgId: number;
  /** XDP_ATTACHED_* */
  xdpAttachMode: number;
}

export interface NativeXdpQuery {
  progId: number;
  drvProgId: number;
  skbProgId: number;
  hwProgId: number;
  attachMode: number;
}

export interface NativeAddon {
  ObjectHandle: new (path: string) => NativeObject;
  openPinnedMap(path: string): NativeMap;
  openMapById(id: number): NativeMap;
  createMap(type: number, name: string, keySize: number, valueSize: number, maxEntries: number, flags: number): NativeMap;
  openPinnedProgram(path: string): NativeProgram;
  openProgramById(id: number): NativeProgram;
  openPinnedLink(path: string): NativeLink;
  detachXdp(ifindex: number, flags: number): void;
  queryXdp(ifindex: number): NativeXdpQuery;
  detachTc(ifindex: number, point: 'ingress' | 'egress', opts: NativeTcOptions): boolean;
  destroyTcHook(ifindex: number): void;
  possibleCpus(): number;
  libbpfVersion(): string;
  /** glibc malloc_trim(0): give free heap pages back to the kernel. */
  trimMemory(): boolean;
  /** An fd holding an exclusive flock(2) on path; throws EWOULDBLOCK if another process holds it. */
  lockFile(path: string): number;
  ifNameToIndex(name: string): number;
  ifHwAddr(name: string): string;
  inNetns<T>(path: string, fn: () => T): T;
  enterNetns(path: string): void;
  /** rtnetlink, in the calling thread's namespace; see src/bpf/netlink.ts. */
  routeGet(family: 4 | 6, address: Buffer): NativeRoute;
  neighGet(ifindex: number, family: 4 | 6, address: Buffer): NativeNeighbour | null;
  neighResolve(ifindex: number, family: 4 | 6, address: Buffer): void;
  linkInfo(link: number | string): NativeLinkDetails;
  /** NETDEV_XDP_ACT_* bits from the netdev generic netlink family (kernel 6.3+). */
  xdpFeatures(ifindex: number): number;
}

/** Repository root, found from this file whether it runs from src/ or dist/src/. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('routeshift: cannot find the repository root (no package.json above src/)');
    dir = up;
  }
  return dir;
}

let cached: NativeAddon | undefined;

export function addon(): NativeAddon {
  if (cached) return cached;
  const path = join(repoRoot(), 'build', 'Release', 'routeshift_native.node');
  if (!existsSync(path)) {
    throw new Error(`routeshift: native addon not built (${path} missing); run \`npm run build\``);
  }
  cached = createRequire(import.meta.url)(path) as NativeAddon;
  return cached;
}

/** An Error raised by the addon carries the errno name in `code`. */
export interface ErrnoError extends Error {
  code: string;
  errno: number;
  log?: string;
  count?: number;
}

export function isErrno(err: unknown, code?: string): err is ErrnoError {
  if (!(err instanceof Error)) return false;
  const c = (err as Partial<ErrnoError>).code;
  return typeof c === 'string' && (code === undefined || c === code);
}
