// SPDX-License-Identifier: GPL-2.0
/*
 * pin_user_pages_fd() tests, through PIN_FD_LONGTERM_TEST_START of
 * /sys/kernel/debug/gup_test (CONFIG_GUP_TEST, root): pin a range of a memfd
 * without mapping it, read the pinned pages back with PIN_LONGTERM_TEST_READ,
 * and check the FOLL_PIN accounting in /proc/vmstat; and, with
 * PIN_FD_TEST_FLAG_ACCOUNT, the charge of the pins to RLIMIT_MEMLOCK.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <signal.h>
#include <time.h>
#include <asm-generic/hugetlb_encode.h>
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/io_uring.h>
#include <linux/magic.h>
#include <mm/gup_test.h>

#include "kselftest_harness.h"
#include "vm_util.h"

#define GUP_TEST_FILE	"/sys/kernel/debug/gup_test"
#define SHMEM_ENABLED	"/sys/kernel/mm/transparent_hugepage/shmem_enabled"
#define FREE_HUGE_2M	"/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
#define RESV_HUGE_2M	"/sys/kernel/mm/hugepages/hugepages-2048kB/resv_hugepages"
#define MiB		(1024UL * 1024)
#define MAX_ZONES	64

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB	HUGETLB_FLAG_ENCODE_2MB
#endif

struct pins {
	unsigned long long acquired, released;
};

struct zone_span {
	unsigned long start_pfn, end_pfn;
};

/* Folds the per-cpu vmstat deltas, then reads the FOLL_PIN counters. */
static int read_pins(struct pins *pins)
{
	int fd, found = 0;
	char line[128];
	FILE *f;

	fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (fd < 0)
		return -errno;
	if (write(fd, "1", 1) < 0) {
		close(fd);
		return -errno;
	}
	close(fd);

	f = fopen("/proc/vmstat", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		found += sscanf(line, "nr_foll_pin_acquired %llu", &pins->acquired) == 1;
		found += sscanf(line, "nr_foll_pin_released %llu", &pins->released) == 1;
	}
	fclose(f);
	return found == 2 ? 0 : -ENOENT;
}

/* The number after @key in the file at @path, in @base, or -1. */
static long long proc_num(const char *path, const char *key, int base)
{
	long long val = -1;
	char line[128];
	FILE *f;

	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			val = strtoll(line + strlen(key), NULL, base);
			break;
		}
	fclose(f);
	return val;
}

/* A /proc/meminfo value (in kB), or -1. */
static long meminfo_kb(const char *key)
{
	return proc_num("/proc/meminfo", key, 10);
}

/*
 * The populated Movable zones of /proc/zoneinfo: returns how many there are
 * and stores the PFN spans of the first @max of them.
 */
static int movable_zones(struct zone_span *zones, int max)
{
	unsigned long start_pfn, spanned = 0, present = 0;
	char line[512], name[32];
	bool movable = false;
	int node, nr = 0;
	FILE *f;

	f = fopen("/proc/zoneinfo", "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Node %d, zone %31s", &node, name) == 2) {
			movable = !strcmp(name, "Movable");
			spanned = 0;
			present = 0;
		} else if (movable) {
			if (sscanf(line, " spanned %lu", &spanned) == 1 ||
			    sscanf(line, " present %lu", &present) == 1)
				continue;
			if (sscanf(line, " start_pfn: %lu", &start_pfn) != 1 ||
			    !present)
				continue;
			if (nr < max) {
				zones[nr].start_pfn = start_pfn;
				zones[nr].end_pfn = start_pfn + spanned;
			}
			nr++;
		}
	}
	fclose(f);
	return nr;
}

/*
 * How many of the @nr pages mapped at @addr are in one of the @nr_zones
 * @zones, according to /proc/self/pagemap; *seen counts the PFNs it shows
 * (all zero without CAP_SYS_ADMIN).
 */
static size_t pages_in_zones(char *addr, size_t nr, int pagemap,
			     const struct zone_span *zones, int nr_zones,
			     size_t *seen)
{
	size_t i, count = 0;
	uint64_t entry;
	int z;

	*seen = 0;
	for (i = 0; i < nr; i++) {
		char *page = addr + i * psize();
		unsigned long pfn;

		FORCE_READ(*page);
		if (pread(pagemap, &entry, sizeof(entry),
			  (uintptr_t)page / psize() * sizeof(entry)) !=
		    sizeof(entry) || !(entry & PM_PRESENT))
			continue;
		pfn = PAGEMAP_PFN(entry);
		if (!pfn)
			continue;
		(*seen)++;
		for (z = 0; z < nr_zones; z++)
			if (pfn >= zones[z].start_pfn && pfn < zones[z].end_pfn) {
				count++;
				break;
			}
	}
	return count;
}

/* @nr pages of data, each one different: 64-bit words naming page and place. */
static char *pattern(size_t first_page, size_t nr)
{
	size_t words = psize() / sizeof(uint64_t), i, j;
	uint64_t *p = malloc(nr * psize());

	for (i = 0; p && i < nr; i++)
		for (j = 0; j < words; j++)
			p[i * words + j] = 0x9e3779b97f4a7c15ULL *
					   (first_page + i + 1) + j;
	return (char *)p;
}

/*
 * A memfd of @size bytes, with @data written to it unless NULL: through
 * pwrite(), or through a shared mapping for hugetlb which has no write().
 * Returns the fd or -errno.
 */
static int memfd_with(unsigned int mfd_flags, size_t size, const char *data)
{
	ssize_t written;
	int fd, err;
	char *map;

	fd = memfd_create("pin_user_pages_fd", mfd_flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, size))
		goto err;
	if (data && (mfd_flags & MFD_HUGETLB)) {
		map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			   fd, 0);
		if (map == MAP_FAILED)
			goto err;
		memcpy(map, data, size);
		munmap(map, size);
	} else if (data) {
		written = pwrite(fd, data, size, 0);
		if (written != (ssize_t)size) {
			if (written >= 0)
				errno = EIO;
			goto err;
		}
	}
	return fd;
err:
	err = -errno;
	close(fd);
	return err;
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

FIXTURE(pin_fd)
{
	int gup_fd;
	int fd;
	int fd2;
	char *map;
	size_t map_size;
	char *buf;		/* PIN_LONGTERM_TEST_READ buffer */
	struct pins base;	/* pin counters before the pin under test */
	unsigned long nr_pinned;
	bool may_migrate;	/* ZONE_MOVABLE or CMA: pins may migrate */
	char shmem_enabled[32];	/* setting to restore, if changed */
};

/*
 * The helpers below take the fixture as struct _test_data_pin_fd, the type
 * FIXTURE_DATA(pin_fd) names.
 */

FIXTURE_SETUP(pin_fd)
{
	self->fd = -1;
	self->fd2 = -1;
	self->gup_fd = open(GUP_TEST_FILE, O_RDWR);
	if (self->gup_fd < 0)
		SKIP(return, "%s: %s (needs CONFIG_GUP_TEST, debugfs, root)",
		     GUP_TEST_FILE, strerror(errno));
	self->may_migrate = movable_zones(NULL, 0) > 0 ||
			    meminfo_kb("CmaTotal:") > 0;
}

FIXTURE_TEARDOWN(pin_fd)
{
	/* Never leave pins behind for the next test. */
	if (self->gup_fd >= 0) {
		ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP);
		close(self->gup_fd);
	}
	if (self->map)
		munmap(self->map, self->map_size);
	if (self->fd >= 0)
		close(self->fd);
	if (self->fd2 >= 0)
		close(self->fd2);
	free(self->buf);
	if (self->shmem_enabled[0])
		write_str(SHMEM_ENABLED, self->shmem_enabled);
}

/* Sets shmem_enabled to @mode; the teardown restores the original one. */
static int set_shmem_enabled(struct _test_data_pin_fd *self, const char *mode)
{
	char buf[128], *l, *r;

	if (!self->shmem_enabled[0]) {
		if (!read_file(SHMEM_ENABLED, buf, sizeof(buf)))
			return -ENOENT;
		l = strchr(buf, '[');
		r = l ? strchr(l, ']') : NULL;
		if (!r || r - l > (long)sizeof(self->shmem_enabled) - 1)
			return -EINVAL;
		*r = '\0';
		strcpy(self->shmem_enabled, l + 1);
	}
	return write_str(SHMEM_ENABLED, mode);
}

static int pin_args(struct _test_data_pin_fd *self, struct pin_fd_test *args)
{
	return ioctl(self->gup_fd, PIN_FD_LONGTERM_TEST_START, args) ? -errno : 0;
}

/* PIN_FD_LONGTERM_TEST_START on @gup_fd; returns 0 or -errno. */
static int pin_gup(int gup_fd, int fd, size_t offset, size_t size,
		   unsigned int flags)
{
	struct pin_fd_test args = {
		.offset = offset, .size = size, .fd = fd, .flags = flags,
	};

	return ioctl(gup_fd, PIN_FD_LONGTERM_TEST_START, &args) ? -errno : 0;
}

