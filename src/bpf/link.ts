/**
 * A BPF link: an attachment the kernel keeps as an object of its own. It
 * lasts while a handle or a bpffs pin refers to it, so pinning it lets the
 * attachment outlive the process and closing the last reference detaches.
 */
import { addon, type NativeLink, type NativeLinkInfo } from './native.js';
import type { Program } from './program.js';

/** Kernel link types (enum bpf_link_type); tp_btf programs make RAW_TRACEPOINT links. */
export const LinkType = {
  UNSPEC: 0,
  RAW_TRACEPOINT: 1,
  TRACING: 2,
  CGROUP: 3,
  ITER: 4,
  NETNS: 5,
  XDP: 6,
  PERF_EVENT: 7,
  KPROBE_MULTI: 8,
  STRUCT_OPS: 9,
  NETFILTER: 10,
  TCX: 11,
  UPROBE_MULTI: 12,
  NETKIT: 13,
} as const;

export type BpfLinkInfo = NativeLinkInfo;

export class Link implements Disposable {
  readonly id: number;
  readonly type: number;
  #handle: NativeLink;

  constructor(handle: NativeLink) {
    this.#handle = handle;
    const info = handle.info();
    this.id = info.id;
    this.type = info.type;
  }

  /** Open the link pinned at `path` (EINVAL when what is pinned there is not a link). */
  static openPinned(path: string): Link {
    return new Link(addon().openPinnedLink(path));
  }

  get fd(): number {
    return this.#handle.fd;
  }

  /** Id, type and the id of the program it runs now (updateProgram changes it). */
  info(): BpfLinkInfo {
    return this.#handle.info();
  }

  /** Pin in bpffs: the attachment then survives closing every handle, until the pin is removed. */
  pin(path: string): void {
    this.#handle.pin(path);
  }

  /** Replace the link's program atomically; only some link types (XDP, TCX, cgroup...) can. */
  updateProgram(program: Program): void {
    this.#handle.updateProgram(program.fd);
  }

  /** Drop this reference; the attachment ends unless the link is pinned or open elsewhere. */
  close(): void {
    this.#handle.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
