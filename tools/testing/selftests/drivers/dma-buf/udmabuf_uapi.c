// SPDX-License-Identifier: GPL-2.0
/*
 * The udmabuf uAPI, checked on every device that offers it: /dev/udmabuf
 * and /dev/udmabuf_rs by default, or the devices named in $UDMABUF_DEVS
 * (separated by spaces). Each bad input must fail with the errno of the C
 * driver; data written through the memfd before the buffer exists (when the
 * pins may migrate the pages, out of ZONE_MOVABLE with movablecore=) and
 * after must read back through the dma-buf's mmap, with CPU access syncs,
 * also from threads syncing at once, and after mremap(), fork() and a
 * partial munmap(); and the pins must balance once the buffers are gone,
 * also when the process holding them, or one filling the holes of a huge
 * sparse memfd, is killed. With <module>.account_memlock=1 on the
 * command line (udmabuf_rs), buffers must be charged to their creator's
 * RLIMIT_MEMLOCK until they are released; without it, never. The pin
 * counters are system-wide: run the test alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/capability.h>
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

/*
 * The pins held once two readings 20 ms apart agree: the two counters are
 * read one after the other, and an unpin of an earlier test may still land
 * from a work item.
 */
static long pins_settled(void)
{
	long held = pins_held();

	for (int i = 0; i < 50; i++) {
		long now;

		usleep(20000);
		now = pins_held();
		if (now == held)
			break;
		held = now;
	}
	return held;
}

/*
 * Waits up to 5 s, as the last fput of a buffer may run from a work item,
 * for @pins pages more than @base to be pinned. Returns the pins held.
 */
static long wait_pins(long base, long pins)
{
	long now = pins_held();

	for (int i = 0; i < 50 && now - base != pins; i++) {
		usleep(100000);
		now = pins_held();
	}
	return now;
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
 * pin counters are system-wide: the test must run alone, and unpins of an
 * earlier test landing meanwhile only lower the count.
 */
#define EXPECT_ALL(expected, call) do {					\
	long __held = pins_settled();					\
	for (int d = 0; d < self->nr; d++) {				\
		int dev = self->dev[d];					\
		int __ret = (call);					\
		if (__ret >= 0)						\
			close(__ret);					\
		EXPECT_EQ(expected, __ret) TH_LOG("%s: %s", self->name[d], #call); \
	}								\
	EXPECT_GE(__held, pins_settled());				\
} while (0)

/* Whether the command line has <module>.@param, for the module of device @dev. */
static bool module_param_set(const char *dev, const char *param)
{
	char cmdline[4096] = "", want[128];
	const char *module = strrchr(dev, '/');
	int fd = open("/proc/cmdline", O_RDONLY);
	ssize_t len;

	if (fd < 0)
		return false;
	len = read(fd, cmdline, sizeof(cmdline) - 1);
	close(fd);
	if (len < 0)
		return false;
	snprintf(want, sizeof(want), "%s.%s", module ? module + 1 : dev, param);
	return strstr(cmdline, want);
}

/* Whether every module has size_limit_mb=4096 on the command line. */
static bool size_limit_4096(int nr, const char **names)
{
	for (int i = 0; i < nr; i++)
		if (!module_param_set(names[i], "size_limit_mb=4096"))
			return false;
	return true;
}

/* Whether @dev charges its buffers to their creator's RLIMIT_MEMLOCK. */
static bool accounts_memlock(const char *dev)
{
	return module_param_set(dev, "account_memlock=1");
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

/*
 * fallocate() leaves the new pages of a shmem memfd uncleared until their
 * first use; a buffer made of them must still read zeros, not what the
 * pages held before. The pages of a memfd just freed are likely to be the
 * next ones allocated, so a memfd full of a pattern is freed first.
 */
TEST_F(udmabuf, fallocated_pages_read_zero)
{
	size_t size = 16 << 20, dirty;
	unsigned char *p;
	int memfd, dmabuf;

	for (int d = 0; d < self->nr; d++) {
		for (int round = 0; round < 4; round++) {
			memfd = memfd_sized(size, 0, false);
			ASSERT_LE(0, memfd);
			p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
			ASSERT_NE(MAP_FAILED, p);
			memset(p, 0xa5, size);
			munmap(p, size);
			close(memfd);

			memfd = memfd_sized(size, F_SEAL_SHRINK, false);
			ASSERT_LE(0, memfd);
			ASSERT_EQ(0, fallocate(memfd, 0, 0, size));
			dmabuf = create(self->dev[d], memfd, 0, size);
			ASSERT_LE(0, dmabuf) TH_LOG("%s: create: %s", self->name[d],
						    strerror(-dmabuf));
			p = mmap(NULL, size, PROT_READ, MAP_SHARED, dmabuf, 0);
			ASSERT_NE(MAP_FAILED, p) TH_LOG("%s: mmap", self->name[d]);
			dirty = 0;
			for (size_t i = 0; i < size; i++)
				dirty += p[i] != 0;
			EXPECT_EQ(0, dirty) TH_LOG("%s: %zu of %zu bytes are not zero",
						   self->name[d], dirty, size);
			munmap(p, size);
			close(dmabuf);
			close(memfd);
		}
	}
}

/* A process killed while it holds buffers and mappings of them. */
TEST_F(udmabuf, killed_holder)
{
	for (int d = 0; d < self->nr; d++) {
		long base = pins_held();
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
		EXPECT_LT(base, pins_held());
		kill(pid, SIGKILL);
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		EXPECT_TRUE(WIFSIGNALED(status));
		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", self->name[d]);
	}
}

/* DMA_BUF_IOCTL_SYNC with @flags on @buf: 0 or -errno. */
static int buf_sync(int buf, __u64 flags)
{
	struct dma_buf_sync sync = { .flags = flags };

	return ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync) ? -errno : 0;
}

/* Bytes [@from, @to) of @p filled as fill() fills a mapping from @p on. */
static void fill_range(unsigned char *p, size_t from, size_t to, unsigned int seed)
{
	for (size_t i = from; i < to; i++)
		p[i] = (unsigned char)(i * 7 + seed + i / 4096);
}

static bool same_range(const unsigned char *p, size_t from, size_t to, unsigned int seed)
{
	for (size_t i = from; i < to; i++)
		if (p[i] != (unsigned char)(i * 7 + seed + i / 4096))
			return false;
	return true;
}

/* A sealed memfd of @size bytes, filled by fill() with @seed. */
static int memfd_filled(size_t size, unsigned int seed)
{
	int memfd = memfd_sized(size, F_SEAL_SHRINK, false);
	unsigned char *p;

	if (memfd < 0)
		return -1;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
	if (p == MAP_FAILED) {
		close(memfd);
		return -1;
	}
	fill(p, size, seed);
	munmap(p, size);
	return memfd;
}

/*
 * A buffer on @dev of a new memfd of @size bytes filled with 1, mapped shared
 * and writable: the mapping, or MAP_FAILED with -1 in @memfd, or a -errno in
 * @buf, for the step that failed.
 */
static unsigned char *map_new_buffer(int dev, size_t size, int *memfd, int *buf)
{
	*buf = -1;
	*memfd = memfd_filled(size, 1);
	if (*memfd < 0)
		return MAP_FAILED;
	*buf = create(dev, *memfd, 0, size);
	if (*buf < 0)
		return MAP_FAILED;
	return mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, *buf, 0);
}