static int pin(struct _test_data_pin_fd *self, int fd, size_t offset, size_t size,
	       unsigned int flags)
{
	return pin_gup(self->gup_fd, fd, offset, size, flags);
}

/*
 * Checks that the pin counters rose by @acquired and @released since
 * self->base. Pins dropped to migrate pages out of ZONE_MOVABLE or CMA show
 * in both counters, so where that can happen only the difference is exact.
 */
static void check_pins(struct __test_metadata *_metadata,
		       struct _test_data_pin_fd *self,
		       unsigned long long acquired, unsigned long long released)
{
	unsigned long long acq, rel;
	struct pins now;

	ASSERT_EQ(0, read_pins(&now));
	acq = now.acquired - self->base.acquired;
	rel = now.released - self->base.released;
	if (self->may_migrate && acq > acquired) {
		TH_LOG("%llu pins were dropped to migrate", acq - acquired);
		EXPECT_EQ(acq - acquired, rel - released);
		return;
	}
	EXPECT_EQ(acquired, acq);
	EXPECT_EQ(released, rel);
}

/* Reads the pinned pages and compares them with @expect, or zeros if NULL. */
static void read_check(struct __test_metadata *_metadata,
		       struct _test_data_pin_fd *self, const char *expect)
{
	size_t size = self->nr_pinned * psize(), i;
	__u64 addr;

	free(self->buf);
	self->buf = malloc(size);
	ASSERT_NE(NULL, self->buf);
	memset(self->buf, 0xa5, size);
	addr = (uintptr_t)self->buf;
	ASSERT_EQ(0, ioctl(self->gup_fd, PIN_LONGTERM_TEST_READ, &addr));
	for (i = 0; i < size; i++)
		if (self->buf[i] != (expect ? expect[i] : 0))
			break;
	EXPECT_EQ(size, i)
		TH_LOG("pinned page %zu differs at byte %zu",
		       i / psize(), i % psize());
}

/* Pins [offset, offset + size) of @fd, checks the counters and the data. */
static void pin_check(struct __test_metadata *_metadata,
		      struct _test_data_pin_fd *self, int fd, size_t offset,
		      size_t size, unsigned int flags, const char *expect)
{
	ASSERT_EQ(0, read_pins(&self->base));
	ASSERT_EQ(0, pin(self, fd, offset, size, flags));
	self->nr_pinned = size / psize();
	check_pins(_metadata, self, self->nr_pinned, 0);
	read_check(_metadata, self, expect);
}

static void unpin_check(struct __test_metadata *_metadata,
			struct _test_data_pin_fd *self)
{
	ASSERT_EQ(0, ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP));
	check_pins(_metadata, self, self->nr_pinned, self->nr_pinned);
	self->nr_pinned = 0;
}

TEST_F(pin_fd, shmem_4k)
{
	size_t size = 4 * MiB, nr = size / psize();
	char *data = pattern(0, nr);

	ASSERT_NE(NULL, data);
	/* Small folios, if shmem THP is there at all. */
	set_shmem_enabled(self, "never");
	self->fd = memfd_with(0, size, data);
	ASSERT_LE(0, self->fd);
	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  data);

	/* The pinned pages are the file's: a write() shows through. */
	memset(data + 7 * psize(), 0x3c, psize());
	ASSERT_EQ(psize(), pwrite(self->fd, data + 7 * psize(), psize(),
				  7 * psize()));
	read_check(_metadata, self, data);
	unpin_check(_metadata, self);
	free(data);
}

TEST_F(pin_fd, hugetlb_2m)
{
	size_t size = 4 * MiB, nr = size / psize();
	char buf[32], *data;
	int ret;

	if (!read_file(FREE_HUGE_2M, buf, sizeof(buf)))
		SKIP(return, "no 2 MiB hugetlb pages");
	if (strtoul(buf, NULL, 10) < 2)
		SKIP(return, "fewer than 2 free 2 MiB huge pages");
	data = pattern(0, nr);
	ASSERT_NE(NULL, data);
	self->fd = memfd_with(MFD_HUGETLB | MFD_HUGE_2MB, size, data);
	if (self->fd == -ENOMEM)
		SKIP(return, "cannot get 2 huge pages");
	ASSERT_LE(0, self->fd);

	/* Huge pages in ZONE_MOVABLE need free ones to migrate to. */
	ret = pin(self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE);
	if (ret == -ENOMEM && self->may_migrate)
		SKIP(return, "no free huge page outside ZONE_MOVABLE/CMA");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP));

	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  data);
	unpin_check(_metadata, self);
	free(data);
}

TEST_F(pin_fd, shmem_thp)
{
	size_t size = 4 * MiB, nr = size / psize(), pmd = 2 * MiB / psize();
	long before;
	char *data;

	if (access(SHMEM_ENABLED, F_OK))
		SKIP(return, "no shmem THP (%s)", SHMEM_ENABLED);
	ASSERT_EQ(0, set_shmem_enabled(self, "always"));
	data = pattern(0, nr);
	ASSERT_NE(NULL, data);
	before = meminfo_kb("ShmemHugePages:");
	self->fd = memfd_with(0, size, data);
	ASSERT_LE(0, self->fd);
	if (meminfo_kb("ShmemHugePages:") <= before)
		SKIP(return, "no shmem THP");

	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  data);
	unpin_check(_metadata, self);

	/* Starting in the middle of a huge folio. */
	pin_check(_metadata, self, self->fd, 3 * psize(), 5 * psize(),
		  PIN_FD_TEST_FLAG_WRITE, data + 3 * psize());
	unpin_check(_metadata, self);

	/* Across the boundary between two huge folios. */
	pin_check(_metadata, self, self->fd, (pmd - 2) * psize(), 4 * psize(),
		  PIN_FD_TEST_FLAG_WRITE, data + (pmd - 2) * psize());
	unpin_check(_metadata, self);
	free(data);
}

TEST_F(pin_fd, unpopulated)
{
	size_t size = 8 * MiB, done;
	struct stat st;
	ssize_t ret;
	char *buf;

	self->fd = memfd_with(0, size, NULL);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, fstat(self->fd, &st));
	EXPECT_EQ(0, st.st_blocks);

	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  NULL);
	unpin_check(_metadata, self);

	/* The holes were filled; the file kept its size and reads zeros. */
	ASSERT_EQ(0, fstat(self->fd, &st));
	EXPECT_EQ(size, st.st_size);
	EXPECT_EQ(size, st.st_blocks * 512);
	buf = malloc(size);
	ASSERT_NE(NULL, buf);
	memset(buf, 0xa5, size);
	for (done = 0; done < size; done += ret) {
		ret = pread(self->fd, buf + done, size - done, done);
		ASSERT_LT(0, ret);
	}
	for (done = 0; done < size && !buf[done]; done++)
		;
	EXPECT_EQ(size, done);
	free(buf);
}

TEST_F(pin_fd, offset_range)
{
	size_t nr = 16, i;
	char *data = malloc(nr * psize());

	ASSERT_NE(NULL, data);
	for (i = 0; i < nr; i++)
		memset(data + i * psize(), i + 1, psize());
	self->fd = memfd_with(0, nr * psize(), data);
	ASSERT_LE(0, self->fd);
	pin_check(_metadata, self, self->fd, 5 * psize(), 3 * psize(), 0,
		  data + 5 * psize());
	unpin_check(_metadata, self);
	free(data);
}

TEST_F(pin_fd, past_eof)
{
	size_t ps = psize();
	char *data = pattern(0, 4);

	ASSERT_NE(NULL, data);
	self->fd = memfd_with(0, 4 * ps, data);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, read_pins(&self->base));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 2 * ps, 4 * ps, 0));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 4 * ps, ps, 0));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 0, 5 * ps, 0));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 1ULL << 62, ps, 0));
	check_pins(_metadata, self, 0, 0);

	/* The partial last page of a file is within it: a hole to fill. */
	ASSERT_EQ(0, ftruncate(self->fd, 4 * ps + 1));
	memcpy(data, data + 3 * ps, ps);
	memset(data + ps, 0, ps);
	pin_check(_metadata, self, self->fd, 3 * ps, 2 * ps, 0, data);
	unpin_check(_metadata, self);
	free(data);
}

TEST_F(pin_fd, zero_size)
{
	self->fd = memfd_with(0, 4 * psize(), NULL);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, read_pins(&self->base));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 0, 0, 0));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 0, 0, PIN_FD_TEST_FLAG_WRITE));
	check_pins(_metadata, self, 0, 0);
}

