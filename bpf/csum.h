/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Internet checksum helpers. Words are summed as loaded (host order); the
 * one's-complement sum is byte-order independent as long as the result is
 * stored back the same way, so nothing here swaps bytes.
 */
#ifndef RS_CSUM_H
#define RS_CSUM_H

#include "helpers.h"

/* Largest region rs_csum_to_end() sums, in 16-bit words: an ICMPv6
 * packet-too-big body (8 + 1232 bytes) plus slack. */
#define RS_CSUM_MAX_WORDS 640

static __always_inline __u16 rs_csum_fold(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* Sum of n 16-bit words at p (p on the stack or bounds-checked). */
static __always_inline __u64 rs_csum_words(const void *p, const int n, __u64 sum)
{
	const __u16 *w = p;

#pragma unroll
	for (int i = 0; i < n; i++)
		sum += w[i];
	return sum;
}

/* Sum of the packet bytes from p to data_end (an odd last byte is padded
 * with zero), bounded by RS_CSUM_MAX_WORDS. */
static __always_inline __u64 rs_csum_to_end(void *p, void *data_end, __u64 sum)
{
	for (int i = 0; i < RS_CSUM_MAX_WORDS; i++) {
		if (p + 2 > data_end)
			break;
		sum += *(__u16 *)p;
		p += 2;
	}
	if (p + 1 <= data_end)
		sum += *(__u8 *)p; /* [b, 0] read in host order on little endian */
	return sum;
}

/* Decrement an IPv4 TTL and patch the header checksum (RFC 1624): the
 * TTL is the high byte of the word it shares with the protocol. */
static __always_inline void rs_ip4_ttl_dec(__u8 *ttl, __sum16 *check)
{
	__u32 c = (__u32)*check + (__u32)bpf_htons(0x0100);

	*ttl -= 1;
	*check = (__sum16)(c + (c >= 0xffff));
}

#endif /* RS_CSUM_H */