/* Whether bytes [@from, @to) of @memfd hold what fill() writes with @seed. */
static bool memfd_holds(int memfd, size_t size, size_t from, size_t to, unsigned int seed)
{
	unsigned char *p = mmap(NULL, size, PROT_READ, MAP_SHARED, memfd, 0);
	bool ok;

	if (p == MAP_FAILED)
		return false;
	ok = same_range(p, from, to, seed);
	munmap(p, size);
	return ok;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

#define DMA_API_DIR	"/sys/kernel/debug/dma-api"

/*
 * The live DMA mappings of the misc device of @dev (named as its node) that
 * CONFIG_DMA_API_DEBUG lists in its dump, one line each ("misc udmabuf
 * scatter-gather idx ..."), or -1 if the dump cannot tell: no such file
 * (no CONFIG_DMA_API_DEBUG, debugfs or root), or the checks disabled.
 */
static long dma_api_mappings(const char *dev)
{
	const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
	char line[512], drv[64], devname[64], disabled = 'Y';
	long n = 0;
	FILE *f;

	f = fopen(DMA_API_DIR "/disabled", "r");
	if (!f)
		return -1;
	if (fscanf(f, " %c", &disabled) != 1)
		disabled = 'Y';
	fclose(f);
	if (disabled != 'N')
		return -1;
	f = fopen(DMA_API_DIR "/dump", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %63s", drv, devname) == 2 && !strcmp(devname, name))
			n++;
	fclose(f);
	return n;
}

#define SYNC_THREADS	4
#define SYNC_ROUNDS	128
#define SYNC_REPEAT	8

struct syncer {
	pthread_barrier_t *start;
	int buf;
	unsigned char *map;	/* the whole buffer; this thread uses its page */
	size_t page;
	int idx;
	unsigned int seed;	/* of what the page holds before the round */
	int err;		/* the first failed sync, -errno */
	bool bad_data;
};

/*
 * Syncs @s->buf in one direction, SYNC_REPEAT times, right after the other
 * threads are released: reads its own page of the buffer if the direction
 * reads, and writes it if it writes.
 */
static void *syncer(void *arg)
{
	static const __u64 dirs[] = {
		DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW,
	};
	struct syncer *s = arg;
	__u64 dir = dirs[s->idx % 3];
	size_t from = s->idx * s->page, to = from + s->page;
	unsigned int seed = s->seed;

	pthread_barrier_wait(s->start);
	for (int i = 0; i < SYNC_REPEAT; i++) {
		int ret = buf_sync(s->buf, DMA_BUF_SYNC_START | dir);

		if (ret && !s->err)
			s->err = ret;
		if ((dir & DMA_BUF_SYNC_READ) && !same_range(s->map, from, to, seed))
			s->bad_data = true;
		if (dir & DMA_BUF_SYNC_WRITE) {
			seed = s->seed + 1 + i;
			fill_range(s->map, from, to, seed);
		}
		ret = buf_sync(s->buf, DMA_BUF_SYNC_END | dir);
		if (ret && !s->err)
			s->err = ret;
	}
	/* What the page holds now. */
	s->seed = seed;
	return NULL;
}

/*
 * Threads sync the same buffer at once, in every direction, each round on a
 * new buffer, so that the first DMA_BUF_SYNC_START of each, which makes the
 * table the driver keeps for CPU access, races with others. Every sync must
 * succeed and every page read what was last written to it, through the
 * buffer or the memfd. Two first starts that each make a table leak one,
 * with its DMA mapping of the device: with CONFIG_DMA_API_DEBUG, no mapping
 * of the device may be left once the buffers are closed.
 */
TEST_F_TIMEOUT(udmabuf, sync_concurrent, 300)
{
	size_t size = SYNC_THREADS * self->page;

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		long base = pins_settled(), before = dma_api_mappings(name), after;
		struct syncer s[SYNC_THREADS];
		pthread_t th[SYNC_THREADS];
		pthread_barrier_t start;
		int memfd, buf, round;
		unsigned char *map;

		memfd = memfd_sized(size, F_SEAL_SHRINK, false);
		ASSERT_LE(0, memfd);
		for (round = 0; round < SYNC_ROUNDS; round++) {
			unsigned int seed = round * 16;
			bool ok = true;
			int i;

			/* What the threads find; they write seed + 1 to seed + SYNC_REPEAT. */
			map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
			ASSERT_NE(MAP_FAILED, map);
			fill(map, size, seed);
			munmap(map, size);
			buf = create(self->dev[d], memfd, 0, size);
			ASSERT_LE(0, buf) TH_LOG("%s: create: %s", name, strerror(-buf));
			map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
			ASSERT_NE(MAP_FAILED, map) TH_LOG("%s: mmap", name);
			ASSERT_EQ(0, pthread_barrier_init(&start, NULL, SYNC_THREADS));
			for (i = 0; i < SYNC_THREADS; i++) {
				s[i] = (struct syncer){
					.start = &start, .buf = buf, .map = map,
					.page = self->page, .idx = i, .seed = seed,
				};
				ASSERT_EQ(0, pthread_create(&th[i], NULL, syncer, &s[i]));
			}
			for (i = 0; i < SYNC_THREADS; i++) {
				pthread_join(th[i], NULL);
				EXPECT_EQ(0, s[i].err) TH_LOG("%s: round %d, thread %d: sync: %s",
							      name, round, i, strerror(-s[i].err));
				EXPECT_FALSE(s[i].bad_data) TH_LOG("%s: round %d, thread %d: data",
								   name, round, i);
				ok &= !s[i].err && !s[i].bad_data;
			}
			pthread_barrier_destroy(&start);
			munmap(map, size);
			close(buf);
			/* The writes through the buffer reached the memfd. */
			for (i = 0; i < SYNC_THREADS; i++)
				EXPECT_TRUE(memfd_holds(memfd, size, i * self->page,
							(i + 1) * self->page, s[i].seed))
					TH_LOG("%s: round %d, page %d", name, round, i);
			if (!ok)
				break;
		}
		close(memfd);
		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", name);

		after = dma_api_mappings(name);
		if (after < 0) {
			TH_LOG("%s: no %s/dump (CONFIG_DMA_API_DEBUG, debugfs, root) %s",
			       name, DMA_API_DIR, "or disabled: leaked mappings not checked");
			continue;
		}
		TH_LOG("%s: DMA mappings of the device: %ld before, %ld after %d rounds",
		       name, before, after, round);
		EXPECT_EQ(0, after) TH_LOG("%s: mappings left after every buffer was closed", name);
	}
}

/*
 * DMA_BUF_SYNC_END without a DMA_BUF_SYNC_START before it: the drivers have
 * no table for CPU access yet, and must both fail the same way, in every
 * direction (C udmabuf: EINVAL). The buffer works as usual afterwards, and
 * an end after an end, once the table exists, succeeds on both.
 */
TEST_F(udmabuf, sync_end_without_start)
{
	static const __u64 dirs[] = {
		DMA_BUF_SYNC_READ, DMA_BUF_SYNC_WRITE, DMA_BUF_SYNC_RW,
	};
	size_t size = 4 * self->page;
	int first[ARRAY_SIZE(dirs)];

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		long base = pins_settled();
		int memfd, buf, ret;
		unsigned char *map;

		map = map_new_buffer(self->dev[d], size, &memfd, &buf);
		ASSERT_NE(MAP_FAILED, map)
			TH_LOG("%s: memfd %d, buffer %d (-errno), mmap", name, memfd, buf);

		for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
			ret = buf_sync(buf, DMA_BUF_SYNC_END | dirs[i]);
			EXPECT_EQ(-EINVAL, ret) TH_LOG("%s: end 0x%llx without start: %s", name,
						       (unsigned long long)dirs[i], strerror(-ret));
			if (!d)
				first[i] = ret;
			else
				EXPECT_EQ(first[i], ret)
					TH_LOG("%s and %s differ", self->name[0], name);
		}

		EXPECT_EQ(0, buf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ));
		EXPECT_TRUE(same(map, size, 1)) TH_LOG("%s: read after a failed end", name);
		EXPECT_EQ(0, buf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ));
		EXPECT_EQ(0, buf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE));
		fill(map, size, 2);
		EXPECT_EQ(0, buf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));
		EXPECT_TRUE(memfd_holds(memfd, size, 0, size, 2)) TH_LOG("%s: write", name);
		/* Unbalanced, but the table exists: both sync it again. */
		EXPECT_EQ(0, buf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW));

		munmap(map, size);
		close(buf);
		close(memfd);
		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", name);
	}
}

