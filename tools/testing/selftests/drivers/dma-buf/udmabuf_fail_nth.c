// SPDX-License-Identifier: GPL-2.0
/*
 * Fault injection into udmabuf, on every udmabuf device: /dev/udmabuf and
 * /dev/udmabuf_rs by default, or the devices named in $UDMABUF_DEVS
 * (separated by spaces). After iommufd_fail_nth.
 *
 * failslab and fail_page_alloc are set to fail any allocation, from order 0
 * and whatever its gfp flags, and every /sys/kernel/debug/fail* is made
 * silent (verbose 0): no fault may print a stack trace. Then, for nth = 1,
 * 2, ..., nth is written to /proc/thread-self/fail-nth, and a buffer is
 * created from a fresh memfd, mapped, read (within DMA_BUF_IOCTL_SYNC) and
 * closed; fail-nth is read back: 0 means that the nth fault site of this
 * thread (failslab, fail_page_alloc, and fail_usercopy if built in) was hit
 * and failed; not 0 means that it all went through fewer sites, and the
 * sweep is complete. A fault may fail a call, with an expected errno and no
 * file descriptor, or be absorbed; either way the data read must be right,
 * and once the buffer is closed (or was never made) no page may stay pinned
 * or charged to RLIMIT_MEMLOCK, and a hugetlb memfd must give its huge page
 * and reservation back once closed. A fault in a page table allocation
 * while the C driver maps a page on access is retried by the page fault
 * handler.
 *
 * The numbers of faults injected per device are printed side by side: they
 * differ, as the drivers allocate differently. The pin counters are
 * system-wide: run the test alone. Needs root, CONFIG_FAULT_INJECTION_DEBUG_FS
 * and CONFIG_FAILSLAB; CONFIG_FAIL_PAGE_ALLOC and
 * CONFIG_FAULT_INJECTION_USERCOPY add sites.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <asm-generic/hugetlb_encode.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>

#include "kselftest_harness.h"

#define DEBUGFS		"/sys/kernel/debug"
#define FAIL_NTH	"/proc/thread-self/fail-nth"
#define HUGE_2M		"/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define HUGE_SIZE	(2UL << 20)
#define MAX_DEVS	4
#define MAX_NTH		100000U
#define MAX_SAVED	64
#define TIMEOUT		600

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB	HUGETLB_FLAG_ENCODE_2MB
#endif

/* Fault injection attributes changed, with their values to restore at exit. */
static struct {
	char path[PATH_MAX];
	char val[32];
} saved[MAX_SAVED];
static int nr_saved;

static int read_str(const char *path, char *buf, size_t size)
{
	ssize_t len;
	int fd;

	fd = open(path, O_RDONLY);
	if (fd < 0)
		return -errno;
	len = read(fd, buf, size - 1);
	close(fd);
	if (len < 0)
		return -errno;
	buf[len] = '\0';
	return 0;
}

