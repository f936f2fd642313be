/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The interface of dmabuf_import_bench.ko, shared with its user,
 * bench/udmabuf_bench.c: an ioctl on a debugfs file that times an
 * importer's operation on the dma-buf of a file descriptor.
 */
#ifndef _DMABUF_IMPORT_BENCH_H
#define _DMABUF_IMPORT_BENCH_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define DMABUF_IMPORT_BENCH_NAME "dmabuf_import_bench"
#define DMABUF_IMPORT_BENCH_PATH "/sys/kernel/debug/" DMABUF_IMPORT_BENCH_NAME

/* What one iteration does on the dma-buf. */
enum dmabuf_import_bench_op {
	/* dma_buf_vmap_unlocked() + dma_buf_vunmap_unlocked(). */
	DMABUF_IMPORT_BENCH_VMAP,
	/*
	 * dma_buf_map_attachment_unlocked(DMA_BIDIRECTIONAL) +
	 * dma_buf_unmap_attachment_unlocked(), attached once for all
	 * iterations.
	 */
	DMABUF_IMPORT_BENCH_MAP,
	/* dma_buf_attach() + dma_buf_detach(). */
	DMABUF_IMPORT_BENCH_ATTACH,
	DMABUF_IMPORT_BENCH_NR_OPS,
};

/**
 * struct dmabuf_import_bench_run - one run of DMABUF_IMPORT_BENCH_RUN
 * @fd: the dma-buf
 * @op: an &enum dmabuf_import_bench_op
 * @iters: iterations, each timed on its own (1 to 1000000)
 * @pad: must be 0
 * @total_ns: out: time of all iterations, in nanoseconds
 * @min_ns: out: time of the fastest iteration, in nanoseconds
 *
 * Only the importer calls are timed, not the checks of their results.
 */
struct dmabuf_import_bench_run {
	__s32 fd;
	__u32 op;
	__u32 iters;
	__u32 pad;
	__u64 total_ns;
	__u64 min_ns;
};

#define DMABUF_IMPORT_BENCH_MAX_ITERS 1000000
#define DMABUF_IMPORT_BENCH_RUN _IOWR('b', 1, struct dmabuf_import_bench_run)

#endif /* _DMABUF_IMPORT_BENCH_H */
