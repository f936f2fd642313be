// SPDX-License-Identifier: GPL-2.0
/*
 * The udmabuf uAPI, checked on every device that offers it: /dev/udmabuf
 * and /dev/udmabuf_rs by default, or the devices named in $UDMABUF_DEVS
 * (separated by spaces). Each bad input must fail with the errno of the C
 * driver; data written through the memfd before the buffer exists (when the
 * pins may migrate the pages, out of ZONE_MOVABLE with movablecore=) and
 * after must read back through the dma-buf's mmap, with CPU access syncs;
 * and the pins must balance once the buffers are gone, also when the
 * process holding them is killed. The pin counters are system-wide: run
 * the test alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <linux/dma-buf.h>
#include <linux/udmabuf.h>

#include "kselftest_harness.h"

#define MAX_DEVS	4

static const char *devs[MAX_DEVS];
static int nr_devs;

static void find_devs(void)
{
	static char buf[256];
	const char *env = getenv("UDMABUF_DEVS");
	char *tok, *save;

	if (nr_devs)
		return;
	snprintf(buf, sizeof(buf), "%s",
		 env && *env ? env : "/dev/udmabuf /dev/udmabuf_rs");
	for (tok = strtok_r(buf, " ", &save); tok && nr_devs < MAX_DEVS;
	     tok = strtok_r(NULL, " ", &save))
		devs[nr_devs++] = tok;
}

/* Reads a /proc/vmstat counter after folding the per-CPU deltas. */
static long read_vmstat(const char *name)
{
	char line[128];
	long val = -1;
	size_t len = strlen(name);
	FILE *f;
	int fd;

	fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (fd >= 0) {
		/* EINVAL if a counter is negative, after folding them all. */
		bool folded = write(fd, "1", 1) == 1 || errno == EINVAL;

		close(fd);
		if (!folded)
			return -1;
	}
	f = fopen("/proc/vmstat", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, name, len) && line[len] == ' ')
			val = atol(line + len + 1);
	fclose(f);
	return val;
}

static long pins_held(void)
{
	return read_vmstat("nr_foll_pin_acquired") - read_vmstat("nr_foll_pin_released");
}