static int write_str(const char *path, const char *str)
{
	int fd, ret = 0;

	fd = open(path, O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, str, strlen(str)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static unsigned long read_ulong(const char *path)
{
	char buf[32];

	return read_str(path, buf, sizeof(buf)) ? 0 : strtoul(buf, NULL, 10);
}

/* Sets @path to @val, after saving its value for restore_attrs(). */
static int set_attr(const char *path, const char *val)
{
	char *nl;

	if (nr_saved == MAX_SAVED)
		return -ENOSPC;
	if (read_str(path, saved[nr_saved].val, sizeof(saved[nr_saved].val)))
		return -ENOENT;
	nl = strchr(saved[nr_saved].val, '\n');
	if (nl)
		*nl = '\0';
	snprintf(saved[nr_saved].path, sizeof(saved[nr_saved].path), "%s", path);
	nr_saved++;
	return write_str(path, val);
}

static void restore_attrs(void)
{
	for (; nr_saved > 0; nr_saved--)
		write_str(saved[nr_saved - 1].path, saved[nr_saved - 1].val);
}

/*
 * Lets fail-nth fail any allocation, silently. Returns NULL, or why the test
 * cannot run.
 */
static const char *setup_fault_injection(void)
{
	static const char * const page_alloc[][2] = {
		{ DEBUGFS "/fail_page_alloc/ignore-gfp-wait", "N" },
		{ DEBUGFS "/fail_page_alloc/ignore-gfp-highmem", "N" },
		{ DEBUGFS "/fail_page_alloc/min-order", "0" },
	};
	char path[PATH_MAX];
	struct dirent *d;
	DIR *dir;
	size_t i;

	if (access(FAIL_NTH, R_OK | W_OK))
		return "no " FAIL_NTH " (CONFIG_FAULT_INJECTION, root)";
	if (access(DEBUGFS "/failslab", F_OK))
		return "no " DEBUGFS "/failslab (CONFIG_FAILSLAB, debugfs, root)";

	/* Silence first: "Call Trace:" in dmesg is taken for a crash. */
	dir = opendir(DEBUGFS);
	if (!dir)
		return "cannot list " DEBUGFS;
	while ((d = readdir(dir))) {
		if (strncmp(d->d_name, "fail", 4))
			continue;
		snprintf(path, sizeof(path), DEBUGFS "/%s/verbose", d->d_name);
		if (!access(path, F_OK) && set_attr(path, "0")) {
			closedir(dir);
			return "cannot set the fault injection verbose to 0";
		}
	}
	closedir(dir);

	if (set_attr(DEBUGFS "/failslab/ignore-gfp-wait", "N") ||
	    set_attr(DEBUGFS "/failslab/cache-filter", "N"))
		return "cannot configure failslab";
	for (i = 0; i < ARRAY_SIZE(page_alloc); i++)
		if (!access(page_alloc[i][0], F_OK) &&
		    set_attr(page_alloc[i][0], page_alloc[i][1]))
			return "cannot configure fail_page_alloc";
	return NULL;
}

/* Arms fail-nth: the @nth fault site of this thread from now on fails. */
static int nth_arm(int fd, unsigned int nth)
{
	char buf[16];
	int len = snprintf(buf, sizeof(buf), "%u", nth);

	return pwrite(fd, buf, len, 0) == len ? 0 : -errno;
}

/*
 * Disarms fail-nth. Returns 1 if the armed site was hit, 0 if the thread went
 * through fewer sites, or -errno.
 */
static int nth_disarm(int fd)
{
	char buf[16];
	ssize_t len;
	int hit;

	/* The read's own copy_to_user() may be the site: not hit before it. */
	len = pread(fd, buf, sizeof(buf) - 1, 0);
	if (len < 0 && errno != EFAULT)
		return -errno;
	buf[len > 0 ? len : 0] = '\0';
	hit = len > 0 && !strtoul(buf, NULL, 10);
	/* So may the write's copy_from_user(), which disarms it as well. */
	if (pwrite(fd, "0", 1, 0) != 1 &&
	    (errno != EFAULT || pwrite(fd, "0", 1, 0) != 1))
		return -errno;
	len = pread(fd, buf, sizeof(buf) - 1, 0);
	if (len <= 0)
		return len ? -errno : -EIO;
	buf[len] = '\0';
	return strtoul(buf, NULL, 10) ? -EBUSY : hit;
}

struct pins {
	long long held;		/* FOLL_PIN pins acquired, less released */
	long long charged;	/* this process's VmPin, in pages */
};

/*
 * Folds the per-CPU vmstat deltas and reads the pin counters, and the pages
 * charged to this process's VmPin by a driver that charges its buffers to
 * RLIMIT_MEMLOCK: root has CAP_IPC_LOCK, so nothing is charged to its user,
 * but the creating mm is charged all the same.
 */
static int read_pins(struct pins *pins)
{
	unsigned long long acq = 0, rel = 0;
	long long vm_pin_kb = -1;
	int fd, found = 0;
	char line[128];
	FILE *f;

	fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (fd < 0)
		return -errno;
	/* EINVAL would only tell that some counter is negative. */
	if (write(fd, "1", 1) < 0 && errno != EINVAL) {
		close(fd);
		return -errno;
	}
	close(fd);

	f = fopen("/proc/vmstat", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "nr_foll_pin_acquired %llu", &acq) == 1 ||
		    sscanf(line, "nr_foll_pin_released %llu", &rel) == 1)
			found++;
	fclose(f);
	f = fopen("/proc/self/status", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %lld kB", &vm_pin_kb) == 1)
			break;
	fclose(f);
	pins->held = acq - rel;
	pins->charged = vm_pin_kb * 1024 / getpagesize();
	return found == 2 && vm_pin_kb >= 0 ? 0 : -ENOENT;
}

/*
 * Waits up to 5 s, as the last fput of a buffer may be deferred, for the pins
 * and charges to be back to @base, and leaves the last reading in @now.
 * Returns whether they were.
 */
static bool wait_pins(const struct pins *base, struct pins *now)
{
	for (int i = 0; i < 50; i++) {
		if (read_pins(now))
			return false;
		if (now->held == base->held && now->charged == base->charged)
			return true;
		usleep(100000);
	}
	return false;
}

/* The 2 MiB huge page pool: free pages and reservations. */
struct pool {
	unsigned long free, resv;
};

static void read_pool(struct pool *pool)
{
	pool->free = read_ulong(HUGE_2M "free_hugepages");
	pool->resv = read_ulong(HUGE_2M "resv_hugepages");
}

/* Waits up to 5 s for the pool to be back to @base. */
static bool wait_pool(const struct pool *base, struct pool *now)
{
	for (int i = 0; i < 50; i++) {
		read_pool(now);
		if (now->free == base->free && now->resv == base->resv)
			return true;
		usleep(100000);
	}
	return false;
}

/*
 * The errors that an injected fault may cause, in both drivers and in the
 * dma-buf core: ENOMEM from any allocation (the buffer and its page arrays,
 * page cache nodes, shmem folios and their memcg charge, hugetlb
 * reservations, migration targets, the dma-buf file and inode, the file
 * descriptor table, the mapping and its page tables, the CPU access
 * scatterlist); EFAULT from copying the request in (fail_usercopy, including
 * the list items, or a fault on its page that fails to allocate); ENOSPC
 * from shmem block accounting when a hole is filled; and EINTR, which
 * pin_user_pages_fd() returns on a fatal signal. The EEXIST of filling a
 * hole that was just filled and the EAGAIN of migration are retried within
 * memfd_pin_folios() and pin_user_pages_fd(), and never returned.
 */
static bool expected_errno(int err)
{
	return err == ENOMEM || err == EFAULT || err == ENOSPC || err == EINTR;
}

/* The byte at @i of a populated memfd; an unpopulated one reads zeros. */
static unsigned char pattern(size_t i)
{
	return i * 7 + i / 4096 + 1;
}

FIXTURE(fail_nth)
{
	int nth_fd;
	int nr;			/* devices that could be opened */
	int dev[MAX_DEVS];
	const char *name[MAX_DEVS];
	size_t page;
	size_t size;		/* of the memfd, all in the buffer */
	struct udmabuf_create_list *list;
};

FIXTURE_VARIANT(fail_nth)
{
	const char *name;
	unsigned int count;	/* 0: UDMABUF_CREATE, else a list of pages */
	bool hugetlb;
	bool populated;		/* else pinning allocates the pages */
};

FIXTURE_VARIANT_ADD(fail_nth, shmem)
{
	.name = "shmem",
};

FIXTURE_VARIANT_ADD(fail_nth, shmem_populated)
{
	.name = "shmem_populated",
	.populated = true,
};

FIXTURE_VARIANT_ADD(fail_nth, list)
{
	.name = "list",
	.count = 3,
};

FIXTURE_VARIANT_ADD(fail_nth, hugetlb)
{
	.name = "hugetlb",
	.hugetlb = true,
};

FIXTURE_SETUP(fail_nth)
{
	static char devs[256];
	const char *env = getenv("UDMABUF_DEVS");
	char *tok, *save;

	self->nth_fd = -1;
	self->nr = 0;
	self->list = NULL;
	snprintf(devs, sizeof(devs), "%s",
		 env && *env ? env : "/dev/udmabuf /dev/udmabuf_rs");
	for (tok = strtok_r(devs, " ", &save); tok && self->nr < MAX_DEVS;
	     tok = strtok_r(NULL, " ", &save)) {
		int fd = open(tok, O_RDWR | O_CLOEXEC);

		if (fd < 0) {
			TH_LOG("%s: %s, not tested", tok, strerror(errno));
			continue;
		}
		self->name[self->nr] = tok;
		self->dev[self->nr++] = fd;
	}
	if (!self->nr)
		SKIP(return, "no udmabuf device");

	/* This thread's: the harness forked it. */
	self->nth_fd = open(FAIL_NTH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->nth_fd);
	self->page = sysconf(_SC_PAGESIZE);
	self->size = self->page * (variant->count ?: 1);
	if (variant->count) {
		self->list = calloc(1, sizeof(*self->list) +
				    variant->count * sizeof(self->list->list[0]));
		ASSERT_NE(NULL, self->list);
	}
	if (!variant->hugetlb)
		return;
	self->size = HUGE_SIZE;
	if (!read_ulong(HUGE_2M "free_hugepages"))
		SKIP(return, "no free 2 MiB huge page");
}

FIXTURE_TEARDOWN(fail_nth)
{
	if (self->nth_fd >= 0) {
		nth_disarm(self->nth_fd);
		close(self->nth_fd);
	}
	for (int i = 0; i < self->nr; i++)
		close(self->dev[i]);
	free(self->list);
}

/* A new sealed memfd of the variant, of self->size bytes, or -errno. */
static int new_memfd(struct _test_data_fail_nth *self,
		     const struct _fixture_variant_fail_nth *variant)
{
	unsigned int flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	ssize_t written;
	unsigned char *data;
	int fd, err;

	if (variant->hugetlb)
		flags |= MFD_HUGETLB | MFD_HUGE_2MB;
	fd = memfd_create("udmabuf_fail_nth", flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, self->size) || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK))
		goto err;
	if (!variant->populated)
		return fd;
	data = malloc(self->size);
	if (!data)
		goto err;
	for (size_t i = 0; i < self->size; i++)
		data[i] = pattern(i);
	written = pwrite(fd, data, self->size, 0);
	free(data);
	if (written == (ssize_t)self->size)
		return fd;
	if (written >= 0)
		errno = EIO;
err:
	err = -errno;
	close(fd);
	return err;
}