/* The VmFlags of the mapping at @addr, from /proc/self/smaps, or "". */
static const char *vm_flags(void *addr, char *flags, size_t len)
{
	unsigned long start, end;
	char line[256];
	bool found = false;
	FILE *f = fopen("/proc/self/smaps", "r");

	*flags = '\0';
	if (!f)
		return flags;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2) {
			found = start == (unsigned long)addr;
		} else if (found && !strncmp(line, "VmFlags:", 8)) {
			snprintf(flags, len, "%s", line + 9);
			flags[strcspn(flags, "\n")] = '\0';
			break;
		}
	}
	fclose(f);
	return flags;
}

static bool has_vm_flag(const char *flags, const char *flag)
{
	size_t len = strlen(flag);

	for (const char *p = flags; (p = strstr(p, flag)); p += len)
		if ((p == flags || p[-1] == ' ') && (p[len] == ' ' || !p[len]))
			return true;
	return false;
}

/*
 * mremap() moves a mapping of a buffer to a new address, with its data, at
 * the same size. Both drivers make it a VM_PFNMAP, VM_DONTEXPAND mapping:
 * growing it fails, with the same errno on every device (EFAULT), as does
 * MREMAP_DONTUNMAP (EINVAL), and the mapping is left as it was.
 */
TEST_F(udmabuf, mremap)
{
	size_t size = 16 * self->page;
	int grow_errno[MAX_DEVS];

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		long base = pins_settled();
		unsigned char *map, *dst, *moved;
		int memfd, buf, err;
		char flags[256];
		void *ret;

		map = map_new_buffer(self->dev[d], size, &memfd, &buf);
		ASSERT_NE(MAP_FAILED, map)
			TH_LOG("%s: memfd %d, buffer %d (-errno), mmap", name, memfd, buf);
		EXPECT_TRUE(same(map, size, 1)) TH_LOG("%s: before mremap", name);

		/* A free range to move to, away from the mapping. */
		dst = mmap(NULL, 3 * size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ASSERT_NE(MAP_FAILED, dst);
		ASSERT_EQ(0, munmap(dst, size));
		ASSERT_EQ(0, munmap(dst + 2 * size, size));
		moved = mremap(map, size, size, MREMAP_MAYMOVE | MREMAP_FIXED, dst + size);
		ASSERT_EQ(dst + size, moved) TH_LOG("%s: mremap: %s", name, strerror(errno));
		EXPECT_EQ(-1, msync(map, size, MS_ASYNC)) TH_LOG("%s: old address mapped", name);
		EXPECT_TRUE(same(moved, size, 1)) TH_LOG("%s: after mremap", name);
		fill(moved, size, 2);
		EXPECT_TRUE(memfd_holds(memfd, size, 0, size, 2)) TH_LOG("%s: write", name);

		vm_flags(moved, flags, sizeof(flags));
		TH_LOG("%s: VmFlags %s", name, flags);
		EXPECT_TRUE(has_vm_flag(flags, "pf")) TH_LOG("%s: not VM_PFNMAP", name);
		EXPECT_TRUE(has_vm_flag(flags, "de")) TH_LOG("%s: not VM_DONTEXPAND", name);

		/* Growing, in place or moving, fails alike on every device. */
		errno = 0;
		ret = mremap(moved, size, 2 * size, MREMAP_MAYMOVE);
		grow_errno[d] = errno;
		EXPECT_EQ(MAP_FAILED, ret);
		EXPECT_EQ(EFAULT, grow_errno[d]) TH_LOG("%s: grow: %s", name,
							strerror(grow_errno[d]));
		EXPECT_EQ(grow_errno[0], grow_errno[d])
			TH_LOG("%s and %s differ", self->name[0], name);
		errno = 0;
		ret = mremap(moved, size, size + self->page, 0);
		err = errno;
		EXPECT_EQ(MAP_FAILED, ret);
		EXPECT_EQ(EFAULT, err) TH_LOG("%s: grow in place: %s", name, strerror(err));
		errno = 0;
		ret = mremap(moved, size, size, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
		err = errno;
		EXPECT_EQ(MAP_FAILED, ret);
		EXPECT_EQ(EINVAL, err) TH_LOG("%s: MREMAP_DONTUNMAP: %s", name, strerror(err));
		EXPECT_TRUE(same(moved, size, 2)) TH_LOG("%s: after the failed mremaps", name);

		munmap(moved, size);
		close(buf);
		close(memfd);
		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", name);
	}
}

/*
 * A child forked while the buffer is mapped shares the mapping: it reads
 * the data the parent wrote, also through a mapping of its own, and the
 * parent sees what it writes. Nothing more is pinned for it, and the pins
 * go once both are done.
 */
TEST_F(udmabuf, fork)
{
	size_t size = 16 * self->page, half = size / 2;

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		long base = pins_settled(), created;
		unsigned char *map;
		int memfd, buf, status;
		pid_t pid;

		map = map_new_buffer(self->dev[d], size, &memfd, &buf);
		ASSERT_NE(MAP_FAILED, map)
			TH_LOG("%s: memfd %d, buffer %d (-errno), mmap", name, memfd, buf);
		/* Written by the parent, and not read before the fork. */
		fill_range(map, 0, half, 3);
		created = pins_settled();

		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid) {
			unsigned char *own;

			if (!same_range(map, 0, half, 3) || !same_range(map, half, size, 1))
				_exit(1);
			own = mmap(NULL, size, PROT_READ, MAP_SHARED, buf, 0);
			if (own == MAP_FAILED || !same_range(own, 0, half, 3))
				_exit(2);
			if (buf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE))
				_exit(3);
			fill_range(map, half, size, 4);
			if (buf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE))
				_exit(3);
			if (!same_range(own, half, size, 4))
				_exit(4);
			_exit(0);
		}
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && !WEXITSTATUS(status))
			TH_LOG("%s: child failed, status 0x%x", name, status);
		EXPECT_TRUE(same_range(map, half, size, 4)) TH_LOG("%s: the child's write", name);
		EXPECT_TRUE(memfd_holds(memfd, size, 0, half, 3)) TH_LOG("%s: memfd", name);
		EXPECT_TRUE(memfd_holds(memfd, size, half, size, 4)) TH_LOG("%s: memfd", name);
		EXPECT_GE(created, pins_settled()) TH_LOG("%s: pinned for the child", name);

		munmap(map, size);
		close(buf);
		close(memfd);
		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", name);
	}
}

