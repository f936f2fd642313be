// SPDX-License-Identifier: GPL-2.0
/*
 * udmabuf_rs against udmabuf, in one boot: create + close latency (single
 * create and a 16-item list) and first-touch mmap read throughput, for
 * 4 KiB shmem and 2 MiB hugetlb memfds, small and large buffers (the read
 * includes mmap(), since drivers map at mmap or at fault time). The arms
 * alternate within each round so that drift hits both alike; each prints
 * its medians and the time ratio rs/c (below 1.0: udmabuf_rs is faster;
 * for the mmap read, the inverse ratio of the throughputs).
 *
 * With dmabuf_import_bench.ko loaded (bench/dmabuf_importer), also an
 * in-kernel importer's calls on a buffer of each arm, made once per memory
 * kind and size: vmap + vunmap, map + unmap of an attachment (to a device
 * with a 64-bit DMA mask, attached once) and attach + detach. A sample is
 * the mean of ITERS timed calls in the kernel, in microseconds per call.
 *
 * A third arm, c-aa, runs the C device again under another name: an A/A
 * control, whose ratio to c shows the noise of the measure.
 *
 * Usage: udmabuf_bench [--raw] [--split N] [--only ARM] [C device] [Rust device]
 * --raw prints every sample instead ("UDMABUF memory operation arm value"),
 * for `cargo xtask bench`; --split N runs 1/N of the repetitions (one round
 * of N); --only ARM (c, rs or c-aa) runs that arm alone, raw, for a profile.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/udmabuf.h>

#include "dmabuf_importer/dmabuf_import_bench.h"

#define LIST_ITEMS 16
/* vmap + vunmap calls per importer sample, over the other ops' (see sample()). */
#define VMAP_ITERS_SCALE 8
#define NR_ARMS 3

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int memfd_of(size_t size, int huge)
{
	int fd = memfd_create("bench", MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));

	if (fd < 0 || ftruncate(fd, size) || fallocate(fd, 0, 0, size) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK)) {
		perror("memfd");
		exit(1);
	}
	return fd;
}

static int create(int dev, int memfd, size_t size, int list)
{
	struct {
		struct udmabuf_create_list head;
		struct udmabuf_create_item items[LIST_ITEMS];
	} l = { .head = { .flags = UDMABUF_FLAGS_CLOEXEC, .count = LIST_ITEMS } };
	struct udmabuf_create c = {
		.memfd = memfd, .flags = UDMABUF_FLAGS_CLOEXEC, .size = size,
	};
	int buf, i;

	if (list) {
		for (i = 0; i < LIST_ITEMS; i++) {
			l.items[i].memfd = memfd;
			l.items[i].offset = i * (size / LIST_ITEMS);
			l.items[i].size = size / LIST_ITEMS;
		}
		buf = ioctl(dev, UDMABUF_CREATE_LIST, &l);
	} else {
		buf = ioctl(dev, UDMABUF_CREATE, &c);
	}
	if (buf < 0) {
		fprintf(stderr, "create: %s\n", strerror(errno));
		exit(1);
	}
	return buf;
}

enum what { CREATE, CREATE_LIST, MMAP_READ, VMAP, MAP, ATTACH, NR_WHATS };

static const char *const whats[NR_WHATS] = {
	"create+close", "list16+close", "mmap-read",
	"vmap+vunmap", "map+unmap", "attach+detach",
};

/* The importer's ops, for the whats from VMAP on. */
static const __u32 import_ops[NR_WHATS] = {
	[VMAP] = DMABUF_IMPORT_BENCH_VMAP,
	[MAP] = DMABUF_IMPORT_BENCH_MAP,
	[ATTACH] = DMABUF_IMPORT_BENCH_ATTACH,
};

/* The importer's debugfs file, or -1 if dmabuf_import_bench.ko is not loaded. */
static int importer = -1;

/*
 * One sample: microseconds for create + close, MB/s for the mmap read, or
 * microseconds per call, the mean of `iters`, for the importer's calls on
 * `held` (a buffer of `dev` made once). Exits on errors, except for the
 * importer's, which return -1.
 */