/* What happened to a buffer's life under fault injection. */
struct outcome {
	int err;		/* errno of the call that failed, or 0 */
	const char *call;	/* which call */
	int nr_failed;		/* calls that failed: one fault, one at most */
	int unexpected;		/* an errno not in the expected set, or 0 */
	bool bad_data;
	void *map;		/* a mapping that munmap() failed to remove */
};

static void failed(struct outcome *o, const char *call)
{
	if (!o->nr_failed++) {
		o->err = errno;
		o->call = call;
	}
	if (!expected_errno(errno))
		o->unexpected = errno;
}

/*
 * Creates a buffer of the memfd @memfd on @dev, maps it, reads it between
 * the syncs for CPU access, unmaps and closes it: nothing else, as fail-nth
 * may be armed. Records what failed in @o, and if @pinned is not NULL, reads
 * the pins once the buffer exists into it.
 */
static void buffer_life(struct _test_data_fail_nth *self,
			const struct _fixture_variant_fail_nth *variant,
			int dev, int memfd, struct outcome *o,
			struct pins *pinned)
{
	struct udmabuf_create create = {
		.memfd = memfd, .flags = UDMABUF_FLAGS_CLOEXEC,
		.size = self->size,
	};
	struct dma_buf_sync sync = {
		.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ,
	};
	const unsigned char *map;
	int buf;

