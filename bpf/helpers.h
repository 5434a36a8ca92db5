/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * BPF-side basics, included first by every BPF header. The uapi
 * <linux/stddef.h> defines __always_inline as a plain inline hint, and
 * libbpf's bpf_helpers.h then keeps that definition; helpers here must
 * really be inlined (packet pointers and verifier bounds stay in one
 * function), so force it.
 */
#ifndef RS_HELPERS_H
#define RS_HELPERS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#undef __always_inline
#define __always_inline inline __attribute__((always_inline))

/* One round of a multiplicative hash (the flow hash and the next-hop slot). */
static __always_inline __u32 rs_mix(__u32 h, __u32 v)
{
	h ^= v;
	h *= 0x9e3779b1;
	return h ^ (h >> 15);
}

#endif /* RS_HELPERS_H */
