// SPDX-License-Identifier: Apache-2.0
/*
 * The traffic generator of the netns pps benchmark (bench/netns-pps.ts):
 * runs an XDP program (by id; bench_gen of bench/pps.c) with
 * BPF_PROG_TEST_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on interface IFNAME of
 * the network namespace it runs in (`ip netns exec NS xdpgen …`), so every
 * XDP_TX really leaves that interface. One call, REPEAT frames.
 *
 *   xdpgen PROG_ID IFNAME REPEAT FRAME_HEX
 *
 * Prints {"retval":R,"wallNs":W,"durationNs":D,"cpuNs":C}: W is
 * CLOCK_MONOTONIC around the call, D the kernel's mean per repetition, C
 * this process's CPU time over the call (CLOCK_PROCESS_CPUTIME_ID: with the
 * softirq work the call ran inline, as the kernel charges it to the task
 * unless CONFIG_IRQ_TIME_ACCOUNTING; not the time other tasks had the CPU).
 *
 * (A separate process, and not the addon's Program.testRun, because the
 * addon always passes ctx_out when ctx_in is given, and the kernel refuses
 * ctx_out with live frames: EINVAL.)
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef BPF_F_TEST_XDP_LIVE_FRAMES
#define BPF_F_TEST_XDP_LIVE_FRAMES (1U << 1)
#endif

static long long now_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned char frame[1514];
	struct xdp_md md = {0};
	size_t len;
	int fd, err;
	long long t0, t1, c0, c1;

	if (argc != 5) {
		fprintf(stderr, "usage: xdpgen PROG_ID IFNAME REPEAT FRAME_HEX\n");
		return 2;
	}
	len = strlen(argv[4]) / 2;
	if (len < 14 || len > sizeof(frame)) {
		fprintf(stderr, "xdpgen: frame must be 14..1514 bytes\n");
		return 2;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned int b;

		if (sscanf(argv[4] + 2 * i, "%2x", &b) != 1) {
			fprintf(stderr, "xdpgen: bad FRAME_HEX\n");
			return 2;
		}
		frame[i] = b;
	}
	md.ingress_ifindex = if_nametoindex(argv[2]);
	if (!md.ingress_ifindex) {
		fprintf(stderr, "xdpgen: no interface %s\n", argv[2]);
		return 1;
	}
	md.data_end = len;
	fd = bpf_prog_get_fd_by_id(atoi(argv[1]));
	if (fd < 0) {
		fprintf(stderr, "xdpgen: program id %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame, .data_size_in = len, .ctx_in = &md,
		    .ctx_size_in = sizeof(md), .repeat = atoi(argv[3]), .flags = BPF_F_TEST_XDP_LIVE_FRAMES);
	c0 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	t0 = now_ns(CLOCK_MONOTONIC);
	err = bpf_prog_test_run_opts(fd, &opts);
	t1 = now_ns(CLOCK_MONOTONIC);
	c1 = now_ns(CLOCK_PROCESS_CPUTIME_ID);
	if (err) {
		fprintf(stderr, "xdpgen: test run: %s\n", strerror(errno));
		return 1;
	}
	printf("{\"retval\":%u,\"wallNs\":%lld,\"durationNs\":%u,\"cpuNs\":%lld}\n", opts.retval, t1 - t0,
	       opts.duration, c1 - c0);
	return 0;
}