TEST_F(pin_fd, bad_args)
{
	struct pin_fd_test args = { .size = psize() };
	size_t ps = psize();

	self->fd = memfd_with(0, 4 * ps, NULL);
	ASSERT_LE(0, self->fd);
	args.fd = self->fd;
	ASSERT_EQ(0, read_pins(&self->base));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 1, ps, 0));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 0, ps + 1, 0));
	EXPECT_EQ(-EINVAL, pin(self, self->fd, 0, ps,
			       PIN_FD_TEST_FLAG_FOLIOS << 1));
	args.reserved = 1;
	EXPECT_EQ(-EINVAL, pin_args(self, &args));
	check_pins(_metadata, self, 0, 0);

	/* One set of pins at a time. */
	pin_check(_metadata, self, self->fd, 0, ps, 0, NULL);
	EXPECT_EQ(-EINVAL, pin(self, self->fd, ps, ps, 0));
	unpin_check(_metadata, self);
}

TEST_F(pin_fd, not_memfd)
{
	struct statfs sfs;
	int pipefd[2];

	ASSERT_EQ(0, read_pins(&self->base));
	self->fd = open("/proc/self/exe", O_RDONLY);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, fstatfs(self->fd, &sfs));
	if (sfs.f_type == TMPFS_MAGIC || sfs.f_type == HUGETLBFS_MAGIC)
		TH_LOG("/proc/self/exe is on tmpfs: not checked");
	else
		EXPECT_EQ(-EINVAL, pin(self, self->fd, 0, psize(), 0));

	self->fd2 = eventfd(0, 0);
	ASSERT_LE(0, self->fd2);
	EXPECT_EQ(-EINVAL, pin(self, self->fd2, 0, psize(), 0));

	ASSERT_EQ(0, pipe(pipefd));
	EXPECT_EQ(-EINVAL, pin(self, pipefd[0], 0, psize(), 0));
	EXPECT_EQ(-EINVAL, pin(self, pipefd[1], 0, psize(), 0));
	close(pipefd[0]);
	close(pipefd[1]);
	check_pins(_metadata, self, 0, 0);
}

TEST_F(pin_fd, bad_fd)
{
	int fd = memfd_create("closed", 0);

	ASSERT_LE(0, fd);
	ASSERT_EQ(0, close(fd));
	ASSERT_EQ(0, read_pins(&self->base));
	EXPECT_EQ(-EBADF, pin(self, fd, 0, psize(), 0));
	EXPECT_EQ(-EBADF, pin(self, -1, 0, psize(), 0));
	check_pins(_metadata, self, 0, 0);
}

/* @fd opened again through /proc/self/fd, with @flags: a new file. */
static int reopen(int fd, int flags)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	return open(path, flags);
}

/* The blocks allocated to @fd, or -1. */
static long long blocks(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -1 : (long long)st.st_blocks;
}

/*
 * Checks that the test process, which pins through gup_test, has nothing
 * charged to its VmPin: a refused pin charges nothing, or returns what it
 * charged. Root is charged there too, CAP_IPC_LOCK or not.
 */
static void check_uncharged(struct __test_metadata *_metadata)
{
	EXPECT_EQ(0, proc_num("/proc/self/status", "VmPin:", 10));
}

/*
 * A pin asks for the access a shared mapping would: a file open read-only
 * is pinned for reading only, and a write pin of it is refused as
 * mmap(PROT_WRITE, MAP_SHARED) is, before anything is pinned, charged or
 * allocated.
 */
TEST_F(pin_fd, read_only_fd)
{
	size_t size = 8 * psize();
	char *data = pattern(0, 8), *map;
	long long nr_blocks;
	int err;

	ASSERT_NE(NULL, data);
	self->fd = memfd_with(0, size, data);
	ASSERT_LE(0, self->fd);
	self->fd2 = reopen(self->fd, O_RDONLY);
	ASSERT_LE(0, self->fd2);

	/* The premise: no writable shared mapping of it. */
	map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, self->fd2,
		   0);
	err = errno;
	EXPECT_EQ(MAP_FAILED, map) {
		munmap(map, size);
	}
	EXPECT_EQ(EACCES, err);

	/* A read pin of it holds the file's data. */
	pin_check(_metadata, self, self->fd2, 0, size, 0, data);
	unpin_check(_metadata, self);

	/* No write pin, of the data or of holes it would fill. */
	ASSERT_EQ(0, ftruncate(self->fd, 2 * size));
	nr_blocks = blocks(self->fd);
	ASSERT_LE(0, nr_blocks);
	ASSERT_EQ(0, read_pins(&self->base));
	EXPECT_EQ(-EACCES, pin(self, self->fd2, 0, size,
			       PIN_FD_TEST_FLAG_WRITE));
	EXPECT_EQ(-EACCES, pin(self, self->fd2, size, size,
			       PIN_FD_TEST_FLAG_WRITE));
	EXPECT_EQ(-EACCES, pin(self, self->fd2, 0, 2 * size,
			       PIN_FD_TEST_FLAG_WRITE |
			       PIN_FD_TEST_FLAG_ACCOUNT));
	check_pins(_metadata, self, 0, 0);
	check_uncharged(_metadata);
	EXPECT_EQ(nr_blocks, blocks(self->fd));

	/* It is the file that refuses: the read-write one pins for writing. */
	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  data);
	unpin_check(_metadata, self);
	free(data);
}

/* A file open write-only is refused any pin, as it is any shared mapping. */
TEST_F(pin_fd, write_only_fd)
{
	static const int prots[] = { PROT_READ, PROT_READ | PROT_WRITE };
	static const unsigned int flags[] = {
		0, PIN_FD_TEST_FLAG_WRITE, PIN_FD_TEST_FLAG_ACCOUNT,
	};
	size_t size = 8 * psize();
	char *data = pattern(0, 8), *map;
	long long nr_blocks;
	int i, err;

	ASSERT_NE(NULL, data);
	/* Data, then holes. */
	self->fd = memfd_with(0, size, data);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, ftruncate(self->fd, 2 * size));
	self->fd2 = reopen(self->fd, O_WRONLY);
	ASSERT_LE(0, self->fd2);

	/* The premise. */
	for (i = 0; i < 2; i++) {
		map = mmap(NULL, size, prots[i], MAP_SHARED, self->fd2, 0);
		err = errno;
		EXPECT_EQ(MAP_FAILED, map) {
			munmap(map, size);
		}
		EXPECT_EQ(EACCES, err);
	}

	nr_blocks = blocks(self->fd);
	ASSERT_LE(0, nr_blocks);
	ASSERT_EQ(0, read_pins(&self->base));
	for (i = 0; i < 3; i++) {
		EXPECT_EQ(-EACCES, pin(self, self->fd2, 0, size, flags[i]));
		EXPECT_EQ(-EACCES, pin(self, self->fd2, size, size, flags[i]));
	}
	check_pins(_metadata, self, 0, 0);
	check_uncharged(_metadata);
	EXPECT_EQ(nr_blocks, blocks(self->fd));

	/* It writes to the same file, which pins through the first fd. */
	memset(data + 2 * psize(), 0x3c, psize());
	ASSERT_EQ(psize(), pwrite(self->fd2, data + 2 * psize(), psize(),
				  2 * psize()));
	pin_check(_metadata, self, self->fd, 0, size, 0, data);
	unpin_check(_metadata, self);
	free(data);
}

/*
 * An append-only file can be mapped shared through no fd open for writing,
 * as nothing may overwrite it: it is refused write pins, of its data and of
 * holes they would fill, even through a read-write fd. Read pins of it hold
 * its data, as a private mapping would.
 */
TEST_F(pin_fd, append_only)
{
	size_t size = 8 * psize();
	char *data = pattern(0, 8), *map;
	long long nr_blocks;
	int attr, err;

	ASSERT_NE(NULL, data);
	self->fd = memfd_with(0, size, data);
	ASSERT_LE(0, self->fd);
	/* Data, then holes: an append-only file cannot be truncated. */
	ASSERT_EQ(0, ftruncate(self->fd, 2 * size));
	ASSERT_EQ(0, ioctl(self->fd, FS_IOC_GETFLAGS, &attr));
	attr |= FS_APPEND_FL;
	if (ioctl(self->fd, FS_IOC_SETFLAGS, &attr)) {
		free(data);
		SKIP(return, "FS_IOC_SETFLAGS(FS_APPEND_FL): %s", strerror(errno));
	}

	/* The premise. */
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, self->fd, 0);
	err = errno;
	EXPECT_EQ(MAP_FAILED, map) {
		munmap(map, size);
	}
	EXPECT_EQ(EACCES, err);

	nr_blocks = blocks(self->fd);
	ASSERT_LE(0, nr_blocks);
	ASSERT_EQ(0, read_pins(&self->base));
	EXPECT_EQ(-EACCES, pin(self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE));
	EXPECT_EQ(-EACCES, pin(self, self->fd, size, size,
			       PIN_FD_TEST_FLAG_WRITE | PIN_FD_TEST_FLAG_ACCOUNT));
	check_pins(_metadata, self, 0, 0);
	check_uncharged(_metadata);
	EXPECT_EQ(nr_blocks, blocks(self->fd));

	pin_check(_metadata, self, self->fd, 0, size, 0, data);
	unpin_check(_metadata, self);
	attr &= ~FS_APPEND_FL;
	EXPECT_EQ(0, ioctl(self->fd, FS_IOC_SETFLAGS, &attr));
	free(data);
}