	memset(o, 0, sizeof(*o));
	if (variant->count)
		buf = ioctl(dev, UDMABUF_CREATE_LIST, self->list);
	else
		buf = ioctl(dev, UDMABUF_CREATE, &create);
	if (buf < 0) {
		failed(o, "create");
		return;
	}
	if (pinned)
		read_pins(pinned);
	map = mmap(NULL, self->size, PROT_READ, MAP_SHARED, buf, 0);
	if (map == MAP_FAILED) {
		failed(o, "mmap");
		goto out;
	}
	if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync)) {
		failed(o, "sync start");
	} else {
		for (size_t i = 0; i < self->size; i++)
			if (map[i] != (variant->populated ? pattern(i) : 0))
				o->bad_data = true;
		sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
		if (ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync))
			failed(o, "sync end");
	}
	if (munmap((void *)map, self->size)) {
		failed(o, "munmap");
		o->map = (void *)map;
	}
out:
	close(buf);
}

/* Per device and variant: faults injected, and what they failed. */
struct counts {
	unsigned int injected;
	unsigned int failed_create;
	unsigned int failed_later;	/* mmap, sync or munmap */
};

/*
 * One step of the sweep on device @d: a buffer's life from a fresh memfd,
 * with fail-nth armed at @nth (not at all for 0), and the checks of what it
 * leaves. Returns whether the fault was injected.
 */
