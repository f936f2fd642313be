// SPDX-License-Identifier: GPL-2.0
/*
 * The udmabuf uAPI, checked on every device that offers it: /dev/udmabuf
 * and /dev/udmabuf_rs by default, or the devices named in $UDMABUF_DEVS
 * (separated by spaces). Each bad input must fail with the errno of the C
 * driver; data written through the memfd before the buffer exists (when the
 * pins may migrate the pages, out of ZONE_MOVABLE with movablecore=) and
 * after must read back through the dma-buf's mmap, with CPU access syncs;
 * and the pins must balance once the buffers are gone, also when the
 * process holding them is killed. With <module>.account_memlock=1 on the
 * command line (udmabuf_rs), buffers must be charged to their creator's
 * RLIMIT_MEMLOCK until they are released; without it, never. The pin
 * counters are system-wide: run the test alone.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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
			buf = req.count ? create_list(req.dev, req.memfd, req.count, req.size) :
					  create(req.dev, req.memfd, 0, req.size);
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
	int ret, fd, nr;

	if (send(w->sock, &req, sizeof(req), 0) != sizeof(req))
		return -EPIPE;
	nr = recv_fds(w->sock, &ret, &fd);
	if (nr < 0)
		return nr;
	return nr ? fd : ret < 0 ? ret : -EPROTO;
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

TEST_HARNESS_MAIN