TEST_F(pin_fd, write_sealed)
{
	static const int seals[] = { F_SEAL_WRITE, F_SEAL_FUTURE_WRITE };
	size_t size = 4 * psize();
	char *data = pattern(0, 4);
	int i, ret, err;

	ASSERT_NE(NULL, data);
	for (i = 0; i < 2; i++) {
		self->fd = memfd_with(MFD_ALLOW_SEALING, size, data);
		ASSERT_LE(0, self->fd);
		ASSERT_EQ(0, fcntl(self->fd, F_ADD_SEALS, seals[i]));
		ASSERT_EQ(0, read_pins(&self->base));
		EXPECT_EQ(-EPERM, pin(self, self->fd, 0, size,
				      PIN_FD_TEST_FLAG_WRITE));
		check_pins(_metadata, self, 0, 0);
		pin_check(_metadata, self, self->fd, 0, size, 0, data);
		unpin_check(_metadata, self);
		close(self->fd);
		self->fd = -1;
	}

	/* As with pins through a mapping, F_SEAL_WRITE waits for the pins. */
	self->fd = memfd_with(MFD_ALLOW_SEALING, size, data);
	ASSERT_LE(0, self->fd);
	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  data);
	ret = fcntl(self->fd, F_ADD_SEALS, F_SEAL_WRITE);
	err = errno;
	EXPECT_EQ(-1, ret);
	EXPECT_EQ(EBUSY, err);
	unpin_check(_metadata, self);
	EXPECT_EQ(0, fcntl(self->fd, F_ADD_SEALS, F_SEAL_WRITE));
	free(data);
}

/* Adds F_SEAL_WRITE to a memfd, again while pins make it fail with EBUSY. */
struct sealer {
	pthread_barrier_t start;
	int fd;
	bool stop;		/* set by the pinner: give up */
	int err;		/* 0 once sealed, or the errno it gave up on */
	unsigned long busy;	/* attempts that failed with EBUSY */
};

static void *seal_write(void *arg)
{
	struct sealer *s = arg;

	pthread_barrier_wait(&s->start);
	while (!__atomic_load_n(&s->stop, __ATOMIC_ACQUIRE)) {
		if (!fcntl(s->fd, F_ADD_SEALS, F_SEAL_WRITE)) {
			s->err = 0;
			return NULL;
		}
		if (errno != EBUSY) {
			s->err = errno;
			return NULL;
		}
		s->busy++;
	}
	s->err = ETIMEDOUT;
	return NULL;
}

/*
 * Write pins race with F_SEAL_WRITE, for two seconds of rounds on fresh
 * memfds. The seal fails while pages are pinned and a write pin fails once
 * the file is sealed: neither may slip in between the other's check and its
 * effect, so while a write pin holds the file is never write-sealed.
 */
TEST_F(pin_fd, seal_race)
{
	unsigned long rounds = 0, pinned = 0, refused = 0, busy = 0;
	unsigned long violations = 0;
	size_t size = 64 * psize();
	struct pins before, after;
	time_t stop, round_end;
	pthread_t thread;
	struct sealer s;
	int ret, seals;

	ASSERT_EQ(0, read_pins(&before));
	stop = time(NULL) + 2;
	while (time(NULL) < stop) {
		/* Holes: the first pin fills them, a wider window to hit. */
		self->fd = memfd_with(MFD_ALLOW_SEALING, size, NULL);
		ASSERT_LE(0, self->fd);
		memset(&s, 0, sizeof(s));
		s.fd = self->fd;
		ASSERT_EQ(0, pthread_barrier_init(&s.start, NULL, 2));
		ASSERT_EQ(0, pthread_create(&thread, NULL, seal_write, &s));

		/* No ASSERT until the sealer is joined. */
		pthread_barrier_wait(&s.start);
		round_end = time(NULL) + 3;
		for (;;) {
			ret = pin(self, self->fd, 0, size,
				  PIN_FD_TEST_FLAG_WRITE);
			if (ret)
				break;
			pinned++;
			seals = fcntl(self->fd, F_GET_SEALS);
			if (seals < 0 || (seals & F_SEAL_WRITE))
				violations++;
			if (ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP)) {
				ret = -errno;
				break;
			}
			if (time(NULL) > round_end) {
				ret = -ETIMEDOUT;
				break;
			}
		}
		__atomic_store_n(&s.stop, true, __ATOMIC_RELEASE);
		ASSERT_EQ(0, pthread_join(thread, NULL));
		pthread_barrier_destroy(&s.start);
		rounds++;
		busy += s.busy;

		/* The seal landed, and write pins fail from then on. */
		EXPECT_EQ(0, s.err)
			TH_LOG("round %lu: F_ADD_SEALS: %s", rounds,
			       strerror(s.err));
		EXPECT_EQ(-EPERM, ret)
			TH_LOG("round %lu: write pin: %s", rounds,
			       strerror(-ret));
		if (s.err || ret != -EPERM)
			break;
		refused++;
		ret = pin(self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE);
		if (!ret)
			ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP);
		EXPECT_EQ(-EPERM, ret)
			TH_LOG("round %lu: write pin once sealed: %s", rounds,
			       strerror(-ret));
		if (ret != -EPERM)
			break;
		refused++;
		close(self->fd);
		self->fd = -1;
	}
	TH_LOG("%lu rounds: %lu write pins held, %lu refused once sealed",
	       rounds, pinned, refused);
	TH_LOG("%lu seals failed while pinned, %lu pins held while sealed",
	       busy, violations);
	EXPECT_EQ(0, violations);
	EXPECT_LT(0, rounds);

	ASSERT_EQ(0, read_pins(&after));
	EXPECT_EQ(after.acquired - before.acquired,
		  after.released - before.released);
}

TEST_F(pin_fd, movable_migrated)
{
	size_t size = 16 * MiB, nr = size / psize(), seen, in_movable, i;
	struct zone_span zones[MAX_ZONES];
	int nr_zones, pagemap;
	char *data;

	nr_zones = movable_zones(zones, MAX_ZONES);
	if (!nr_zones)
		SKIP(return, "no ZONE_MOVABLE pages (boot with movablecore=)");
	if (nr_zones > MAX_ZONES)
		nr_zones = MAX_ZONES;
	data = pattern(0, nr);
	ASSERT_NE(NULL, data);
	self->fd = memfd_with(0, size, NULL);
	ASSERT_LE(0, self->fd);
	self->map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			 self->fd, 0);
	ASSERT_NE(MAP_FAILED, self->map) {
		self->map = NULL;
	}
	self->map_size = size;
	memcpy(self->map, data, size);

	pagemap = open("/proc/self/pagemap", O_RDONLY);
	ASSERT_LE(0, pagemap);
	in_movable = pages_in_zones(self->map, nr, pagemap, zones, nr_zones,
				    &seen);
	if (!seen)
		SKIP(return, "no PFNs in /proc/self/pagemap");
	if (!in_movable)
		SKIP(return, "no page landed in ZONE_MOVABLE");
	TH_LOG("%zu of %zu pages in ZONE_MOVABLE", in_movable, nr);

	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  data);
	/* The mapping now points at the pages that were migrated and pinned. */
	EXPECT_EQ(0, pages_in_zones(self->map, nr, pagemap, zones, nr_zones,
				    &seen));
	EXPECT_EQ(nr, seen);
	for (i = 0; i < nr; i++) {
		self->map[i * psize()] ^= 0xff;
		data[i * psize()] ^= 0xff;
	}
	read_check(_metadata, self, data);
	unpin_check(_metadata, self);
	close(pagemap);
	free(data);
}

/*
 * fallocate() leaves shmem folios !uptodate and uncleared until first use;
 * the pinned pages must read as the file does: zeros. Free pages with stale
 * data first, for fallocate() to get them back.
 */
TEST_F(pin_fd, fallocated)
{
	size_t size = 4 * MiB;
	char *junk = malloc(4 * size);

	ASSERT_NE(NULL, junk);
	memset(junk, 0x5a, 4 * size);
	self->fd = memfd_with(0, 4 * size, junk);
	ASSERT_LE(0, self->fd);
	close(self->fd);
	free(junk);

	self->fd = memfd_with(0, 0, NULL);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, fallocate(self->fd, 0, 0, size));
	pin_check(_metadata, self, self->fd, 0, size, PIN_FD_TEST_FLAG_WRITE,
		  NULL);
	unpin_check(_metadata, self);
}

/*
 * Pins [0, @size) of self->fd with @flags again and again for two seconds,
 * counting the pins held in *@pinned and those refused with -EINVAL, past
 * the end of a file being truncated, in *@refused.
 */
