// SPDX-License-Identifier: Apache-2.0
/*
 * The C baseline of the map update benchmarks (bench/map-update.ts):
 * the same updates the TypeScript side makes, through libbpf, on the same
 * pinned map, timed with CLOCK_MONOTONIC around the update loop only.
 *
 *   update_c single PIN N NKEYS VALUE_HEX   N bpf_map_update_elem calls, key i % NKEYS
 *   update_c batch  PIN N BATCH VALUE_HEX   N entries (keys 0..N-1) in bpf_map_update_batch calls of BATCH
 *
 * Keys are rs_app_key for IPv4 10.64.0.0 + i (family 4, any protocol, port
 * 0: the bytes bench/xdp.ts refKey builds). Prints one JSON line:
 *   {"mode":"single","n":N,"ns":TOTAL_NS,"nsPerOp":X}
 */
#include <bpf/bpf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KEY_SIZE 20

static void make_key(unsigned char *k, unsigned int i)
{
	unsigned int a = (10u << 24) | (64u << 16) | i;

	memset(k, 0, KEY_SIZE);
	k[0] = 4;
	k[14] = 0xff;
	k[15] = 0xff;
	k[16] = a >> 24;
	k[17] = a >> 16;
	k[18] = a >> 8;
	k[19] = a;
}

static int parse_hex(const char *hex, unsigned char *out, size_t max)
{
	size_t n = strlen(hex);

	if (n % 2 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned int b;

		if (sscanf(hex + 2 * i, "%2x", &b) != 1)
			return -1;
		out[i] = b;
	}
	return (int)(n / 2);
}

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	unsigned char value[256];
	int fd, vlen;
	long n, arg;
	long long t0, t1;

	if (argc != 6 || (strcmp(argv[1], "single") && strcmp(argv[1], "batch"))) {
		fprintf(stderr, "usage: update_c single|batch PIN N NKEYS|BATCH VALUE_HEX\n");
		return 2;
	}
	n = atol(argv[3]);
	arg = atol(argv[4]);
	vlen = parse_hex(argv[5], value, sizeof(value));
	if (n <= 0 || arg <= 0 || vlen <= 0) {
		fprintf(stderr, "update_c: bad N, NKEYS/BATCH or VALUE_HEX\n");
		return 2;
	}
	fd = bpf_obj_get(argv[2]);
	if (fd < 0) {
		fprintf(stderr, "update_c: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	if (!strcmp(argv[1], "single")) {
		unsigned char *keys = malloc((size_t)arg * KEY_SIZE);

		for (long i = 0; i < arg; i++)
			make_key(keys + i * KEY_SIZE, (unsigned int)i);
		t0 = now_ns();
		for (long i = 0; i < n; i++) {
			if (bpf_map_update_elem(fd, keys + (i % arg) * KEY_SIZE, value, BPF_ANY)) {
				fprintf(stderr, "update_c: update: %s\n", strerror(errno));
				return 1;
			}
		}
		t1 = now_ns();
		free(keys);
	} else {
		/* keys and values laid out as the TypeScript side does, built before timing */
		unsigned char *keys = malloc((size_t)n * KEY_SIZE);
		unsigned char *values = malloc((size_t)n * vlen);

		for (long i = 0; i < n; i++) {
			make_key(keys + i * KEY_SIZE, (unsigned int)i);
			memcpy(values + i * vlen, value, vlen);
		}
		LIBBPF_OPTS(bpf_map_batch_opts, opts);
		t0 = now_ns();
		for (long i = 0; i < n; i += arg) {
			__u32 count = (__u32)(n - i < arg ? n - i : arg);

			if (bpf_map_update_batch(fd, keys + i * KEY_SIZE, values + i * vlen, &count, &opts)) {
				fprintf(stderr, "update_c: update_batch: %s\n", strerror(errno));
				return 1;
			}
		}
		t1 = now_ns();
		free(keys);
		free(values);
	}
	printf("{\"mode\":\"%s\",\"n\":%ld,\"ns\":%lld,\"nsPerOp\":%.3f}\n", argv[1], n, t1 - t0, (double)(t1 - t0) / n);
	return 0;
}