/* Whether reading @p faults with SIGSEGV, in a child. */
static bool read_faults(const unsigned char *p)
{
	struct rlimit no_core = { 0, 0 };
	int status;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return false;
	if (!pid) {
		setrlimit(RLIMIT_CORE, &no_core);
		_exit(*p == 0x5a ? 1 : 2);
	}
	if (waitpid(pid, &status, 0) != pid)
		return false;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV;
}

/*
 * munmap() of the middle pages of a mapping, faulted in before or not: the
 * pages on both sides still read and write the buffer, the middle faults,
 * and the pins go with the buffer.
 */
TEST_F(udmabuf, partial_munmap)
{
	size_t ps = self->page, size = 8 * ps, from = 2 * ps, to = 5 * ps;

	for (int d = 0; d < self->nr; d++) {
		for (int touched = 0; touched < 2; touched++) {
			const char *name = self->name[d];
			long base = pins_settled();
			unsigned char *map;
			int memfd, buf;

			map = map_new_buffer(self->dev[d], size, &memfd, &buf);
			ASSERT_NE(MAP_FAILED, map)
				TH_LOG("%s: memfd %d, buffer %d (-errno), mmap", name, memfd, buf);
			if (touched)
				EXPECT_TRUE(same(map, size, 1)) TH_LOG("%s: before munmap", name);

			ASSERT_EQ(0, munmap(map + from, to - from));
			EXPECT_TRUE(same_range(map, 0, from, 1))
				TH_LOG("%s: before the hole, touched %d", name, touched);
			EXPECT_TRUE(same_range(map, to, size, 1))
				TH_LOG("%s: after the hole, touched %d", name, touched);
			EXPECT_TRUE(read_faults(map + from)) TH_LOG("%s: hole start", name);
			EXPECT_TRUE(read_faults(map + to - 1)) TH_LOG("%s: hole end", name);
			fill_range(map, 0, from, 2);
			fill_range(map, to, size, 3);
			EXPECT_TRUE(memfd_holds(memfd, size, 0, from, 2)) TH_LOG("%s: write", name);
			EXPECT_TRUE(memfd_holds(memfd, size, from, to, 1)) TH_LOG("%s: hole", name);
			EXPECT_TRUE(memfd_holds(memfd, size, to, size, 3))
				TH_LOG("%s: write", name);

			munmap(map, from);
			munmap(map + to, size - to);
			close(buf);
			close(memfd);
			EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", name);
		}
	}
}

/*
 * A list of one page and a range of a sparse memfd far larger than memory,
 * within the default size_limit_mb (INT_MAX MiB): the drivers fill the holes
 * as they pin. Not 1 TiB: the array of page pointers the drivers allocate
 * for a buffer (8 bytes a page) would be more than the INT_MAX bytes that
 * kvmalloc() accepts, and both would fail with ENOMEM before they pin the
 * range.
 */
#define SPARSE_BYTES	(16ULL << 30)

/* UDMABUF_CREATE_LIST of [0, @first) and [@first, @first + @second) of @memfd. */
static int create_pair(int dev, int memfd, uint64_t first, uint64_t second)
{
	struct udmabuf_create_list *list;
	int ret;

	list = calloc(1, sizeof(*list) + 2 * sizeof(list->list[0]));
	if (!list)
		return -ENOMEM;
	list->count = 2;
	list->list[0] = (struct udmabuf_create_item){
		.memfd = memfd, .offset = 0, .size = first,
	};
	list->list[1] = (struct udmabuf_create_item){
		.memfd = memfd, .offset = first, .size = second,
	};
	ret = ioctl(dev, UDMABUF_CREATE_LIST, list);
	ret = ret < 0 ? -errno : ret;
	free(list);
	return ret;
}

/* A field of /proc/meminfo in kB, or -1. */
static long meminfo_kb(const char *key)
{
	char line[128];
	long val = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, key, strlen(key))) {
			val = atol(line + strlen(key));
			break;
		}
	fclose(f);
	return val;
}

#define SIZE_LIMIT_PARAM	"/sys/module/%s/parameters/size_limit_mb"