static void pin_for_2s(struct __test_metadata *_metadata,
		       struct _test_data_pin_fd *self, size_t size,
		       unsigned int flags, unsigned long *pinned,
		       unsigned long *refused)
{
	time_t stop = time(NULL) + 2;

	while (time(NULL) < stop) {
		int ret = pin(self, self->fd, 0, size, flags);

		if (ret == -EINVAL) {
			(*refused)++;
			continue;
		}
		ASSERT_EQ(0, ret);
		(*pinned)++;
		ASSERT_EQ(0, ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP));
	}
}

/*
 * Pins with @flags race with truncation and hole punching of the same memfd
 * for two seconds: every pin either holds the whole range or fails cleanly,
 * and no pin is left behind. Read pins take no inode lock, so truncation
 * runs during them: they pin 16 pages, which fit between two truncations.
 */
static void pin_truncate_race(struct __test_metadata *_metadata,
			      struct _test_data_pin_fd *self,
			      unsigned int flags)
{
	size_t ps = psize(), size = 512 * ps, pin_size = size;
	unsigned long pinned = 0, refused = 0;
	struct pins before, after;
	pid_t child;
	int status;

	if (!(flags & PIN_FD_TEST_FLAG_WRITE))
		pin_size = 16 * ps;
	self->fd = memfd_with(0, size, NULL);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, read_pins(&before));

	child = fork();
	ASSERT_LE(0, child);
	if (!child) {
		/* Also if an assertion ends the test before it kills us. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		/* Shrink, regrow, punch and refill the file until killed. */
		for (unsigned int i = 0;; i++) {
			off_t off = (i * 37 % 512) * ps;

			if (ftruncate(self->fd, i % 3 ? size : 0) ||
			    fallocate(self->fd, FALLOC_FL_PUNCH_HOLE |
				      FALLOC_FL_KEEP_SIZE, off, 16 * ps) < 0 ||
			    pwrite(self->fd, "x", 1, off) != 1)
				continue;
		}
	}

	pin_for_2s(_metadata, self, pin_size, flags, &pinned, &refused);
	kill(child, SIGKILL);
	ASSERT_EQ(child, waitpid(child, &status, 0));
	TH_LOG("%lu %s pins held the whole range, %lu refused past EOF",
	       pinned, flags & PIN_FD_TEST_FLAG_WRITE ? "write" : "read",
	       refused);
	EXPECT_LT(0, pinned);

	ASSERT_EQ(0, read_pins(&after));
	EXPECT_EQ(after.acquired - before.acquired,
		  after.released - before.released);
}

TEST_F(pin_fd, truncate_race)
{
	pin_truncate_race(_metadata, self, PIN_FD_TEST_FLAG_WRITE);
}

/* Read pins take no inode lock: the same race, without it. */
TEST_F(pin_fd, truncate_race_read_only)
{
	pin_truncate_race(_metadata, self, 0);
}

/* Pins the whole 2 MiB hole of a hugetlb memfd, once the others are ready. */
struct hole_pinner {
	pthread_barrier_t *start;
	int gup_fd;
	int fd;
	unsigned int flags;
	int ret;
};

static void *pin_hole(void *arg)
{
	struct hole_pinner *p = arg;

	pthread_barrier_wait(p->start);
	p->ret = pin_gup(p->gup_fd, p->fd, 0, 2 * MiB, p->flags);
	return NULL;
}

/*
 * Waits up to 2 s for the free and reserved 2 MiB huge page counts to be
 * @free and @resv again, once a hugetlb file is gone.
 */
static void huge_2m_wait(unsigned long free, unsigned long resv)
{
	for (int i = 0; i < 20; i++) {
		if (read_num(FREE_HUGE_2M) == free &&
		    read_num(RESV_HUGE_2M) == resv)
			return;
		usleep(100000);
	}
}

/*
 * Opens a 2 MiB hugetlb memfd of @size bytes in self->fd, with the pool's
 * free and reserved counts from before in @free and @resv, and fills its
 * first hole once. Returns NULL, or why the test must skip: fewer than
 * @need free 2 MiB pages, or none outside ZONE_MOVABLE and CMA, where
 * holes are filled.
 */
static const char *huge_2m_memfd(struct __test_metadata *_metadata,
				 struct _test_data_pin_fd *self,
				 unsigned long need, size_t size,
				 unsigned long *free, unsigned long *resv)
{
	char buf[32];
	int ret;

	if (!read_file(FREE_HUGE_2M, buf, sizeof(buf)))
		return "no 2 MiB hugetlb pages";
	if (strtoul(buf, NULL, 10) < need)
		return "too few free 2 MiB huge pages";
	*free = read_num(FREE_HUGE_2M);
	*resv = read_num(RESV_HUGE_2M);
	self->fd = memfd_with(MFD_HUGETLB | MFD_HUGE_2MB, size, NULL);
	ASSERT_LE(0, self->fd);
	ret = pin(self, self->fd, 0, psize(), 0);
	if (ret == -ENOMEM && self->may_migrate)
		return "no free huge page outside ZONE_MOVABLE/CMA";
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP));
	return NULL;
}

/*
 * Where @size bytes read from a filled hole, with @mark written at either
 * end, first differ from that; @size if nowhere.
 */
static size_t hole_differs(const char *buf, size_t size, const uint64_t *mark)
{
	size_t m = sizeof(*mark), i;

	if (memcmp(buf, &mark[0], m))
		return 0;
	if (memcmp(buf + size - m, &mark[1], m))
		return size - m;
	for (i = m; i < size - m && !buf[i]; i++)
		;
	return i < size - m ? i : size;
}

/*
 * Read pins of a hugetlb memfd race with truncation to zero and back to
 * 2 MiB. Truncation sets i_size, then removes the folios it finds: a pin
 * that passed its size check before must not fill the hole past the new
 * end, where the folio would stay in the page cache of an empty file. Each
 * time the child has emptied the file, it checks that no block is left.
 */
TEST_F(pin_fd, hugetlb_truncate_race)
{
	unsigned long pinned = 0, refused = 0, free0, resv0;
	unsigned long *shared;	/* stop, blocks seen, truncations */
	size_t size = 2 * MiB;
	const char *skip;
	struct stat st;
	pid_t child;
	int status;

	skip = huge_2m_memfd(_metadata, self, 1, size, &free0, &resv0);
	if (skip)
		SKIP(return, "%s", skip);

	shared = mmap(NULL, psize(), PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, shared);
	child = fork();
	ASSERT_LE(0, child);
	if (!child) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		while (!__atomic_load_n(&shared[0], __ATOMIC_ACQUIRE)) {
			if (ftruncate(self->fd, 0))
				_exit(1);
			/* Room for a pin that passed its size check to fill. */
			usleep(50);
			if (fstat(self->fd, &st))
				_exit(1);
			if (st.st_blocks)
				__atomic_fetch_add(&shared[1], 1, __ATOMIC_RELAXED);
			__atomic_fetch_add(&shared[2], 1, __ATOMIC_RELEASE);
			if (ftruncate(self->fd, size))
				_exit(1);
		}
		_exit(0);
	}

	pin_for_2s(_metadata, self, psize(), 0, &pinned, &refused);
	__atomic_store_n(&shared[0], 1, __ATOMIC_RELEASE);
	ASSERT_EQ(child, waitpid(child, &status, 0));
	ASSERT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status));
	TH_LOG("%lu read pins, %lu refused past EOF, %lu truncations to 0",
	       pinned, refused, shared[2]);
	EXPECT_LT(0, pinned);
	EXPECT_EQ(0, shared[1])
		TH_LOG("the emptied file held blocks %lu times", shared[1]);
	munmap(shared, psize());

	/* No fill refused past the end kept a page or a reservation. */
	close(self->fd);
	self->fd = -1;
	huge_2m_wait(free0, resv0);
	EXPECT_EQ(free0, read_num(FREE_HUGE_2M));
	EXPECT_EQ(resv0, read_num(RESV_HUGE_2M));
}

/*
 * Pins race to fill the same hole of a hugetlb memfd: memfd_alloc_folio()
 * allocates under the hugetlb fault mutex, and the loser must find the
 * winner's page, not allocate, reserve or leak another one. Each round, two
 * threads pin a fresh 2 MiB hole at once, each through its own gup_test file,
 * both for reading, either or both for writing.
 */