static double sample(enum what what, int dev, int memfd, size_t size, int held,
		     unsigned int iters)
{
	volatile uint64_t sink = 0;
	double t0, t1;
	uint64_t *p;
	int buf;

	if (what >= VMAP) {
		struct dmabuf_import_bench_run run = {
			.fd = held, .op = import_ops[what], .iters = iters,
		};

		/*
		 * vm_unmap_ram() frees lazily: once enough is unmapped, one
		 * call purges it all. 32 vmaps of 2 MiB span one purge or two,
		 * depending on where the last one was, which moved udmabuf's
		 * A/A control by up to 2.8% from round to round under icount;
		 * 8 times the calls average over many purges. The 256 MiB
		 * buffers get the same, for one rule (32 calls of 5.7 ms).
		 */
		if (what == VMAP) {
			iters *= VMAP_ITERS_SCALE;
			run.iters = iters;
		}

		if (ioctl(importer, DMABUF_IMPORT_BENCH_RUN, &run)) {
			fprintf(stderr, "%s: %s\n", whats[what], strerror(errno));
			return -1;
		}
		return run.total_ns / 1e3 / iters;
	}
	if (what != MMAP_READ) {
		t0 = now_us();
		buf = create(dev, memfd, size, what == CREATE_LIST);
		close(buf);
		return now_us() - t0;
	}
	buf = create(dev, memfd, size, 0);
	/* mmap() included: a driver may set up the page tables there or on fault. */
	t0 = now_us();
	p = mmap(NULL, size, PROT_READ, MAP_SHARED, buf, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	for (size_t i = 0; i < size / sizeof(*p); i += 8)
		sink += p[i];
	t1 = now_us();
	munmap(p, size);
	close(buf);
	return size / (t1 - t0); /* bytes per us = MB/s */
}

static void usage(void)
{
	fprintf(stderr, "usage: udmabuf_bench [--raw] [--split N] [--only c|rs|c-aa] [C device] [Rust device]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	static const char *arms[NR_ARMS] = { "c", "rs", "c-aa" };
	const char *names[2] = { "/dev/udmabuf", "/dev/udmabuf_rs" };
	/*
	 * iters: calls per importer sample (VMAP_ITERS_SCALE times more for
	 * vmap, see sample()). fresh: a new memfd, and new buffers
	 * for the importer, every repetition, so that a round's samples see
	 * many placements of the pages (which decide how many entries a table
	 * has) rather than one; the arms of a repetition share them.
	 */
	static const struct {
		const char *name; int huge; size_t size; int reps; unsigned int iters; int fresh;
	} cfgs[] = {
		{ "4k-2M",    0, 2 << 20,   15, 32, 1 },
		{ "4k-256M",  0, 256 << 20, 15, 4,  0 },
		{ "2M-2M",    1, 2 << 20,   15, 32, 1 },
		{ "2M-256M",  1, 256 << 20, 15, 4,  0 },
	};
	int raw = 0, split = 1, only = -1, ndev = 0;
	int devs[NR_ARMS];

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--raw")) {
			raw = 1;
		} else if (!strcmp(argv[i], "--split") && i + 1 < argc) {
			split = atoi(argv[++i]);
			if (split < 1)
				usage();
		} else if (!strcmp(argv[i], "--only") && i + 1 < argc) {
			i++;
			for (only = 0; only < NR_ARMS && strcmp(argv[i], arms[only]); only++)
				;
			if (only == NR_ARMS)
				usage();
			raw = 1;
		} else if (argv[i][0] == '-' || ndev == 2) {
			usage();
		} else {
			names[ndev++] = argv[i];
		}
	}
	for (int a = 0; a < NR_ARMS; a++) {
		/* c-aa opens the C device again. */
		const char *name = names[a == 2 ? 0 : a];

		devs[a] = open(name, O_RDWR);
		if (devs[a] < 0) {
			fprintf(stderr, "%s: %s\n", name, strerror(errno));
			return 1;
		}
	}
	importer = open(DMABUF_IMPORT_BENCH_PATH, O_RDWR);
	if (importer < 0)
		fprintf(stderr, "%s: %s: skipping %s, %s and %s (load dmabuf_import_bench.ko)\n",
			DMABUF_IMPORT_BENCH_PATH, strerror(errno), whats[VMAP], whats[MAP],
			whats[ATTACH]);
	if (!raw)
		printf("%-8s %-13s %12s %12s %7s %7s  (%s vs %s; us, or MB/s for mmap-read)\n",
		       "memory", "operation", "c", "rs", "rs/c", "A/A", names[0], names[1]);
	for (size_t c = 0; c < sizeof(cfgs) / sizeof(cfgs[0]); c++) {
		int memfd = memfd_of(cfgs[c].size, cfgs[c].huge);
		int reps = (cfgs[c].reps + split - 1) / split;
		int bufs[NR_ARMS] = { -1, -1, -1 };

		for (int w = 0; w < NR_WHATS; w++) {
			double v[NR_ARMS][64];
			int arm, ok = 1;

			if (w >= VMAP && importer < 0)
				break;
			/* The importer's calls, last, all use one buffer per arm. */
			if (w == VMAP)
				for (int a = 0; a < NR_ARMS; a++)
					bufs[a] = create(devs[a], memfd, cfgs[c].size, 0);
			/* One warm-up per arm, then alternate, the order reversed every other time. */
			for (arm = 0; arm < NR_ARMS; arm++)
				if ((only < 0 || arm == only) &&
				    sample(w, devs[arm], memfd, cfgs[c].size, bufs[arm],
					   cfgs[c].iters) < 0) {
					ok = 0;
					break;
				}
			for (int r = 0; r < reps && ok; r++) {
				if (cfgs[c].fresh && r > 0) {
					close(memfd);
					memfd = memfd_of(cfgs[c].size, cfgs[c].huge);
					for (int a = 0; a < NR_ARMS && ok; a++) {
						if (bufs[a] >= 0) {
							close(bufs[a]);
							bufs[a] = create(devs[a], memfd, cfgs[c].size, 0);
						}
						/*
						 * A warm-up per arm, as for the first memfd: the
						 * first pin moves the pages out of ZONE_MOVABLE,
						 * which no arm's sample is to pay for.
						 */
						ok = sample(w, devs[a], memfd, cfgs[c].size, bufs[a], 1) >= 0;
					}
				}
				for (int a = 0; a < NR_ARMS && ok; a++) {
					arm = (r & 1) ? NR_ARMS - 1 - a : a;
					if (only >= 0 && arm != only)
						continue;
					v[arm][r] = sample(w, devs[arm], memfd, cfgs[c].size,
							   bufs[arm], cfgs[c].iters);
					ok = v[arm][r] >= 0;
					if (ok && raw)
						printf("UDMABUF %s %s %s %.3f\n", cfgs[c].name,
						       whats[w], arms[arm], v[arm][r]);
				}
			}
			if (!ok) {
				/* An importer's call failed: measure the rest without. */
				fprintf(stderr, "%s %s failed on %s: skipping the importer from here on\n",
					cfgs[c].name, whats[w], arms[arm]);
				close(importer);
				importer = -1;
				break;
			}
			if (raw)
				continue;
			double mc = median(v[0], reps), mr = median(v[1], reps);
			double ma = median(v[2], reps);

			printf("%-8s %-13s %12.1f %12.1f %7.3f %7.3f\n", cfgs[c].name, whats[w],
			       mc, mr, w == MMAP_READ ? mc / mr : mr / mc,
			       w == MMAP_READ ? mc / ma : ma / mc);
			fflush(stdout);
		}
		for (int a = 0; a < NR_ARMS; a++)
			if (bufs[a] >= 0)
				close(bufs[a]);
		close(memfd);
	}
	return 0;
}
