// SPDX-License-Identifier: GPL-2.0
/*
 * An in-kernel dma-buf importer for bench/udmabuf_bench.c, which compares
 * the importer paths of udmabuf and udmabuf_rs. An ioctl on the debugfs
 * file /sys/kernel/debug/dmabuf_import_bench takes the dma-buf of a file
 * descriptor and times, iteration by iteration, one of:
 *
 *  - dma_buf_vmap_unlocked() + dma_buf_vunmap_unlocked();
 *  - dma_buf_map_attachment_unlocked(DMA_BIDIRECTIONAL) +
 *    dma_buf_unmap_attachment_unlocked(), attached once for all iterations;
 *  - dma_buf_attach() + dma_buf_detach().
 *
 * The importing device is a faux device with a 64-bit DMA mask. Each result
 * is checked (outside the timed calls): the vmap must be system memory and
 * readable at both ends of the buffer, the table must map the whole buffer.
 */
#include <linux/debugfs.h>
#include <linux/device/faux.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/iosys-map.h>
#include <linux/ktime.h>
#include <linux/limits.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/scatterlist.h>
#include <linux/sched.h>
#include <linux/sched/signal.h>
#include <linux/uaccess.h>

#include "dmabuf_import_bench.h"

static struct faux_device *importer;
static struct dentry *bench_file;

/* One vmap + vunmap of @buf; adds the time of the two calls to @ns. */
static int bench_vmap(struct dma_buf *buf, u64 *ns)
{
	struct iosys_map map;
	u64 t0, t1, t2;
	int ret;

	t0 = ktime_get_ns();
	ret = dma_buf_vmap_unlocked(buf, &map);
	t1 = ktime_get_ns();
	if (ret)
		return ret;
	if (iosys_map_is_null(&map) || map.is_iomem) {
		ret = -EINVAL;
	} else {
		/* Both ends of the buffer are mapped. */
		(void)READ_ONCE(*(u8 *)map.vaddr);
		(void)READ_ONCE(*((u8 *)map.vaddr + buf->size - 1));
	}
	t2 = ktime_get_ns();
	dma_buf_vunmap_unlocked(buf, &map);
	*ns += t1 - t0 + ktime_get_ns() - t2;
	return ret;
}

/* One map + unmap of @attach; adds the time of the two calls to @ns. */
static int bench_map(struct dma_buf_attachment *attach, u64 *ns)
{
	struct scatterlist *sg;
	struct sg_table *sgt;
	u64 t0, t1, t2;
	size_t len = 0;
	bool whole;
	int i;

	t0 = ktime_get_ns();
	sgt = dma_buf_map_attachment_unlocked(attach, DMA_BIDIRECTIONAL);
	t1 = ktime_get_ns();
	if (IS_ERR(sgt))
		return PTR_ERR(sgt);
	/* A non-empty table that maps the whole buffer. */
	for_each_sgtable_dma_sg(sgt, sg, i)
		len += sg_dma_len(sg);
	whole = sgt->nents && len == attach->dmabuf->size;
	t2 = ktime_get_ns();
	dma_buf_unmap_attachment_unlocked(attach, sgt, DMA_BIDIRECTIONAL);
	*ns += t1 - t0 + ktime_get_ns() - t2;
	return whole ? 0 : -EIO;
}

/* One attach + detach of @buf to the importer; adds their time to @ns. */
static int bench_attach(struct dma_buf *buf, u64 *ns)
{
	struct dma_buf_attachment *attach;
	u64 t0;

	t0 = ktime_get_ns();
	attach = dma_buf_attach(buf, &importer->dev);
	if (IS_ERR(attach))
		return PTR_ERR(attach);
	dma_buf_detach(buf, attach);
	*ns += ktime_get_ns() - t0;
	return 0;
}

static int bench_run(struct dma_buf *buf, struct dmabuf_import_bench_run *run)
{
	struct dma_buf_attachment *attach = NULL;
	u32 i;
	int ret = 0;

	if (run->op == DMABUF_IMPORT_BENCH_MAP) {
		attach = dma_buf_attach(buf, &importer->dev);
		if (IS_ERR(attach))
			return PTR_ERR(attach);
	}

	run->total_ns = 0;
	run->min_ns = U64_MAX;
	for (i = 0; i < run->iters; i++) {
		u64 ns = 0;

		switch (run->op) {
		case DMABUF_IMPORT_BENCH_VMAP:
			ret = bench_vmap(buf, &ns);
			break;
		case DMABUF_IMPORT_BENCH_MAP:
			ret = bench_map(attach, &ns);
			break;
		case DMABUF_IMPORT_BENCH_ATTACH:
			ret = bench_attach(buf, &ns);
			break;
		default:
			ret = -EINVAL;
			break;
		}
		if (ret)
			break;
		run->total_ns += ns;
		run->min_ns = min(run->min_ns, ns);
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
	}

	if (attach)
		dma_buf_detach(buf, attach);
	return ret;
}

static long bench_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct dmabuf_import_bench_run __user *uarg = (void __user *)arg;
	struct dmabuf_import_bench_run run;
	struct dma_buf *buf;
	int ret;

	if (cmd != DMABUF_IMPORT_BENCH_RUN)
		return -ENOTTY;
	if (copy_from_user(&run, uarg, sizeof(run)))
		return -EFAULT;
	if (run.op >= DMABUF_IMPORT_BENCH_NR_OPS || run.pad || !run.iters ||
	    run.iters > DMABUF_IMPORT_BENCH_MAX_ITERS)
		return -EINVAL;

	buf = dma_buf_get(run.fd);
	if (IS_ERR(buf))
		return PTR_ERR(buf);
	ret = bench_run(buf, &run);
	dma_buf_put(buf);
	if (ret)
		return ret;

	if (copy_to_user(uarg, &run, sizeof(run)))
		return -EFAULT;
	return 0;
}

static const struct file_operations bench_fops = {
	.owner = THIS_MODULE,
	.open = nonseekable_open,
	.unlocked_ioctl = bench_ioctl,
};

static int __init dmabuf_import_bench_init(void)
{
	int ret;

	importer = faux_device_create(DMABUF_IMPORT_BENCH_NAME, NULL, NULL);
	if (!importer)
		return -ENODEV;
	ret = dma_coerce_mask_and_coherent(&importer->dev, DMA_BIT_MASK(64));
	if (ret)
		goto err_destroy;

	bench_file = debugfs_create_file(DMABUF_IMPORT_BENCH_NAME, 0600, NULL,
					 NULL, &bench_fops);
	if (IS_ERR(bench_file)) {
		ret = PTR_ERR(bench_file);
		goto err_destroy;
	}
	return 0;

err_destroy:
	faux_device_destroy(importer);
	return ret;
}
module_init(dmabuf_import_bench_init);

static void __exit dmabuf_import_bench_exit(void)
{
	/* Waits for the ioctls in progress. */
	debugfs_remove(bench_file);
	faux_device_destroy(importer);
}
module_exit(dmabuf_import_bench_exit);

MODULE_DESCRIPTION("Times an in-kernel importer's calls on a dma-buf");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS("DMA_BUF");