TEST_F(pin_fd, hugetlb_hole_race)
{
	const uint64_t mark[2] = {
		0x686f6c6552616365ULL, 0x9e3779b97f4a7c15ULL,
	};
	size_t size = 2 * MiB, nr = size / psize(), at;
	unsigned long free0, resv0, held, rounds, done = 0;
	struct hole_pinner p[2];
	pthread_barrier_t start;
	pthread_t thread[2];
	char *got[2], *map;
	const char *skip;
	int gup[2], t;
	time_t stop;
	__u64 addr;

	skip = huge_2m_memfd(_metadata, self, 2, size, &free0, &resv0);
	if (skip)
		SKIP(return, "%s", skip);
	close(self->fd);
	self->fd = -1;
	huge_2m_wait(free0, resv0);
	EXPECT_EQ(free0, read_num(FREE_HUGE_2M));
	EXPECT_EQ(resv0, read_num(RESV_HUGE_2M));

	/* A second pin set; the teardown's close() of it unpins. */
	self->fd2 = open(GUP_TEST_FILE, O_RDWR);
	ASSERT_LE(0, self->fd2);
	gup[0] = self->gup_fd;
	gup[1] = self->fd2;
	for (t = 0; t < 2; t++) {
		got[t] = malloc(size);
		ASSERT_NE(NULL, got[t]);
	}

	ASSERT_EQ(0, read_pins(&self->base));
	stop = time(NULL) + 4;
	for (rounds = 0; rounds < 30 && time(NULL) < stop; rounds++) {
		free0 = read_num(FREE_HUGE_2M);
		resv0 = read_num(RESV_HUGE_2M);
		self->fd = memfd_with(MFD_HUGETLB | MFD_HUGE_2MB, size, NULL);
		ASSERT_LE(0, self->fd);
		ASSERT_EQ(0, pthread_barrier_init(&start, NULL, 2));
		for (t = 0; t < 2; t++) {
			p[t] = (struct hole_pinner){
				.start = &start,
				.gup_fd = gup[t],
				.fd = self->fd,
				.flags = (rounds >> t) & 1 ?
					 PIN_FD_TEST_FLAG_WRITE : 0,
			};
			ASSERT_EQ(0, pthread_create(&thread[t], NULL,
						    pin_hole, &p[t]));
		}
		for (t = 0; t < 2; t++)
			ASSERT_EQ(0, pthread_join(thread[t], NULL));
		pthread_barrier_destroy(&start);
		held = read_num(FREE_HUGE_2M);
		for (t = 0; t < 2; t++) {
			ASSERT_EQ(0, p[t].ret)
				TH_LOG("round %lu: %s pin %d: %s", rounds,
				       p[t].flags ? "write" : "read", t,
				       strerror(-p[t].ret));
		}

		/* One page was allocated for both, not one each. */
		EXPECT_EQ(free0 - 1, held)
			TH_LOG("round %lu: %lu free huge pages, then %lu",
			       rounds, free0, held);

		/* Both hold the file's page, and read what is written to it. */
		map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED,
			   self->fd, 0);
		ASSERT_NE(MAP_FAILED, map);
		memcpy(map, &mark[0], sizeof(mark[0]));
		memcpy(map + size - sizeof(mark[1]), &mark[1], sizeof(mark[1]));
		munmap(map, size);
		for (t = 0; t < 2; t++) {
			memset(got[t], 0xa5, size);
			addr = (uintptr_t)got[t];
			ASSERT_EQ(0, ioctl(gup[t], PIN_LONGTERM_TEST_READ,
					   &addr));
			at = hole_differs(got[t], size, mark);
			EXPECT_EQ(size, at)
				TH_LOG("round %lu: pin %d differs at byte %zu",
				       rounds, t, at);
		}

		for (t = 0; t < 2; t++)
			ASSERT_EQ(0, ioctl(gup[t], PIN_LONGTERM_TEST_STOP));
		done++;
		close(self->fd);
		self->fd = -1;

		/* The page and its reservation went with the file. */
		huge_2m_wait(free0, resv0);
		EXPECT_EQ(free0, read_num(FREE_HUGE_2M))
			TH_LOG("round %lu: free huge pages", rounds);
		EXPECT_EQ(resv0, read_num(RESV_HUGE_2M))
			TH_LOG("round %lu: reserved huge pages", rounds);
		if (_metadata->exit_code != KSFT_PASS)
			break;
	}
	TH_LOG("%lu rounds of two pins racing to fill a 2 MiB hole", done);
	EXPECT_LT(0, done);
	check_pins(_metadata, self, 2 * nr * done, 2 * nr * done);
	for (t = 0; t < 2; t++)
		free(got[t]);
}

/*
 * RLIMIT_MEMLOCK accounting: PIN_FD_TEST_FLAG_ACCOUNT. The pins are taken by
 * workers, child processes of a fresh uid or of root, through gup_test fds
 * that the test process opened as root and shares with them: the test
 * process reads the system-wide pin counters (stat_refresh needs root) and
 * the workers' VmPin, and the pins stay whether or not their worker lives.
 * What is charged to the fresh uid is its quota not left: the most that a
 * new process of the uid can pin with accounting.
 */
#define NR_GUP		4	/* gup_test opens: one pin set each */
#define NR_WORKERS	3
#define LIMIT		16	/* RLIMIT_MEMLOCK of the workers, in pages */
/* Far from the ids of real users and of subordinate (container) ranges. */
#define FRESH_UID_BASE	0x40000000

struct worker {
	pid_t pid;
	int sock;		/* SOCK_SEQPACKET: struct gup_req, then int */
	int memfd;		/* the memfd to pin, shared */
};

/* A gup_test ioctl for a worker to run; it replies 0 or -errno. */
struct gup_req {
	unsigned long cmd;
	int gup_fd;
	struct pin_fd_test args;
};

FIXTURE(memlock)
{
	int gup[NR_GUP];
	int probe_gup;		/* for the quota probes */
	int memfd;		/* 2 * LIMIT pages */
	uid_t uid;		/* no process, so no user_struct, before ours */
	struct worker worker[NR_WORKERS];
	struct pins base;
	unsigned long tainted;
};

static void unpin_all(struct _test_data_memlock *self)
{
	for (int i = 0; i < NR_GUP; i++)
		if (self->gup[i] >= 0)
			ioctl(self->gup[i], PIN_LONGTERM_TEST_STOP);
}

static int uid_charged(struct _test_data_memlock *self);

FIXTURE_SETUP(memlock)
{
	int i, ret;

	for (i = 0; i < NR_GUP; i++)
		self->gup[i] = -1;
	self->probe_gup = -1;
	self->memfd = -1;
	if (geteuid())
		SKIP(return, "needs root");
	for (i = 0; i < NR_GUP; i++) {
		self->gup[i] = open(GUP_TEST_FILE, O_RDWR);
		if (self->gup[i] < 0)
			SKIP(return, "%s: %s (needs CONFIG_GUP_TEST, debugfs)",
			     GUP_TEST_FILE, strerror(errno));
	}
	self->probe_gup = open(GUP_TEST_FILE, O_RDWR);
	ASSERT_LE(0, self->probe_gup);
	self->memfd = memfd_with(0, 2 * LIMIT * psize(), NULL);
	ASSERT_LE(0, self->memfd);
	/*
	 * Fill its holes and move it out of ZONE_MOVABLE now, so that later
	 * pins fail with ENOMEM for the limit only, not for a migration.
	 */
	ASSERT_EQ(0, pin_gup(self->gup[0], self->memfd, 0, 2 * LIMIT * psize(),
			     0));
	ASSERT_EQ(0, ioctl(self->gup[0], PIN_LONGTERM_TEST_STOP));
	ret = pin_gup(self->gup[0], self->memfd, 0, psize(),
		      PIN_FD_TEST_FLAG_ACCOUNT);
	if (ret == -EINVAL)
		SKIP(return, "gup_test has no PIN_FD_TEST_FLAG_ACCOUNT");
	ASSERT_EQ(0, ret);
	ASSERT_EQ(0, ioctl(self->gup[0], PIN_LONGTERM_TEST_STOP));

	self->uid = FRESH_UID_BASE + getpid();
	self->tainted = read_num("/proc/sys/kernel/tainted");
	ASSERT_EQ(0, read_pins(&self->base));
	ASSERT_EQ(0, uid_charged(self)) TH_LOG("uid %u is in use", self->uid);
}

FIXTURE_TEARDOWN(memlock)
{
	for (int i = 0; i < NR_WORKERS; i++) {
		if (self->worker[i].pid <= 0)
			continue;
		kill(self->worker[i].pid, SIGKILL);
		waitpid(self->worker[i].pid, NULL, 0);
		close(self->worker[i].sock);
	}
	/* The pins go with the gup_test fds, whoever took them. */
	unpin_all(self);
	for (int i = 0; i < NR_GUP; i++)
		if (self->gup[i] >= 0)
			close(self->gup[i]);
	if (self->probe_gup >= 0)
		close(self->probe_gup);
	if (self->memfd >= 0)
		close(self->memfd);
}

/*
 * Gives the caller RLIMIT_MEMLOCK @limit pages and, unless @uid is 0 (stay
 * root), makes it a process of @uid with CAP_IPC_LOCK as its only capability
 * if @ipc_lock, or none. Returns 0 or -errno.
 */
static int become(uid_t uid, bool ipc_lock, size_t limit)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3] = {};
	struct rlimit rl = { limit * psize(), limit * psize() };
	int i = CAP_TO_INDEX(CAP_IPC_LOCK);

	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		return -errno;
	if (!uid)
		return 0;
	/* Leaving uid 0 clears the capabilities, unless they are kept. */
	if ((ipc_lock && prctl(PR_SET_KEEPCAPS, 1)) || setgroups(0, NULL) ||
	    setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
		return -errno;
	if (!ipc_lock)
		return 0;
	caps[i].permitted = CAP_TO_MASK(CAP_IPC_LOCK);
	caps[i].effective = CAP_TO_MASK(CAP_IPC_LOCK);
	return syscall(SYS_capset, &hdr, caps) ? -errno : 0;
}