static int memfd_sized(size_t size, unsigned int seals, bool huge)
{
	int fd = memfd_create("udmabuf-uapi",
			      MFD_ALLOW_SEALING | (huge ? MFD_HUGETLB : 0));

	if (fd < 0)
		return -1;
	if (ftruncate(fd, size) || (seals && fcntl(fd, F_ADD_SEALS, seals))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Returns the dma-buf fd, or -errno. */
static int create(int dev, int memfd, uint64_t offset, uint64_t size)
{
	struct udmabuf_create c = {
		.memfd = memfd, .flags = UDMABUF_FLAGS_CLOEXEC,
		.offset = offset, .size = size,
	};
	int ret = ioctl(dev, UDMABUF_CREATE, &c);

	return ret < 0 ? -errno : ret;
}

static int create_list(int dev, int memfd, unsigned int count, size_t item)
{
	struct udmabuf_create_list *list;
	unsigned int i;
	int ret;

	list = calloc(1, sizeof(*list) + count * sizeof(list->list[0]));
	if (!list)
		return -ENOMEM;
	list->count = count;
	for (i = 0; i < count; i++) {
		list->list[i].memfd = memfd;
		list->list[i].offset = i * item;
		list->list[i].size = item;
	}
	ret = ioctl(dev, UDMABUF_CREATE_LIST, list);
	ret = ret < 0 ? -errno : ret;
	free(list);
	return ret;
}

FIXTURE(udmabuf) {
	int nr;			/* devices that could be opened */
	int dev[MAX_DEVS];
	const char *name[MAX_DEVS];
	long page;
};

FIXTURE_SETUP(udmabuf)
{
	find_devs();
	self->page = sysconf(_SC_PAGESIZE);
	self->nr = 0;
	for (int i = 0; i < nr_devs; i++) {
		int fd = open(devs[i], O_RDWR);

		if (fd < 0) {
			TH_LOG("%s: %s, not tested", devs[i], strerror(errno));
			continue;
		}
		self->name[self->nr] = devs[i];
		self->dev[self->nr++] = fd;
	}
	if (!self->nr)
		SKIP(return, "no udmabuf device");
}

FIXTURE_TEARDOWN(udmabuf)
{
	for (int i = 0; i < self->nr; i++)
		close(self->dev[i]);
}

/*
 * Every device must give the errno listed, and nothing may stay pinned. The
 * pin counters are system-wide: the test must run alone.
 */
#define EXPECT_ALL(expected, call) do {					\
	long __held = pins_held();					\
	for (int d = 0; d < self->nr; d++) {				\
		int dev = self->dev[d];					\
		int __ret = (call);					\
		if (__ret >= 0)						\
			close(__ret);					\
		EXPECT_EQ(expected, __ret) TH_LOG("%s: %s", self->name[d], #call); \
	}								\
	EXPECT_EQ(__held, pins_held());					\
} while (0)

/* Whether every module has size_limit_mb=4096 on the command line. */
static bool size_limit_4096(int nr, const char **names)
{
	char cmdline[4096] = "", want[64];
	int fd = open("/proc/cmdline", O_RDONLY);

	if (fd < 0 || read(fd, cmdline, sizeof(cmdline) - 1) < 0)
		return false;
	close(fd);
	for (int i = 0; i < nr; i++) {
		snprintf(want, sizeof(want), "%s.size_limit_mb=4096",
			 strrchr(names[i], '/') + 1);
		if (!strstr(cmdline, want))
			return false;
	}
	return true;
}

TEST_F(udmabuf, bad_inputs)
{
	size_t ps = self->page;
	int good = memfd_sized(4 * ps, F_SEAL_SHRINK, false);
	int noseal = memfd_sized(4 * ps, 0, false);
	int wsealed = memfd_sized(4 * ps, F_SEAL_SHRINK | F_SEAL_WRITE, false);
	int fwsealed = memfd_sized(4 * ps, F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE,
				   false);
	int big = memfd_sized((size_t)4097 << 20, F_SEAL_SHRINK, false);
	int closed = memfd_sized(ps, F_SEAL_SHRINK, false);
	int regular = open("/proc/self/status", O_RDONLY);
	int pipefd[2];

	ASSERT_LE(0, good);
	ASSERT_LE(0, noseal);
	ASSERT_LE(0, wsealed);
	ASSERT_LE(0, fwsealed);
	ASSERT_LE(0, big);
	ASSERT_LE(0, closed);
	ASSERT_LE(0, regular);
	ASSERT_EQ(0, pipe(pipefd));
	close(closed);

	EXPECT_ALL(-EBADFD, create(dev, regular, 0, ps));
	EXPECT_ALL(-EBADFD, create(dev, pipefd[0], 0, ps));
	EXPECT_ALL(-EBADFD, create(dev, closed, 0, ps));
	EXPECT_ALL(-EINVAL, create(dev, noseal, 0, ps));
	EXPECT_ALL(-EINVAL, create(dev, wsealed, 0, ps));
	EXPECT_ALL(-EINVAL, create(dev, fwsealed, 0, ps));
	EXPECT_ALL(-EINVAL, create(dev, good, ps / 2, ps));
	EXPECT_ALL(-EINVAL, create(dev, good, 0, ps / 2));
	EXPECT_ALL(-EINVAL, create(dev, good, 0, 0));
	EXPECT_ALL(-EINVAL, create(dev, good, 2 * ps, 4 * ps));
	EXPECT_ALL(-EINVAL, create(dev, good, 8 * ps, ps));
	EXPECT_ALL(-EINVAL, create(dev, good, -ps, ps));
	/* Without the limit, this would pin 4 GiB. */
	if (size_limit_4096(self->nr, self->name))
		EXPECT_ALL(-EINVAL, create(dev, big, 0, (size_t)4097 << 20));
	else
		TH_LOG("no <module>.size_limit_mb=4096 on the command line: not checked");
	EXPECT_ALL(-EINVAL, create_list(dev, good, 1025, 0));
	EXPECT_ALL(-EINVAL, create_list(dev, good, 0, ps));
	EXPECT_ALL(-EFAULT, ioctl(dev, UDMABUF_CREATE, (void *)8) < 0 ? -errno : 0);
	EXPECT_ALL(-EFAULT, ioctl(dev, UDMABUF_CREATE_LIST, (void *)8) < 0 ?
		   -errno : 0);
	EXPECT_ALL(-ENOTTY, ioctl(dev, _IO('u', 0x44)) < 0 ? -errno : 0);

	/* And the good ones work, with UDMABUF_FLAGS_CLOEXEC honoured. */
	for (int d = 0; d < self->nr; d++) {
		int buf = create(self->dev[d], good, 0, 4 * ps);

		EXPECT_LE(0, buf) TH_LOG("%s: create", self->name[d]);
		if (buf >= 0) {
			EXPECT_EQ(FD_CLOEXEC, fcntl(buf, F_GETFD) & FD_CLOEXEC);
			close(buf);
		}
		buf = create_list(self->dev[d], good, 4, ps);
		EXPECT_LE(0, buf) TH_LOG("%s: list of 4", self->name[d]);
		if (buf >= 0) {
			EXPECT_EQ(0, fcntl(buf, F_GETFD) & FD_CLOEXEC);
			close(buf);
		}
	}

	close(good);
	close(noseal);
	close(wsealed);
	close(fwsealed);
	close(big);
	close(regular);
	close(pipefd[0]);
	close(pipefd[1]);
}

/* Fills @size bytes at @p with a pattern that depends on @seed. */
static void fill(unsigned char *p, size_t size, unsigned int seed)
{
	for (size_t i = 0; i < size; i++)
		p[i] = (unsigned char)(i * 7 + seed + i / 4096);
}

static bool same(const unsigned char *p, size_t size, unsigned int seed)
{
	for (size_t i = 0; i < size; i++)
		if (p[i] != (unsigned char)(i * 7 + seed + i / 4096))
			return false;
	return true;
}

static void check_data(struct __test_metadata *_metadata, int dev,
		       const char *name, bool huge, size_t size)
{
	struct dma_buf_sync sync = { 0 };
	unsigned char *mem, *buf;
	long held = pins_held();
	int memfd, dmabuf;

	memfd = memfd_sized(size, F_SEAL_SHRINK, huge);
	ASSERT_LE(0, memfd) TH_LOG("%s memfd of %zu bytes", huge ? "hugetlb" : "shmem", size);
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	/* Written before the pins: the pages may migrate as they are pinned. */
	fill(mem, size, 1);
	dmabuf = create(dev, memfd, 0, size);
	ASSERT_LE(0, dmabuf) TH_LOG("%s: create: %s", name, strerror(-dmabuf));
	EXPECT_LT(held, pins_held());

	buf = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, dmabuf, 0);
	ASSERT_NE(MAP_FAILED, buf) TH_LOG("%s: mmap", name);
	sync.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ;
	EXPECT_EQ(0, ioctl(dmabuf, DMA_BUF_IOCTL_SYNC, &sync));
	EXPECT_TRUE(same(buf, size, 1)) TH_LOG("%s: data written before pinning", name);
	sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ;
	EXPECT_EQ(0, ioctl(dmabuf, DMA_BUF_IOCTL_SYNC, &sync));

	/* Written after the pins, through the memfd and through the dma-buf. */
	fill(mem, size, 2);
	EXPECT_TRUE(same(buf, size, 2)) TH_LOG("%s: memfd write", name);
	fill(buf, size, 3);
	EXPECT_TRUE(same(mem, size, 3)) TH_LOG("%s: dma-buf write", name);

	/* A mapping at an offset into the buffer. */
	munmap(buf, size);
	buf = mmap(NULL, size / 2, PROT_READ, MAP_SHARED, dmabuf, size / 2);
	ASSERT_NE(MAP_FAILED, buf) TH_LOG("%s: mmap at an offset", name);
	EXPECT_EQ(0, memcmp(buf, mem + size / 2, size / 2)) TH_LOG("%s: offset", name);
	munmap(buf, size / 2);
	/* Private mappings are refused. */
	EXPECT_EQ(MAP_FAILED, mmap(NULL, size, PROT_READ, MAP_PRIVATE, dmabuf, 0));
	EXPECT_EQ(EINVAL, errno);

	munmap(mem, size);
	close(dmabuf);
	close(memfd);
	EXPECT_EQ(held, pins_held());
}

TEST_F(udmabuf, data_shmem)
{
	for (int d = 0; d < self->nr; d++) {
		check_data(_metadata, self->dev[d], self->name[d], false, 4 * self->page);
		check_data(_metadata, self->dev[d], self->name[d], false, 64 << 20);
	}
}

TEST_F(udmabuf, data_hugetlb)
{
	int probe = memfd_sized(8 << 20, F_SEAL_SHRINK, true);

	if (probe < 0 || fallocate(probe, 0, 0, 8 << 20))
		SKIP(return, "no free 2 MiB huge pages");
	close(probe);
	for (int d = 0; d < self->nr; d++)
		check_data(_metadata, self->dev[d], self->name[d], true, 8 << 20);
}

/* A process killed while it holds buffers and mappings of them. */
TEST_F(udmabuf, killed_holder)
{
	for (int d = 0; d < self->nr; d++) {
		long held = pins_held();
		int ready[2], status;
		pid_t pid;
		char c;

		ASSERT_EQ(0, pipe(ready));
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid) {
			int memfd = memfd_sized(16 << 20, F_SEAL_SHRINK, false);

			for (int i = 0; i < 8; i++) {
				int buf = create(self->dev[d], memfd, i << 20, 1 << 20);

				if (buf < 0 || mmap(NULL, 1 << 20, PROT_READ, MAP_SHARED,
						    buf, 0) == MAP_FAILED)
					_exit(1);
			}
			if (write(ready[1], "r", 1) != 1)
				_exit(1);
			pause();
			_exit(0);
		}
		close(ready[1]);
		ASSERT_EQ(1, read(ready[0], &c, 1)) TH_LOG("%s: child failed", self->name[d]);
		close(ready[0]);
		EXPECT_LT(held, pins_held());
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		EXPECT_TRUE(WIFSIGNALED(status));
		/* The last fput of the buffers may run from a work item. */
		for (int i = 0; i < 50 && pins_held() != held; i++)
			usleep(100000);
		EXPECT_EQ(held, pins_held()) TH_LOG("%s: pins left", self->name[d]);
	}
}

TEST_HARNESS_MAIN