/*
 * Gives @dev's module the default size_limit_mb, INT_MAX, for the test:
 * through sysfs if the parameter is writable there (C udmabuf), saving the
 * value to restore in @saved; or finds it has the default already, with no
 * <module>.size_limit_mb= on the command line (udmabuf_rs, whose parameters
 * are read-only). Returns false, with the reason in @why, if it cannot.
 */
static bool default_size_limit(const char *dev, char *saved, size_t len, const char **why)
{
	const char *module = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
	char path[128];
	ssize_t n;
	int fd;

	*saved = '\0';
	snprintf(path, sizeof(path), SIZE_LIMIT_PARAM, module);
	fd = open(path, O_RDWR);
	if (fd >= 0) {
		n = read(fd, saved, len - 1);
		saved[n > 0 ? n : 0] = '\0';
		if (n > 0 && pwrite(fd, "2147483647", 10, 0) == 10) {
			close(fd);
			return true;
		}
		*saved = '\0';
		close(fd);
	}
	if (module_param_set(dev, "size_limit_mb=")) {
		*why = "size_limit_mb is on the command line and not writable in sysfs";
		return false;
	}
	return true;
}

/* Restores what default_size_limit() saved, if anything. Returns false if it cannot. */
static bool restore_size_limit(const char *dev, const char *saved)
{
	const char *module = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
	char path[128];
	bool ok;
	int fd;

	if (!*saved)
		return true;
	snprintf(path, sizeof(path), SIZE_LIMIT_PARAM, module);
	fd = open(path, O_WRONLY);
	if (fd < 0)
		return false;
	ok = write(fd, saved, strlen(saved)) == (ssize_t)strlen(saved);
	close(fd);
	return ok;
}

/* Pins of at least this many bytes show that the child is filling holes. */
#define SPARSE_PINNED	(128 << 20)
#define SPARSE_SLACK_KB	(32 << 10)

/*
 * A child creates a buffer of a page and a range of 16 GiB of holes of a
 * sparse memfd. Once it has pinned SPARSE_PINNED, it is killed: it must be
 * gone within 10 s, leaving no pin, and the memory of the holes it filled
 * must be free again, its memfd gone with it.
 */
TEST_F_TIMEOUT(udmabuf, sparse_list_killed, 600)
{
	long want = SPARSE_PINNED / self->page;

	if (geteuid())
		SKIP(return, "needs root");
	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d], *why = NULL;
		long base, free_kb, now_kb, pinned = 0, waited_ms;
		int ready[2], status = 0, ret = 0;
		bool exited = false;
		char saved[32], c;
		double t0;
		pid_t pid;

		if (!default_size_limit(name, saved, sizeof(saved), &why)) {
			TH_LOG("%s: %s: not tested", name, why);
			continue;
		}
		base = pins_settled();
		free_kb = meminfo_kb("MemFree:");
		ASSERT_EQ(0, pipe(ready));
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid) {
			int memfd = memfd_sized(SPARSE_BYTES + self->page, F_SEAL_SHRINK, false);

			close(ready[0]);
			if (memfd < 0 || write(ready[1], "r", 1) != 1)
				_exit(2);
			ret = create_pair(self->dev[d], memfd, self->page, SPARSE_BYTES);
			/* Only if the buffer was made, or refused, before the kill. */
			if (write(ready[1], &ret, sizeof(ret)) != sizeof(ret))
				_exit(3);
			_exit(1);
		}
		close(ready[1]);
		if (read(ready[0], &c, 1) != 1) {
			waitpid(pid, &status, 0);
			EXPECT_EQ(0, status) TH_LOG("%s: no sparse memfd", name);
			goto next;
		}

		/* Pins grow as holes are filled; slowly under TCG with KASAN. */
		t0 = now_s();
		while (now_s() - t0 < 300) {
			pinned = pins_held() - base;
			if (pinned >= want)
				break;
			if (waitpid(pid, &status, WNOHANG) == pid) {
				exited = true;
				break;
			}
			usleep(10000);
		}
		TH_LOG("%s: %ld pages pinned after %.1f s", name, pinned, now_s() - t0);
		if (exited) {
			if (read(ready[0], &ret, sizeof(ret)) == sizeof(ret))
				TH_LOG("%s: create returned %d (%s)", name, ret,
				       ret < 0 ? strerror(-ret) : "a buffer");
			EXPECT_FALSE(exited) TH_LOG("%s: the creator ended before the kill", name);
			goto next;
		}
		EXPECT_LE(want, pinned) TH_LOG("%s: holes not filled", name);

		t0 = now_s();
		kill(pid, SIGKILL);
		while (waitpid(pid, &status, WNOHANG) != pid && now_s() - t0 < 60)
			usleep(10000);
		waited_ms = (now_s() - t0) * 1000;
		TH_LOG("%s: reaped %ld ms after SIGKILL", name, waited_ms);
		EXPECT_GE(10000, waited_ms) TH_LOG("%s: a killed creator took too long", name);
		EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
			TH_LOG("%s: status 0x%x", name, status);
next:
		close(ready[0]);
		EXPECT_TRUE(restore_size_limit(name, saved))
			TH_LOG("%s: size_limit_mb %s not restored", name, saved);

		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", name);
		now_kb = meminfo_kb("MemFree:");
		for (int i = 0; i < 50 && now_kb < free_kb - SPARSE_SLACK_KB; i++) {
			usleep(100000);
			now_kb = meminfo_kb("MemFree:");
		}
		TH_LOG("%s: MemFree %ld kB before, %ld kB after", name, free_kb, now_kb);
		EXPECT_LE(free_kb - SPARSE_SLACK_KB, now_kb) TH_LOG("%s: memory not freed", name);
	}
}

/*
 * RLIMIT_MEMLOCK accounting. Buffers are created by workers, child processes
 * of a fresh uid or of root, with the device fds and memfds of the test
 * process, opened as root (the devices may be root-only); the workers hand
 * the buffers over, and the test process, root, reads the system-wide pin
 * counters (stat_refresh needs root) and the workers' VmPin. What is charged
 * to a fresh uid is its quota not left: the largest buffer that a new
 * process of the uid can create.
 */
#define LIMIT		16	/* RLIMIT_MEMLOCK of the workers, in pages */
#define NR_WORKERS	3
#define MAX_FDS		4	/* passed in one message */
/* Far from the ids of real users and of subordinate (container) ranges. */
#define FRESH_UID_BASE	0x40000000

struct worker {
	pid_t pid;
	int sock;		/* SOCK_SEQPACKET: struct create_req, then a reply */
};