/* A field of /proc/@pid/status, such as "VmPin:" (kB), in @base; or -1. */
static long long status_num(pid_t pid, const char *key, int base)
{
	char path[32];

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	return proc_num(path, key, base);
}

/*
 * Forks @w: a process made by become(@uid, @ipc_lock, LIMIT) that runs the
 * gup_test ioctls it is sent until its socket closes.
 */
static void start_worker(struct __test_metadata *_metadata,
			 struct _test_data_memlock *self, struct worker *w,
			 uid_t uid, bool ipc_lock)
{
	struct gup_req req;
	int sv[2], ret;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	w->memfd = self->memfd;
	w->pid = fork();
	ASSERT_LE(0, w->pid);
	if (!w->pid) {
		close(sv[0]);
		ret = become(uid, ipc_lock, LIMIT);
		if (send(sv[1], &ret, sizeof(ret), 0) != sizeof(ret) || ret)
			_exit(1);
		while (recv(sv[1], &req, sizeof(req), 0) == sizeof(req)) {
			ret = ioctl(req.gup_fd, req.cmd, &req.args) ? -errno : 0;
			if (send(sv[1], &ret, sizeof(ret), 0) != sizeof(ret))
				break;
		}
		_exit(0);
	}
	close(sv[1]);
	w->sock = sv[0];
	ASSERT_EQ(sizeof(ret), recv(w->sock, &ret, sizeof(ret), 0));
	ASSERT_EQ(0, ret) TH_LOG("worker of uid %u: %s", uid, strerror(-ret));
	/* What the tests rely on: root, or exactly the capabilities asked. */
	if (uid)
		ASSERT_EQ(ipc_lock ? 1ULL << CAP_IPC_LOCK : 0,
			  status_num(w->pid, "CapEff:", 16));
}

static int worker_run(struct worker *w, const struct gup_req *req)
{
	int ret;

	if (send(w->sock, req, sizeof(*req), 0) != sizeof(*req) ||
	    recv(w->sock, &ret, sizeof(ret), 0) != sizeof(ret))
		return -EPIPE;
	return ret;
}

/*
 * Has @w pin the first @pages pages of the memfd through @gup_fd, charged to
 * RLIMIT_MEMLOCK if @account. Returns 0 or -errno.
 */
static int worker_pin(struct worker *w, int gup_fd, size_t pages,
		      bool account)
{
	struct gup_req req = {
		.cmd = PIN_FD_LONGTERM_TEST_START,
		.gup_fd = gup_fd,
		.args = {
			.fd = w->memfd, .size = pages * psize(),
			.flags = account ? PIN_FD_TEST_FLAG_ACCOUNT : 0,
		},
	};

	return worker_run(w, &req);
}

/* Same with PIN_FD_BENCHMARK: pins @per_call pages at a time, then unpins. */
static int worker_benchmark(struct worker *w, int gup_fd, size_t pages,
			    unsigned int per_call)
{
	struct gup_req req = {
		.cmd = PIN_FD_BENCHMARK,
		.gup_fd = gup_fd,
		.args = {
			.fd = w->memfd, .size = pages * psize(),
			.flags = PIN_FD_TEST_FLAG_ACCOUNT,
			.nr_pages_per_call = per_call,
		},
	};

	return worker_run(w, &req);
}

static long long pins_held(const struct pins *p)
{
	return p->acquired - p->released;
}

/*
 * The memlock quota left to the caller: the most pages, up to 2 * LIMIT, that
 * a charged pin through @gup_fd takes (and drops again), or -errno.
 */
static int quota_left(int gup_fd, int memfd)
{
	int n, ret;

	for (n = 2 * LIMIT; n > 0; n--) {
		ret = pin_gup(gup_fd, memfd, 0, n * psize(),
			      PIN_FD_TEST_FLAG_ACCOUNT);
		if (ret == -ENOMEM)
			continue;
		if (ret)
			return ret;
		if (ioctl(gup_fd, PIN_LONGTERM_TEST_STOP))
			return -errno;
		break;
	}
	return n;
}

/*
 * The pages charged to self->uid's memlock quota: what a new process of the
 * uid, without CAP_IPC_LOCK and with twice the workers' RLIMIT_MEMLOCK, finds
 * missing from its quota, so that a charge past LIMIT shows too. Or -errno.
 */
static int uid_charged(struct _test_data_memlock *self)
{
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		int left = become(self->uid, false, 2 * LIMIT);

		if (!left)
			left = quota_left(self->probe_gup, self->memfd);
		_exit(left < 0 ? 255 : left);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
		return -EIO;
	return 2 * LIMIT - WEXITSTATUS(status);
}

/*
 * Checks that, since self->base, @pins more pages are pinned and @charged
 * are charged to self->uid, and, unless @w is NULL, that @w's VmPin is
 * @vm_pin pages (and VmLck, which pins never use, is zero).
 */
static void check_memlock(struct __test_metadata *_metadata,
			  struct _test_data_memlock *self,
			  const struct worker *w, long long pins,
			  long long charged, long long vm_pin)
{
	long long vm_pin_kb = w ? status_num(w->pid, "VmPin:", 10) : -1;
	long long pinned, now_charged;
	struct pins now;

	ASSERT_EQ(0, read_pins(&now));
	pinned = pins_held(&now) - pins_held(&self->base);
	now_charged = uid_charged(self);
	if (w)
		TH_LOG("pinned %+lld, charged %lld pages; VmPin %lld kB",
		       pinned, now_charged, vm_pin_kb);
	else
		TH_LOG("pinned %+lld, charged %lld pages", pinned, now_charged);
	EXPECT_EQ(pins, pinned);
	EXPECT_EQ(charged, now_charged);
	if (!w)
		return;
	EXPECT_EQ(vm_pin * psize() / 1024, vm_pin_kb);
	EXPECT_EQ(0, status_num(w->pid, "VmLck:", 10));
}

/*
 * Checks that every pin and charge since self->base is gone, waiting up to
 * 5 s for the last fput, which may be deferred; and that no WARN, such as
 * one for a memlock counter going negative, tainted the kernel.
 */
static void check_released(struct __test_metadata *_metadata,
			   struct _test_data_memlock *self)
{
	struct pins now;

	for (int i = 0; i < 50; i++) {
		ASSERT_EQ(0, read_pins(&now));
		if (pins_held(&now) == pins_held(&self->base) &&
		    !uid_charged(self))
			break;
		usleep(100000);
	}
	check_memlock(_metadata, self, NULL, 0, 0, 0);
	EXPECT_EQ(self->tainted, read_num("/proc/sys/kernel/tainted"));
}

/* Sends @nr fds over @sock with SCM_RIGHTS. Returns 0 or -errno. */
static int send_fds(int sock, const int *fds, int nr)
{
	union {
		char buf[CMSG_SPACE(NR_GUP * sizeof(int))];
		struct cmsghdr align;
	} u = {};
	struct iovec iov = { .iov_base = "f", .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf,
		.msg_controllen = CMSG_SPACE(nr * sizeof(int)),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);

	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(nr * sizeof(int));
	memcpy(CMSG_DATA(cmsg), fds, nr * sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -errno;
}

/* Receives up to NR_GUP fds from @sock. Returns how many, or -errno. */
static int recv_fds(int sock, int *fds)
{
	union {
		char buf[CMSG_SPACE(NR_GUP * sizeof(int))];
		struct cmsghdr align;
	} u;
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	int nr;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) < 0)
		return -errno;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET ||
	    cmsg->cmsg_type != SCM_RIGHTS)
		return 0;
	nr = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	memcpy(fds, CMSG_DATA(cmsg), nr * sizeof(int));
	return nr;
}

/*
 * Limits hold exactly, over several pin sets; a refused pin leaves nothing;
 * accounting is asked for; and unpinning returns the quota.
 */