static bool step(struct __test_metadata *_metadata,
		 struct _test_data_fail_nth *self,
		 const struct _fixture_variant_fail_nth *variant,
		 int d, unsigned int nth, struct counts *c)
{
	const char *name = self->name[d];
	struct pool pool_base = {}, pool = {};
	struct pins base, now, pinned = {};
	struct outcome o;
	int memfd, fd, ret;
	bool hit;

	if (variant->hugetlb)
		read_pool(&pool_base);
	memfd = new_memfd(self, variant);
	ASSERT_LE(0, memfd) TH_LOG("memfd: %s", strerror(-memfd));
	for (unsigned int i = 0; i < variant->count; i++) {
		self->list->list[i].memfd = memfd;
		self->list->list[i].offset = i * self->page;
		self->list->list[i].size = self->page;
	}
	if (variant->count) {
		self->list->flags = UDMABUF_FLAGS_CLOEXEC;
		self->list->count = variant->count;
	}
	/* The lowest free fd: a buffer's fd would take it. */
	fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	close(fd);
	ASSERT_EQ(0, read_pins(&base));

	if (nth)
		ASSERT_EQ(0, nth_arm(self->nth_fd, nth));
	buffer_life(self, variant, self->dev[d], memfd, &o,
		    nth ? NULL : &pinned);
	ret = nth ? nth_disarm(self->nth_fd) : 0;
	ASSERT_LE(0, ret) TH_LOG("fail-nth: %s", strerror(-ret));
	hit = ret;

	if (o.map)
		ASSERT_EQ(0, munmap(o.map, self->size));
	if (!nth && variant->hugetlb && o.err == ENOMEM) {
		close(memfd);
		SKIP(return false, "%s: no huge page to pin, or to migrate to",
		     name);
	}
	if (!nth) {
		ASSERT_EQ(0, o.err) TH_LOG("%s: %s without fault injection: %s",
					   name, o.call, strerror(o.err));
		EXPECT_LT(base.held, pinned.held) TH_LOG("%s: nothing pinned", name);
	}
	EXPECT_FALSE(o.err && !hit)
		TH_LOG("%s: nth %u: %s failed with %s, but no fault was injected",
		       name, nth, o.call, strerror(o.err));
	EXPECT_EQ(0, o.unexpected)
		TH_LOG("%s: nth %u: unexpected error %s", name, nth,
		       strerror(o.unexpected));
	EXPECT_GE(1, o.nr_failed)
		TH_LOG("%s: nth %u: more than one call failed", name, nth);
	EXPECT_FALSE(o.bad_data)
		TH_LOG("%s: nth %u: the buffer does not read as the memfd", name, nth);
	/* No file descriptor is left, not even for a failed create. */
	EXPECT_EQ(-1, fcntl(fd, F_GETFD))
		TH_LOG("%s: nth %u: fd %d left after %s %s", name, nth, fd,
		       o.call ?: "success", o.err ? strerror(o.err) : "");
	EXPECT_TRUE(wait_pins(&base, &now))
		TH_LOG("%s: nth %u: %s; %lld pins, %lld pages charged left",
		       name, nth, o.err ? strerror(o.err) : "success",
		       now.held - base.held, now.charged - base.charged);
	close(memfd);
	if (variant->hugetlb)
		EXPECT_TRUE(wait_pool(&pool_base, &pool))
			TH_LOG("%s: nth %u: huge pages free %lu, reserved %lu; were %lu, %lu",
			       name, nth, pool.free, pool.resv, pool_base.free,
			       pool_base.resv);
	if (hit) {
		c->injected++;
		if (o.err && !strcmp(o.call, "create"))
			c->failed_create++;
		else if (o.err)
			c->failed_later++;
	}
	return hit;
}

static void print_counts(const char *variant, const char *dev,
			 const struct counts *c)
{
	ksft_print_msg("%s %s: %u faults injected: %u failed create, %u later, %u absorbed\n",
		       variant, dev, c->injected, c->failed_create,
		       c->failed_later,
		       c->injected - c->failed_create - c->failed_later);
}

TEST_F_TIMEOUT(fail_nth, sweep, TIMEOUT)
{
	struct counts c[MAX_DEVS] = {};
	char line[256];
	int d, len;

	for (d = 0; d < self->nr; d++) {
		unsigned int nth;

		/* Also warms up what is allocated once. */
		step(_metadata, self, variant, d, 0, &c[d]);
		for (nth = 1; _metadata->exit_code == KSFT_PASS; nth++) {
			ASSERT_GE(MAX_NTH, nth)
				TH_LOG("%s: still hitting faults at nth %u",
				       self->name[d], nth);
			if (!step(_metadata, self, variant, d, nth, &c[d]))
				break;
		}
		/* Stop at the first wrong step: the next ones would follow. */
		if (_metadata->exit_code != KSFT_PASS)
			return;
		print_counts(variant->name, self->name[d], &c[d]);
	}
	len = snprintf(line, sizeof(line), "%s: faults injected:", variant->name);
	for (d = 0; d < self->nr && len < (int)sizeof(line); d++)
		len += snprintf(line + len, sizeof(line) - len, " %s %u",
				self->name[d], c[d].injected);
	ksft_print_msg("%s\n", line);
}

int main(int argc, char **argv)
{
	const char *why;

	/* Listing the tests needs no fault injection. */
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "-l") || !strcmp(argv[i], "-h"))
			return test_harness_run(argc, argv);
	/* In this process only: the tests run in children, which _exit(). */
	atexit(restore_attrs);
	why = setup_fault_injection();
	if (why) {
		ksft_print_header();
		ksft_exit_skip("%s\n", why);
	}
	return test_harness_run(argc, argv);
}