/* A buffer for a worker to create, from the start of @memfd. */
struct create_req {
	int dev;		/* fds of the test process, inherited */
	int memfd;
	unsigned int count;	/* 0: UDMABUF_CREATE, else a list of @count items */
	uint64_t size;		/* of the buffer, or of each item */
	uint64_t second;	/* not 0: a list of @size bytes, then @second */
};

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
	struct rlimit rl = { limit * getpagesize(), limit * getpagesize() };
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
	char path[32], line[128];
	long long val = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", pid);
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

static unsigned long read_tainted(void)
{
	unsigned long val = -1;
	FILE *f = fopen("/proc/sys/kernel/tainted", "r");

	if (f) {
		if (fscanf(f, "%lu", &val) != 1)
			val = -1;
		fclose(f);
	}
	return val;
}

/* Sends @val, and the @nr (up to MAX_FDS) @fds with SCM_RIGHTS. 0 or -errno. */
static int send_fds(int sock, int val, const int *fds, int nr)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u = {};
	struct iovec iov = { .iov_base = &val, .iov_len = sizeof(val) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cmsg;

	if (nr) {
		msg.msg_control = u.buf;
		msg.msg_controllen = CMSG_SPACE(nr * sizeof(int));
		cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(nr * sizeof(int));
		memcpy(CMSG_DATA(cmsg), fds, nr * sizeof(int));
	}
	return sendmsg(sock, &msg, 0) == sizeof(val) ? 0 : -errno;
}

/* Receives a value into @val and up to MAX_FDS fds. Returns how many, or -errno. */
static int recv_fds(int sock, int *val, int *fds)
{
	union {
		char buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = val, .iov_len = sizeof(*val) };
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = u.buf, .msg_controllen = sizeof(u.buf),
	};
	struct cmsghdr *cmsg;
	int nr;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != sizeof(*val))
		return -EPIPE;
	cmsg = CMSG_FIRSTHDR(&msg);
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
		return 0;
	nr = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	memcpy(fds, CMSG_DATA(cmsg), nr * sizeof(int));
	return nr;
}

/*
 * Forks @w: a process made by become(@uid, @ipc_lock, LIMIT) that creates the
 * buffers it is asked for until its socket closes, and sends them back.
 */