TEST_F(memlock, limit)
{
	struct worker *w = &self->worker[0];

	start_worker(_metadata, self, w, self->uid, false);

	/* More than the limit in one go. */
	EXPECT_EQ(-ENOMEM, worker_pin(w, self->gup[0], LIMIT + 1, true));
	check_memlock(_metadata, self, w, 0, 0, 0);

	/* The limit exactly, in two pin sets. */
	ASSERT_EQ(0, worker_pin(w, self->gup[0], 1, true));
	ASSERT_EQ(0, worker_pin(w, self->gup[1], LIMIT - 1, true));
	check_memlock(_metadata, self, w, LIMIT, LIMIT, LIMIT);

	/* One page more is refused, with nothing left pinned or charged. */
	EXPECT_EQ(-ENOMEM, worker_pin(w, self->gup[2], 1, true));
	check_memlock(_metadata, self, w, LIMIT, LIMIT, LIMIT);

	/* Accounting is opt-in: without the flag, nothing limits the pin. */
	EXPECT_EQ(0, worker_pin(w, self->gup[2], 1, false));
	check_memlock(_metadata, self, w, LIMIT + 1, LIMIT, LIMIT);
	ASSERT_EQ(0, ioctl(self->gup[2], PIN_LONGTERM_TEST_STOP));

	/* The quota returns to the pinner, even if another process unpins. */
	ASSERT_EQ(0, ioctl(self->gup[1], PIN_LONGTERM_TEST_STOP));
	check_memlock(_metadata, self, w, 1, 1, 1);
	EXPECT_EQ(0, worker_pin(w, self->gup[1], LIMIT - 1, true));
	EXPECT_EQ(-ENOMEM, worker_pin(w, self->gup[2], 1, true));
	check_memlock(_metadata, self, w, LIMIT, LIMIT, LIMIT);

	unpin_all(self);
	check_released(_metadata, self);
}

/*
 * In a child: opens gup_test twice, becomes a process of self->uid, pins
 * LIMIT pages through them with accounting and sends them over @sock.
 * Returns the child's exit status.
 */
static int pin_and_pass(struct _test_data_memlock *self, int sock)
{
	int gup[2] = {
		open(GUP_TEST_FILE, O_RDWR), open(GUP_TEST_FILE, O_RDWR),
	};

	if (gup[0] < 0 || gup[1] < 0 || become(self->uid, false, LIMIT))
		return 1;
	if (pin_gup(gup[0], self->memfd, 0, psize(), PIN_FD_TEST_FLAG_ACCOUNT) ||
	    pin_gup(gup[1], self->memfd, 0, (LIMIT - 1) * psize(),
		    PIN_FD_TEST_FLAG_ACCOUNT))
		return 2;
	return send_fds(sock, gup, 2) ? 3 : 0;
}

/*
 * The pinner exits while its pins live on, in gup_test fds in flight over a
 * unix socket: the charge stays with its user until they are closed, then
 * exactly all of it comes back.
 */
TEST_F(memlock, pinner_exits)
{
	struct worker *w = &self->worker[0];
	int sv[2], fds[NR_GUP], status;
	pid_t pid;

	/*
	 * A process of self->uid lives throughout: it keeps the user_struct,
	 * and with it any charge that would be leaked, or returned twice.
	 */
	start_worker(_metadata, self, w, self->uid, false);
	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	pid = fork();
	ASSERT_LE(0, pid);
	if (!pid)
		_exit(pin_and_pass(self, sv[1]));
	close(sv[1]);
	/* Reaped before its fds are received: nothing but the socket has them. */
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	check_memlock(_metadata, self, w, LIMIT, LIMIT, 0);
	EXPECT_EQ(-ENOMEM, worker_pin(w, self->gup[0], 1, true));

	ASSERT_EQ(2, recv_fds(sv[0], fds));
	close(fds[0]);
	close(fds[1]);
	close(sv[0]);
	check_released(_metadata, self);

	EXPECT_EQ(0, worker_pin(w, self->gup[0], LIMIT, true));
	EXPECT_EQ(-ENOMEM, worker_pin(w, self->gup[1], 1, true));
	check_memlock(_metadata, self, w, LIMIT, LIMIT, LIMIT);
}

/*
 * CAP_IPC_LOCK lifts the limit and leaves the user's quota alone; the pins
 * still show in VmPin.
 */
TEST_F(memlock, ipc_lock)
{
	struct worker *root = &self->worker[0], *capable = &self->worker[1];
	struct worker *user = &self->worker[2];

	start_worker(_metadata, self, root, 0, false);
	EXPECT_EQ(0, worker_pin(root, self->gup[0], 2 * LIMIT, true));
	check_memlock(_metadata, self, root, 2 * LIMIT, 0, 2 * LIMIT);

	/* Not root, and CAP_IPC_LOCK only. */
	start_worker(_metadata, self, capable, self->uid, true);
	EXPECT_EQ(0, worker_pin(capable, self->gup[1], 2 * LIMIT, true));
	check_memlock(_metadata, self, capable, 4 * LIMIT, 0, 2 * LIMIT);

	/* Its user's other processes still have all of their quota. */
	start_worker(_metadata, self, user, self->uid, false);
	EXPECT_EQ(0, worker_pin(user, self->gup[2], LIMIT, true));
	EXPECT_EQ(-ENOMEM, worker_pin(user, self->gup[3], 1, true));
	check_memlock(_metadata, self, user, 5 * LIMIT, LIMIT, LIMIT);

	unpin_all(self);
	check_released(_metadata, self);
}

/*
 * Registers @pages pages of @buf as an io_uring fixed buffer of @ring.
 * Returns 0 or -errno.
 */
static int ring_register(int ring, char *buf, size_t pages)
{
	struct iovec iov = { .iov_base = buf, .iov_len = pages * psize() };

	return syscall(__NR_io_uring_register, ring, IORING_REGISTER_BUFFERS,
		       &iov, 1) ? -errno : 0;
}

/*
 * io_uring's registered buffers and pin_user_pages_fd() charge one quota,
 * through one helper: a process of a fresh user registers buffers and pins
 * a memfd, and the quota its pins see shrinks and grows by exactly the
 * pages it registers and unregisters (what is left after the ring's own
 * memory, which io_uring charges too).
 */
TEST_F(memlock, io_uring)
{
	struct io_uring_params params = {};
	int *seen, status, ring, before;
	char *buf;
	pid_t child;

	/* Keeps the user_struct, and any charge leaked to it, to the end. */
	start_worker(_metadata, self, &self->worker[0], self->uid, false);

	ring = syscall(__NR_io_uring_setup, 1, &params);
	if (ring < 0)
		SKIP(return, "io_uring_setup: %s", strerror(errno));
	close(ring);

	/* quota, after registering 4 pages, after unregistering, errnos */
	seen = mmap(NULL, psize(), PROT_READ | PROT_WRITE,
		    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, seen);
	buf = mmap(NULL, 2 * LIMIT * psize(), PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, buf);
	memset(buf, 1, 2 * LIMIT * psize());

	child = fork();
	ASSERT_LE(0, child);
	if (!child) {
		memset(&params, 0, sizeof(params));
		if (become(self->uid, false, LIMIT))
			_exit(2);
		ring = syscall(__NR_io_uring_setup, 1, &params);
		if (ring < 0)
			_exit(3);
		before = quota_left(self->gup[0], self->memfd);
		seen[0] = before;
		if (before < 5)
			_exit(4);
		seen[3] = ring_register(ring, buf, 4);
		seen[1] = quota_left(self->gup[0], self->memfd);
		seen[4] = syscall(__NR_io_uring_register, ring,
				  IORING_UNREGISTER_BUFFERS, NULL, 0) ?
			  -errno : 0;
		seen[2] = quota_left(self->gup[0], self->memfd);
		/* More than is left is refused, and leaves nothing. */
		seen[5] = ring_register(ring, buf, before + 1);
		seen[6] = quota_left(self->gup[0], self->memfd);
		close(ring);
		_exit(0);
	}
	ASSERT_EQ(child, waitpid(child, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	TH_LOG("quota %d pages; %d with 4 registered, %d after, %d after a refusal",
	       seen[0], seen[1], seen[2], seen[6]);
	EXPECT_EQ(0, seen[3]);
	EXPECT_EQ(seen[0] - 4, seen[1]);
	EXPECT_EQ(0, seen[4]);
	EXPECT_EQ(seen[0], seen[2]);
	EXPECT_EQ(-ENOMEM, seen[5]);
	EXPECT_EQ(seen[0], seen[6]);
	munmap(buf, 2 * LIMIT * psize());
	munmap(seen, psize());
	check_released(_metadata, self);
}

/*
 * PIN_FD_BENCHMARK pins a chunk at a time under one charge, and unpins and
 * uncharges it all before it returns, also when a chunk is refused.
 */
TEST_F(memlock, benchmark)
{
	struct worker *w = &self->worker[0];

	start_worker(_metadata, self, w, self->uid, false);
	EXPECT_EQ(0, worker_benchmark(w, self->gup[0], LIMIT, 3));
	check_memlock(_metadata, self, w, 0, 0, 0);

	/* The sixth chunk goes over the limit. */
	EXPECT_EQ(-ENOMEM, worker_benchmark(w, self->gup[0], LIMIT + 1, 3));
	check_memlock(_metadata, self, w, 0, 0, 0);

	/* What is pinned elsewhere counts. */
	ASSERT_EQ(0, worker_pin(w, self->gup[1], 1, true));
	EXPECT_EQ(-ENOMEM, worker_benchmark(w, self->gup[0], LIMIT, 3));
	check_memlock(_metadata, self, w, 1, 1, 1);

	unpin_all(self);
	check_released(_metadata, self);
}

TEST_HARNESS_MAIN