static void start_worker(struct __test_metadata *_metadata, struct worker *w,
			 uid_t uid, bool ipc_lock)
{
	struct create_req req;
	int sv[2], ret, buf;

	ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
	w->pid = fork();
	ASSERT_LE(0, w->pid);
	if (!w->pid) {
		close(sv[0]);
		ret = become(uid, ipc_lock, LIMIT);
		if (send(sv[1], &ret, sizeof(ret), 0) != sizeof(ret) || ret)
			_exit(1);
		while (recv(sv[1], &req, sizeof(req), 0) == sizeof(req)) {
			if (req.second)
				buf = create_pair(req.dev, req.memfd, req.size, req.second);
			else if (req.count)
				buf = create_list(req.dev, req.memfd, req.count, req.size);
			else
				buf = create(req.dev, req.memfd, 0, req.size);
			/* The test process holds the buffer: its creator keeps none. */
			ret = send_fds(sv[1], buf, &buf, buf >= 0);
			if (buf >= 0)
				close(buf);
			if (ret)
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

static void stop_worker(struct worker *w)
{
	if (w->pid <= 0)
		return;
	kill(w->pid, SIGKILL);
	waitpid(w->pid, NULL, 0);
	close(w->sock);
	w->pid = 0;
}

/* Has @w create the buffer @req asks for. Returns its fd here, or -errno. */
static int worker_request(struct worker *w, const struct create_req *req)
{
	int ret, fd, nr;

	if (send(w->sock, req, sizeof(*req), 0) != sizeof(*req))
		return -EPIPE;
	nr = recv_fds(w->sock, &ret, &fd);
	if (nr < 0)
		return nr;
	return nr ? fd : ret < 0 ? ret : -EPROTO;
}

/*
 * Has @w create a buffer of @size bytes of @memfd on @dev, or a list of
 * @count items of @size bytes. Returns the buffer's fd here, or -errno.
 */
static int worker_create(struct worker *w, int dev, int memfd,
			 unsigned int count, size_t size)
{
	struct create_req req = {
		.dev = dev, .memfd = memfd, .count = count, .size = size,
	};

	return worker_request(w, &req);
}

/* As worker_create(), for a list of [0, @first) and [@first, @first + @second). */
static int worker_create_pair(struct worker *w, int dev, int memfd,
			      uint64_t first, uint64_t second)
{
	struct create_req req = {
		.dev = dev, .memfd = memfd, .size = first, .second = second,
	};

	return worker_request(w, &req);
}

/*
 * Without <module>.account_memlock=1, and always with C udmabuf, nothing is
 * charged: a process without CAP_IPC_LOCK creates a buffer of twice its
 * RLIMIT_MEMLOCK, which it could not if the buffer were charged, and its
 * VmPin stays 0.
 */
TEST_F(udmabuf, not_charged)
{
	size_t size = 2 * LIMIT * self->page;
	struct worker w = { 0 };
	int memfd, buf;

	if (geteuid())
		SKIP(return, "needs root");
	memfd = memfd_sized(size, F_SEAL_SHRINK, false);
	ASSERT_LE(0, memfd);
	for (int d = 0; d < self->nr; d++) {
		long base = pins_held(), pins;

		if (accounts_memlock(self->name[d])) {
			TH_LOG("%s: account_memlock=1, see the memlock tests", self->name[d]);
			continue;
		}
		start_worker(_metadata, &w, FRESH_UID_BASE + getpid(), false);
		buf = worker_create(&w, self->dev[d], memfd, 0, size);
		EXPECT_LE(0, buf) TH_LOG("%s: %s", self->name[d], strerror(-buf));
		/* Both drivers pin each page once. */
		pins = pins_held() - base;
		TH_LOG("%s: pinned %+ld", self->name[d], pins);
		if (buf >= 0)
			EXPECT_EQ((long)(size / self->page), pins);
		EXPECT_EQ(0, status_num(w.pid, "VmPin:", 10));
		if (buf >= 0)
			close(buf);
		stop_worker(&w);
		EXPECT_EQ(base, wait_pins(base, 0)) TH_LOG("%s: pins left", self->name[d]);
	}
	close(memfd);
}

/* Tests on the devices whose module has account_memlock=1. */
FIXTURE(memlock) {
	int nr;
	int dev[MAX_DEVS];
	const char *name[MAX_DEVS];
	int memfd;		/* 2 * LIMIT pages */
	uid_t uid;		/* no process, so no user_struct, before ours */
	unsigned long tainted;
	struct worker worker[NR_WORKERS];
};

FIXTURE_SETUP(memlock)
{
	find_devs();
	self->nr = 0;
	self->memfd = -1;
	if (geteuid())
		SKIP(return, "needs root");
	for (int i = 0; i < nr_devs; i++) {
		int fd;

		if (!accounts_memlock(devs[i]))
			continue;
		fd = open(devs[i], O_RDWR);
		if (fd < 0) {
			TH_LOG("%s: %s, not tested", devs[i], strerror(errno));
			continue;
		}
		self->name[self->nr] = devs[i];
		self->dev[self->nr++] = fd;
	}
	if (!self->nr)
		SKIP(return, "no device with <module>.account_memlock=1 on the command line");
	self->memfd = memfd_sized(2 * LIMIT * getpagesize(), F_SEAL_SHRINK, false);
	ASSERT_LE(0, self->memfd);
	self->uid = FRESH_UID_BASE + getpid();
	self->tainted = read_tainted();
}

FIXTURE_TEARDOWN(memlock)
{
	for (int i = 0; i < NR_WORKERS; i++)
		stop_worker(&self->worker[i]);
	for (int i = 0; i < self->nr; i++)
		close(self->dev[i]);
	if (self->memfd >= 0)
		close(self->memfd);
}

/*
 * The pages charged to self->uid's memlock quota by buffers of device @d:
 * what the largest buffer that a new process of the uid, without
 * CAP_IPC_LOCK and with twice the workers' RLIMIT_MEMLOCK, can create there
 * (and closes again) finds missing from its quota, so that a charge past
 * LIMIT shows too. Or -errno.
 */
static int uid_charged(struct _test_data_memlock *self, int d)
{
	int status, n, buf;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (!pid) {
		if (become(self->uid, false, 2 * LIMIT))
			_exit(255);
		for (n = 2 * LIMIT; n > 0; n--) {
			buf = create(self->dev[d], self->memfd, 0, n * getpagesize());
			if (buf >= 0) {
				close(buf);
				break;
			}
			if (buf != -ENOMEM)
				_exit(255);
		}
		_exit(n);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -errno;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
		return -EIO;
	return 2 * LIMIT - WEXITSTATUS(status);
}

/*
 * Checks that, since @base, @pins more pages are pinned and @charged are
 * charged to self->uid by buffers of device @d, and, unless @w is NULL, that
 * @w's VmPin is @vm_pin pages (and VmLck, which pins never use, is zero).
 */
static void check_usage(struct __test_metadata *_metadata,
			struct _test_data_memlock *self, int d, long base,
			const struct worker *w, long pins, long charged,
			long vm_pin)
{
	long long vm_pin_kb = w ? status_num(w->pid, "VmPin:", 10) : -1;
	long pinned = pins_held() - base;
	int now_charged = uid_charged(self, d);

	if (w)
		TH_LOG("%s: pinned %+ld, charged %d pages; VmPin %lld kB",
		       self->name[d], pinned, now_charged, vm_pin_kb);
	else
		TH_LOG("%s: pinned %+ld, charged %d pages", self->name[d],
		       pinned, now_charged);
	EXPECT_EQ(pins, pinned);
	EXPECT_EQ(charged, now_charged);
	if (!w)
		return;
	EXPECT_EQ(vm_pin * getpagesize() / 1024, vm_pin_kb);
	EXPECT_EQ(0, status_num(w->pid, "VmLck:", 10));
}

/*
 * Checks that every pin and charge since @base is gone, waiting for the
 * last fput, and that no WARN, such as one for a memlock counter going
 * negative, tainted the kernel.
 */
static void check_released(struct __test_metadata *_metadata,
			   struct _test_data_memlock *self, int d, long base)
{
	wait_pins(base, 0);
	check_usage(_metadata, self, d, base, NULL, 0, 0, 0);
	EXPECT_EQ(self->tainted, read_tainted());
}

/*
 * Limits hold exactly, over several buffers; a refused buffer, even a list
 * refused at its second item, leaves nothing pinned or charged.
 */
TEST_F(memlock, limit)
{
	size_t ps = getpagesize();

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		struct worker *w = &self->worker[0];
		long base = pins_held();
		int dev = self->dev[d], one, list;

		start_worker(_metadata, w, self->uid, false);
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 0, (LIMIT + 1) * ps));
		check_usage(_metadata, self, d, base, w, 0, 0, 0);

		/* 1 + LIMIT / 2 pages fit, 1 + 2 * LIMIT / 2 do not. */
		one = worker_create(w, dev, self->memfd, 0, ps);
		ASSERT_LE(0, one) TH_LOG("%s: %s", name, strerror(-one));
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 2, LIMIT / 2 * ps));
		check_usage(_metadata, self, d, base, w, 1, 1, 1);

		/* The limit exactly: 1 + 3 * 5 pages. */
		list = worker_create(w, dev, self->memfd, 3, (LIMIT - 1) / 3 * ps);
		ASSERT_LE(0, list) TH_LOG("%s: %s", name, strerror(-list));
		check_usage(_metadata, self, d, base, w, LIMIT, LIMIT, LIMIT);

		/* One page more is refused, alone or in a list. */
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 0, ps));
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 1, ps));
		check_usage(_metadata, self, d, base, w, LIMIT, LIMIT, LIMIT);

		close(one);
		close(list);
		check_released(_metadata, self, d, base);
		stop_worker(w);
	}
}

/* Releasing a buffer returns exactly its pages to its creator's quota. */
TEST_F(memlock, close_returns_quota)
{
	size_t ps = getpagesize();

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		struct worker *w = &self->worker[0];
		long base = pins_held();
		int dev = self->dev[d], one, list, all;

		start_worker(_metadata, w, self->uid, false);
		one = worker_create(w, dev, self->memfd, 0, ps);
		ASSERT_LE(0, one) TH_LOG("%s: %s", name, strerror(-one));
		list = worker_create(w, dev, self->memfd, 3, (LIMIT - 1) / 3 * ps);
		ASSERT_LE(0, list) TH_LOG("%s: %s", name, strerror(-list));
		check_usage(_metadata, self, d, base, w, LIMIT, LIMIT, LIMIT);

		close(list);
		wait_pins(base, 1);
		check_usage(_metadata, self, d, base, w, 1, 1, 1);
		list = worker_create(w, dev, self->memfd, 3, (LIMIT - 1) / 3 * ps);
		ASSERT_LE(0, list) TH_LOG("%s: %s", name, strerror(-list));
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 0, ps));

		close(one);
		close(list);
		check_released(_metadata, self, d, base);
		check_usage(_metadata, self, d, base, w, 0, 0, 0);

		/* The whole quota, no more. */
		all = worker_create(w, dev, self->memfd, 0, LIMIT * ps);
		ASSERT_LE(0, all) TH_LOG("%s: %s", name, strerror(-all));
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 0, ps));
		check_usage(_metadata, self, d, base, w, LIMIT, LIMIT, LIMIT);
		close(all);
		check_released(_metadata, self, d, base);
		stop_worker(w);
	}
}

/*
 * In a child: becomes a process of self->uid, creates buffers of LIMIT pages
 * in all on @dev and sends them over @sock. Returns the child's exit status.
 */
static int create_and_pass(struct _test_data_memlock *self, int dev, int sock)
{
	size_t ps = getpagesize();
	int bufs[2];

	if (become(self->uid, false, LIMIT))
		return 1;
	bufs[0] = create(dev, self->memfd, 0, ps);
	bufs[1] = create_list(dev, self->memfd, 3, (LIMIT - 1) / 3 * ps);
	if (bufs[0] < 0 || bufs[1] < 0)
		return 2;
	return send_fds(sock, 0, bufs, 2) ? 3 : 0;
}

/*
 * The creator exits while its buffers live on, in flight over a unix socket:
 * the charge stays with its user until they are released, then exactly all
 * of it comes back.
 */
TEST_F(memlock, creator_exits)
{
	size_t ps = getpagesize();

	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		struct worker *w = &self->worker[0];
		long base = pins_held();
		int dev = self->dev[d], sv[2], bufs[MAX_FDS], val, status, all;
		pid_t pid;

		/*
		 * A process of self->uid lives throughout: it keeps the
		 * user_struct, and with it any charge that would be leaked, or
		 * returned twice.
		 */
		start_worker(_metadata, w, self->uid, false);
		ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv));
		pid = fork();
		ASSERT_LE(0, pid);
		if (!pid)
			_exit(create_and_pass(self, dev, sv[1]));
		close(sv[1]);
		/* Reaped before its buffers are received: only the socket has them. */
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(0, WEXITSTATUS(status)) TH_LOG("%s: creator failed", name);
		check_usage(_metadata, self, d, base, w, LIMIT, LIMIT, 0);
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 0, ps));

		ASSERT_EQ(2, recv_fds(sv[0], &val, bufs));
		close(bufs[0]);
		close(bufs[1]);
		close(sv[0]);
		check_released(_metadata, self, d, base);

		all = worker_create(w, dev, self->memfd, 0, LIMIT * ps);
		ASSERT_LE(0, all) TH_LOG("%s: %s", name, strerror(-all));
		EXPECT_EQ(-ENOMEM, worker_create(w, dev, self->memfd, 0, ps));
		check_usage(_metadata, self, d, base, w, LIMIT, LIMIT, LIMIT);
		close(all);
		check_released(_metadata, self, d, base);
		stop_worker(w);
	}
}

/*
 * CAP_IPC_LOCK lifts the limit and leaves the user's quota alone; the pages
 * still show in VmPin.
 */
TEST_F(memlock, ipc_lock)
{
	size_t ps = getpagesize();

	for (int d = 0; d < self->nr; d++) {
		struct worker *root = &self->worker[0], *capable = &self->worker[1];
		struct worker *user = &self->worker[2];
		const char *name = self->name[d];
		long base = pins_held();
		int dev = self->dev[d], bufs[3];

		/* Before any buffer: a worker forked later would inherit it. */
		start_worker(_metadata, root, 0, false);
		start_worker(_metadata, capable, self->uid, true);
		start_worker(_metadata, user, self->uid, false);

		bufs[0] = worker_create(root, dev, self->memfd, 0, 2 * LIMIT * ps);
		ASSERT_LE(0, bufs[0]) TH_LOG("%s: %s", name, strerror(-bufs[0]));
		check_usage(_metadata, self, d, base, root, 2 * LIMIT, 0, 2 * LIMIT);

		/* Not root, and CAP_IPC_LOCK only. */
		bufs[1] = worker_create(capable, dev, self->memfd, 2, LIMIT * ps);
		ASSERT_LE(0, bufs[1]) TH_LOG("%s: %s", name, strerror(-bufs[1]));
		check_usage(_metadata, self, d, base, capable, 4 * LIMIT, 0, 2 * LIMIT);

		/* Its user's other processes still have all of their quota. */
		bufs[2] = worker_create(user, dev, self->memfd, 0, LIMIT * ps);
		ASSERT_LE(0, bufs[2]) TH_LOG("%s: %s", name, strerror(-bufs[2]));
		EXPECT_EQ(-ENOMEM, worker_create(user, dev, self->memfd, 0, ps));
		check_usage(_metadata, self, d, base, user, 5 * LIMIT, LIMIT, LIMIT);

		for (int i = 0; i < 3; i++)
			close(bufs[i]);
		check_released(_metadata, self, d, base);
		stop_worker(root);
		stop_worker(capable);
		stop_worker(user);
	}
}

/*
 * The list of sparse_list_killed, a page and SPARSE_BYTES of holes, from a
 * process without CAP_IPC_LOCK: refused with ENOMEM in well under a second,
 * before the holes are filled (filling them takes all memory), with nothing
 * left pinned or charged. It needs the default size_limit_mb, which a
 * <module>.size_limit_mb= on the command line would change.
 */
TEST_F(memlock, sparse_list_at_once)
{
	size_t ps = getpagesize();
	/* Before the workers are forked, for them to inherit it. */
	int memfd = memfd_sized(SPARSE_BYTES + ps, F_SEAL_SHRINK, false);

	ASSERT_LE(0, memfd);
	for (int d = 0; d < self->nr; d++) {
		const char *name = self->name[d];
		struct worker *w = &self->worker[0];
		long base = pins_held(), ms;
		double t0;
		int buf;

		if (module_param_set(name, "size_limit_mb=")) {
			TH_LOG("%s: size_limit_mb on the command line: not tested", name);
			continue;
		}
		start_worker(_metadata, w, self->uid, false);
		t0 = now_s();
		buf = worker_create_pair(w, self->dev[d], memfd, ps, SPARSE_BYTES);
		ms = (now_s() - t0) * 1000;
		TH_LOG("%s: %s after %ld ms", name, buf < 0 ? strerror(-buf) : "a buffer", ms);
		EXPECT_EQ(-ENOMEM, buf);
		if (buf >= 0)
			close(buf);
		EXPECT_GT(1000, ms) TH_LOG("%s: the pins were not refused at once", name);
		check_usage(_metadata, self, d, base, w, 0, 0, 0);
		check_released(_metadata, self, d, base);
		stop_worker(w);
	}
	close(memfd);
}

TEST_HARNESS_MAIN
