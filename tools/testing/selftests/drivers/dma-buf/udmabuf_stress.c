// SPDX-License-Identifier: GPL-2.0
/*
 * Race stress of udmabuf and pin_user_pages_fd(), for a bounded time.
 *
 * Threads of five roles share a small pool of memfds until a deadline: shmem
 * ones sealed with F_SEAL_SHRINK, as udmabuf requires, a hugetlb one if huge
 * pages are free, and a shmem one without seals, which udmabuf refuses but
 * gup_test pins.
 *
 * - Creators make dma-bufs on /dev/udmabuf and /dev/udmabuf_rs
 *   (UDMABUF_CREATE, and UDMABUF_CREATE_LIST of 2-4 items, at times from two
 *   memfds) over random ranges of pool memfds; they sometimes mmap a buffer,
 *   sync it for the CPU and touch a byte; and they close it.
 * - Pinners pin random ranges with PIN_FD_LONGTERM_TEST_START of
 *   /sys/kernel/debug/gup_test, sometimes read the pinned pages back
 *   (PIN_LONGTERM_TEST_READ), and unpin with PIN_LONGTERM_TEST_STOP or by
 *   closing the gup_test fd.
 * - Mutators punch holes in the memfds, fill them again with fallocate(),
 *   grow them, truncate the unsealed one up and down, and now and then try
 *   to add F_SEAL_WRITE, which waits for the pins to go
 *   (memfd_wait_for_pins()) and fails with EBUSY, or F_SEAL_FUTURE_WRITE,
 *   at times while holding a pin of their own. A memfd that gets a write
 *   seal is replaced in the pool.
 * - Killers fork children that create buffers on each device and pin
 *   through gup_test, and SIGKILL them once they hold them, or before they
 *   are done. The children also inherit what the other threads hold at the
 *   fork, so some buffers and pin sets are last released by the exit of a
 *   killed child.
 * - A swapper thread replaces pool memfds now and then. Every user works on
 *   its own dup(), so memfds are closed while others still use them.
 *
 * Errors are expected under these races and counted. Each operation has the
 * errnos its kernel paths can return here (see ops[] below); any other one,
 * or a child that dies of something else than our SIGKILL, fails the test.
 * At the end, everything is closed and the FOLL_PIN counters of /proc/vmstat
 * must be back to their values at the start: they are system-wide, so run
 * the test alone, as root. So must this process's VmPin, which the memlock
 * charges of its threads' buffers and pins (even root's) go to, whoever
 * releases them.
 * Devices or gup_test that are missing leave their parts out.
 *
 * Options:
 *   -t SECONDS  how long to run (default 20)
 *   -j THREADS  threads per role but the swapper (default 2)
 *   -s SEED     seed of the random choices (printed; it repeats the
 *               choices of a run, though not their timing)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/dma-buf.h>
#include <linux/types.h>
#include <linux/udmabuf.h>

#include "../../../../../mm/gup_test.h"
#include "kselftest.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE	0x0010
#endif

#define GUP_TEST_FILE	"/sys/kernel/debug/gup_test"
#define NR_DEVS		2
#define NR_SLOTS	4
#define MEMFD_SIZE	(4UL << 20)
#define MEMFD_MAX	(8UL << 20)	/* growing stops there */
#define MAX_PAGES	512		/* per range */
#define MAX_ITEMS	4		/* per UDMABUF_CREATE_LIST */
#define MAX_REPORTS	20		/* unexpected errors printed */

static const char * const dev_names[NR_DEVS] = {
	"/dev/udmabuf", "/dev/udmabuf_rs",
};

static int dev_fd[NR_DEVS] = { -1, -1 };
static int nr_devs;
static bool have_gup;
static size_t page_size, hpage_size;
static struct timespec deadline;
static int stop;

enum role { CREATOR, PINNER, MUTATOR, KILLER, SWAPPER, NR_ROLES };

static const char * const role_names[NR_ROLES] = {
	"creators", "pinners", "mutators", "killers", "pool",
};

/*
 * What the kernel code can return under these races, from reading it:
 *
 * - UDMABUF_CREATE(_LIST), both drivers: EINVAL when the memfd has no
 *   F_SEAL_SHRINK or got a write seal (both turn the EPERM of
 *   pin_user_pages_fd() for a seal added after their check into EINVAL), or
 *   when the range now ends past EOF (the unsealed memfd, truncated); ENOMEM
 *   for allocations, hugetlb pages or reservations, and failed migrations.
 *   The driver always gets a memfd, as every user holds its own dup():
 *   EBADFD would be a bug.
 * - mmap of a buffer: ENOMEM. DMA_BUF_IOCTL_SYNC: ENOMEM, or EIO from
 *   dma_map_sgtable() when bounce buffers run out.
 * - PIN_FD_LONGTERM_TEST_START: EINVAL and ENOMEM as above; EPERM for
 *   PIN_FD_TEST_FLAG_WRITE on a write-sealed memfd. READ and STOP of our
 *   own pins cannot fail: EFAULT is also what gup_test returns when
 *   pin_user_pages_fd() pins fewer pages than asked.
 * - Punching a hole: EPERM once a write seal landed. Filling: ENOMEM,
 *   ENOSPC for hugetlb without free huge pages, EINTR (hugetlbfs stops on
 *   any pending signal). ftruncate() up: EPERM when the other mutator grew
 *   the memfd past the new size meanwhile, which makes it a shrink that
 *   F_SEAL_SHRINK refuses; down, on the unsealed memfd: no error (memfds
 *   are VM_NORESERVE).
 * - F_SEAL_WRITE: EBUSY while pages are pinned (or mapped writable).
 *   F_SEAL_FUTURE_WRITE does not wait for pins: no error.
 * - fork(): EAGAIN, ENOMEM. A new shmem memfd: ENOMEM; failures to make a
 *   hugetlb one are not counted, a shmem one replaces it.
 */
struct op_desc {
	enum role role;
	const char *name;
	int allowed[4];		/* errnos, 0-terminated */
};

enum op {
	OP_CREATE,		/* + device index */
	OP_CREATE_RS,
	OP_LIST,		/* + device index */
	OP_LIST_RS,
	OP_MMAP,
	OP_SYNC,
	OP_GUP_OPEN,
	OP_PIN,
	OP_READ,
	OP_STOP,
	OP_CLOSE_UNPIN,
	OP_PUNCH,
	OP_FILL,
	OP_GROW,
	OP_SHRINK,
	OP_SEAL_PIN,
	OP_SEAL_WRITE,
	OP_SEAL_FUTURE,
	OP_SEALED_PINNED,
	OP_SEAL_UNPIN,
	OP_FORK,
	OP_KCREATE,		/* + device index */
	OP_KCREATE_RS,
	OP_KLIST,		/* + device index */
	OP_KLIST_RS,
	OP_KMMAP,
	OP_KPIN,
	OP_KILL_HOLDING,
	OP_KILL_EARLY,
	OP_SWAP,
	OP_MEMFD,
	NR_OPS
};

#define CREATE_ERRS	{ EINVAL, ENOMEM }
#define PIN_ERRS	{ EINVAL, ENOMEM, EPERM }

static const struct op_desc ops[NR_OPS] = {
	[OP_CREATE]	  = { CREATOR, "UDMABUF_CREATE udmabuf", CREATE_ERRS },
	[OP_CREATE_RS]	  = { CREATOR, "UDMABUF_CREATE udmabuf_rs", CREATE_ERRS },
	[OP_LIST]	  = { CREATOR, "UDMABUF_CREATE_LIST udmabuf", CREATE_ERRS },
	[OP_LIST_RS]	  = { CREATOR, "UDMABUF_CREATE_LIST udmabuf_rs", CREATE_ERRS },
	[OP_MMAP]	  = { CREATOR, "mmap and touch", { ENOMEM } },
	[OP_SYNC]	  = { CREATOR, "DMA_BUF_IOCTL_SYNC", { ENOMEM, EIO } },
	[OP_GUP_OPEN]	  = { PINNER, "open gup_test", { ENOMEM } },
	[OP_PIN]	  = { PINNER, "PIN_FD_LONGTERM_TEST_START", PIN_ERRS },
	[OP_READ]	  = { PINNER, "PIN_LONGTERM_TEST_READ" },
	[OP_STOP]	  = { PINNER, "PIN_LONGTERM_TEST_STOP" },
	[OP_CLOSE_UNPIN]  = { PINNER, "unpin by close" },
	[OP_PUNCH]	  = { MUTATOR, "punch hole", { EPERM } },
	[OP_FILL]	  = { MUTATOR, "fallocate", { ENOMEM, ENOSPC, EINTR } },
	[OP_GROW]	  = { MUTATOR, "ftruncate up", { EPERM } },
	[OP_SHRINK]	  = { MUTATOR, "ftruncate down (unsealed)" },
	[OP_SEAL_PIN]	  = { MUTATOR, "pin before sealing", PIN_ERRS },
	[OP_SEAL_WRITE]	  = { MUTATOR, "F_SEAL_WRITE", { EBUSY } },
	[OP_SEAL_FUTURE]  = { MUTATOR, "F_SEAL_FUTURE_WRITE" },
	[OP_SEALED_PINNED] = { MUTATOR, "F_SEAL_WRITE landed, own pin" },
	[OP_SEAL_UNPIN]	  = { MUTATOR, "unpin after sealing" },
	[OP_FORK]	  = { KILLER, "fork", { EAGAIN, ENOMEM } },
	[OP_KCREATE]	  = { KILLER, "child UDMABUF_CREATE udmabuf", CREATE_ERRS },
	[OP_KCREATE_RS]	  = { KILLER, "child UDMABUF_CREATE udmabuf_rs", CREATE_ERRS },
	[OP_KLIST]	  = { KILLER, "child UDMABUF_CREATE_LIST udmabuf", CREATE_ERRS },
	[OP_KLIST_RS]	  = { KILLER, "child UDMABUF_CREATE_LIST udmabuf_rs", CREATE_ERRS },
	[OP_KMMAP]	  = { KILLER, "child mmap", { ENOMEM } },
	[OP_KPIN]	  = { KILLER, "child PIN_FD_LONGTERM_TEST_START", PIN_ERRS },
	[OP_KILL_HOLDING] = { KILLER, "killed holding" },
	[OP_KILL_EARLY]	  = { KILLER, "killed before ready" },
	[OP_SWAP]	  = { SWAPPER, "memfd replaced" },
	[OP_MEMFD]	  = { SWAPPER, "new memfd", { ENOMEM } },
};

#define MAX_ERRNO	256	/* counted one by one below that */

static unsigned long op_ok[NR_OPS];
static unsigned long op_err[NR_OPS][MAX_ERRNO + 1];
static unsigned long unexpected;

#define ERRNO_NAME(e)	{ e, #e }

static const struct {
	int err;
	const char *name;
} errno_names[] = {
	ERRNO_NAME(EPERM), ERRNO_NAME(EINTR), ERRNO_NAME(EIO),
	ERRNO_NAME(E2BIG), ERRNO_NAME(EBADF), ERRNO_NAME(EAGAIN),
	ERRNO_NAME(ENOMEM), ERRNO_NAME(EFAULT), ERRNO_NAME(EBUSY),
	ERRNO_NAME(EEXIST), ERRNO_NAME(EINVAL), ERRNO_NAME(ENFILE),
	ERRNO_NAME(EMFILE), ERRNO_NAME(ENOTTY), ERRNO_NAME(EFBIG),
	ERRNO_NAME(ENOSPC), ERRNO_NAME(EBADFD), ERRNO_NAME(EOPNOTSUPP),
};

static const char *errno_name(int err)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(errno_names); i++)
		if (errno_names[i].err == err)
			return errno_names[i].name;
	return NULL;
}

/* Prints the first MAX_REPORTS failures as they happen, one line each. */
static __printf(1, 2) void report(const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (__atomic_fetch_add(&unexpected, 1, __ATOMIC_RELAXED) >= MAX_REPORTS)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	flockfile(stdout);
	ksft_print_msg("%s\n", line);
	funlockfile(stdout);
}

/* Counts @op ending with @err, 0 for success; checks that @err is allowed. */
static void record(enum op op, int err)
{
	const int *allowed = ops[op].allowed;
	int i;

	if (!err) {
		__atomic_fetch_add(&op_ok[op], 1, __ATOMIC_RELAXED);
		return;
	}
	__atomic_fetch_add(&op_err[op][err > 0 && err < MAX_ERRNO ?
					err : MAX_ERRNO], 1, __ATOMIC_RELAXED);
	for (i = 0; i < 4 && allowed[i]; i++)
		if (allowed[i] == err)
			return;
	report("unexpected: %s: %s (%d)", ops[op].name, strerror(err), err);
}

/* xorshift64*, one state per thread. */
static __u64 rnd64(__u64 *s)
{
	__u64 x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* A random number below @n, or 0. */
static size_t rnd(__u64 *s, size_t n)
{
	return n ? rnd64(s) % n : 0;
}

/* A non-zero state from @seed and @n (splitmix64). */
static __u64 rnd_state(__u64 seed, __u64 n)
{
	__u64 z = seed + (n + 1) * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z ? z : 1;
}

static bool running(void)
{
	struct timespec now;

	if (__atomic_load_n(&stop, __ATOMIC_RELAXED))
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec < deadline.tv_sec ||
	       (now.tv_sec == deadline.tv_sec && now.tv_nsec < deadline.tv_nsec);
}

static void sleep_us(unsigned long us)
{
	struct timespec ts = { us / 1000000, us % 1000000 * 1000 };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* The memfd pool. */
enum kind { SHMEM, HUGETLB, UNSEALED };

struct slot {
	int fd;
	enum kind kind;		/* of fd */
	enum kind want;		/* HUGETLB may fall back to SHMEM */
	unsigned long gen;	/* bumped when fd is replaced */
};

static struct slot pool[NR_SLOTS];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* A user's reference to a pool memfd: its own dup. */
struct held {
	int fd;
	int slot;
	enum kind kind;
	unsigned long gen;
	size_t align;		/* of sizes: the page or huge page size */
};

/* A memfd of @kind, filled and sealed as needed; returns it or -errno. */
static int make_memfd(enum kind kind)
{
	unsigned int flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
	int fd, err;

	if (kind == HUGETLB)
		flags |= MFD_HUGETLB;
	fd = memfd_create("udmabuf_stress", flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, MEMFD_SIZE) || fallocate(fd, 0, 0, MEMFD_SIZE) ||
	    (kind != UNSEALED && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK))) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

/* Takes a dup of slot @s, or of a random one if @s < 0. */
static bool acquire(__u64 *r, int s, struct held *h)
{
	if (s < 0)
		s = rnd(r, NR_SLOTS);
	pthread_mutex_lock(&pool_lock);
	h->fd = fcntl(pool[s].fd, F_DUPFD_CLOEXEC, 3);
	h->kind = pool[s].kind;
	h->gen = pool[s].gen;
	pthread_mutex_unlock(&pool_lock);
	h->slot = s;
	h->align = h->kind == HUGETLB ? hpage_size : page_size;
	return h->fd >= 0;
}

/*
 * Puts a new memfd in slot @s, unless @gen is not ~0UL and the slot no
 * longer holds generation @gen; closes the old one.
 */
static void replace_slot(int s, unsigned long gen)
{
	enum kind kind;
	int fd, old = -1;

	pthread_mutex_lock(&pool_lock);
	kind = pool[s].want;
	pthread_mutex_unlock(&pool_lock);
	fd = -ENOMEM;
	if (kind == HUGETLB) {
		fd = make_memfd(HUGETLB);
		/* No huge pages now: shmem until the next try. */
		if (fd < 0)
			kind = SHMEM;
	}
	if (fd < 0)
		fd = make_memfd(kind);
	record(OP_MEMFD, fd < 0 ? -fd : 0);
	if (fd < 0)
		return;
	pthread_mutex_lock(&pool_lock);
	if (gen == ~0UL || pool[s].gen == gen) {
		old = pool[s].fd;
		pool[s].fd = fd;
		pool[s].kind = kind;
		pool[s].gen++;
		fd = -1;
	}
	pthread_mutex_unlock(&pool_lock);
	if (old >= 0) {
		close(old);
		record(OP_SWAP, 0);
	}
	if (fd >= 0)
		close(fd);
}

static size_t file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? 0 : st.st_size;
}

/*
 * A random page-aligned range of @size bytes, often small, at most
 * MAX_PAGES pages; one page at 0 (to be refused) if @size has none.
 */
static void pick_range(__u64 *r, size_t size, size_t *off, size_t *len)
{
	size_t pages = size / page_size, max, n;

	if (!pages) {
		*off = 0;
		*len = page_size;
		return;
	}
	max = rnd(r, 2) ? 16 : MAX_PAGES;
	n = 1 + rnd(r, pages < max ? pages : max);
	*off = rnd(r, pages - n + 1) * page_size;
	*len = n * page_size;
}

/*
 * UDMABUF_CREATE of the first item, or UDMABUF_CREATE_LIST of @nr items.
 * Returns the dma-buf fd or -errno. No allocation: children use it too.
 */
static int create_buf(int dev, bool list, const struct udmabuf_create_item *items,
		      unsigned int nr, bool cloexec)
{
	union {
		struct udmabuf_create_list head;
		__u64 raw[(sizeof(struct udmabuf_create_list) +
			   MAX_ITEMS * sizeof(struct udmabuf_create_item)) / 8];
	} u = {};
	struct udmabuf_create c = {
		.memfd = items[0].memfd,
		.flags = cloexec ? UDMABUF_FLAGS_CLOEXEC : 0,
		.offset = items[0].offset,
		.size = items[0].size,
	};
	int ret;

	if (!list) {
		ret = ioctl(dev, UDMABUF_CREATE, &c);
	} else {
		u.head.flags = c.flags;
		u.head.count = nr;
		memcpy(u.head.list, items, nr * sizeof(*items));
		ret = ioctl(dev, UDMABUF_CREATE_LIST, &u.head);
	}
	return ret < 0 ? -errno : ret;
}

/* A random device that is there. */
static int pick_dev(__u64 *r)
{
	int d = rnd(r, NR_DEVS);

	return dev_fd[d] >= 0 ? d : !d;
}

/* PIN_FD_LONGTERM_TEST_START; returns 0 or the errno. */
static int pin_fd(int gup, int fd, size_t off, size_t len, unsigned int flags)
{
	struct pin_fd_test args = {
		.offset = off, .size = len, .fd = fd, .flags = flags,
	};

	return ioctl(gup, PIN_FD_LONGTERM_TEST_START, &args) ? errno : 0;
}

static unsigned int pin_flags(__u64 *r)
{
	return (rnd(r, 2) ? PIN_FD_TEST_FLAG_WRITE : 0) |
	       (rnd(r, 4) ? 0 : PIN_FD_TEST_FLAG_ACCOUNT);
}

/* Reads a byte of a mapping and writes it back changed. */
static void poke(char *p)
{
	__atomic_store_n(p, __atomic_load_n(p, __ATOMIC_RELAXED) + 1,
			 __ATOMIC_RELAXED);
}

struct worker {
	pthread_t thread;
	enum role role;
	__u64 rng;
};

/* Maps @size bytes of dma-buf @buf, syncs it at times, and touches a byte. */
static void touch(__u64 *r, int buf, size_t size)
{
	struct dma_buf_sync sync = {
		.flags = DMA_BUF_SYNC_START | DMA_BUF_SYNC_RW,
	};
	bool synced = false;
	char *p;
	size_t i;

	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	record(OP_MMAP, p == MAP_FAILED ? errno : 0);
	if (p == MAP_FAILED)
		return;
	if (rnd(r, 2)) {
		synced = !ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync);
		record(OP_SYNC, synced ? 0 : errno);
	}
	i = rnd(r, size);
	poke(p + i);
	if (synced) {
		sync.flags = DMA_BUF_SYNC_END | DMA_BUF_SYNC_RW;
		record(OP_SYNC, ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync) ? errno : 0);
	}
	munmap(p, size);
}

static void *creator(void *arg)
{
	struct udmabuf_create_item items[MAX_ITEMS] = {};
	struct worker *w = arg;
	struct held h[2];
	size_t off, len, total;
	unsigned int i, nr, nr_held;
	int d, buf;
	bool list;

	while (running()) {
		d = pick_dev(&w->rng);
		list = rnd(&w->rng, 2);
		nr = list ? 2 + rnd(&w->rng, MAX_ITEMS - 1) : 1;
		nr_held = list && !rnd(&w->rng, 4) ? 2 : 1;
		for (i = 0; i < nr_held; i++)
			if (!acquire(&w->rng, -1, &h[i]))
				break;
		if (i < nr_held) {
			while (i--)
				close(h[i].fd);
			sleep_us(1000);
			continue;
		}
		total = 0;
		for (i = 0; i < nr; i++) {
			int fd = h[i % nr_held].fd;

			pick_range(&w->rng, file_size(fd), &off, &len);
			items[i].memfd = fd;
			items[i].offset = off;
			items[i].size = len;
			total += len;
		}
		buf = create_buf(dev_fd[d], list, items, nr, rnd(&w->rng, 2));
		record((list ? OP_LIST : OP_CREATE) + d, buf < 0 ? -buf : 0);
		for (i = 0; i < nr_held; i++)
			close(h[i].fd);
		if (buf < 0)
			continue;
		if (!rnd(&w->rng, 4))
			touch(&w->rng, buf, total);
		close(buf);
	}
	return NULL;
}

static void *pinner(void *arg)
{
	size_t off, len, max = MAX_PAGES * page_size;
	struct worker *w = arg;
	char *data = malloc(max);
	int gup = -1, err;
	struct held h;
	__u64 addr;

	while (data && running()) {
		if (gup < 0) {
			gup = open(GUP_TEST_FILE, O_RDWR | O_CLOEXEC);
			record(OP_GUP_OPEN, gup < 0 ? errno : 0);
			if (gup < 0) {
				sleep_us(1000);
				continue;
			}
		}
		if (!acquire(&w->rng, -1, &h)) {
			sleep_us(1000);
			continue;
		}
		pick_range(&w->rng, file_size(h.fd), &off, &len);
		err = pin_fd(gup, h.fd, off, len, pin_flags(&w->rng));
		record(OP_PIN, err);
		/* The pins do not need the memfd open. */
		close(h.fd);
		if (err)
			continue;
		if (rnd(&w->rng, 2)) {
			addr = (uintptr_t)data;
			record(OP_READ, ioctl(gup, PIN_LONGTERM_TEST_READ, &addr) ?
			       errno : 0);
		}
		/* Holding them a while gives F_SEAL_WRITE something to wait for. */
		if (!rnd(&w->rng, 4))
			sleep_us(rnd(&w->rng, 500));
		if (rnd(&w->rng, 2)) {
			record(OP_STOP, ioctl(gup, PIN_LONGTERM_TEST_STOP) ?
			       errno : 0);
		} else {
			close(gup);
			gup = -1;
			record(OP_CLOSE_UNPIN, 0);
		}
	}
	if (gup >= 0)
		close(gup);
	free(data);
	return NULL;
}

/*
 * Tries to add a write seal to @h, at times while pinning part of it
 * through @gup; replaces the memfd in the pool if the seal lands.
 */
static void seal(struct worker *w, struct held *h, int *gup)
{
	bool future = !rnd(&w->rng, 4), pinned = false;
	size_t off, len;
	int err;

	if (have_gup && rnd(&w->rng, 2)) {
		if (*gup < 0)
			*gup = open(GUP_TEST_FILE, O_RDWR | O_CLOEXEC);
		if (*gup >= 0) {
			pick_range(&w->rng, file_size(h->fd), &off, &len);
			err = pin_fd(*gup, h->fd, off, len, 0);
			record(OP_SEAL_PIN, err);
			pinned = !err;
		}
	}
	err = fcntl(h->fd, F_ADD_SEALS,
		    future ? F_SEAL_FUTURE_WRITE : F_SEAL_WRITE) ? errno : 0;
	record(future ? OP_SEAL_FUTURE : OP_SEAL_WRITE, err);
	/* Possible: a hole punched since may have taken the pinned pages. */
	if (!err && !future && pinned)
		record(OP_SEALED_PINNED, 0);
	if (pinned)
		record(OP_SEAL_UNPIN, ioctl(*gup, PIN_LONGTERM_TEST_STOP) ?
		       errno : 0);
	if (!err)
		replace_slot(h->slot, h->gen);
}

static void *mutator(void *arg)
{
	struct timespec now, next_seal = { 0 };
	struct worker *w = arg;
	size_t size, off, len, to;
	unsigned int what;
	struct held h;
	int gup = -1;
	bool down;

	while (running()) {
		if (!acquire(&w->rng, -1, &h)) {
			sleep_us(1000);
			continue;
		}
		size = file_size(h.fd);
		what = rnd(&w->rng, 100);
		clock_gettime(CLOCK_MONOTONIC, &now);
		/* A write seal blocks the memfd for up to ~150 ms: not too often. */
		if (now.tv_sec > next_seal.tv_sec ||
		    (now.tv_sec == next_seal.tv_sec &&
		     now.tv_nsec >= next_seal.tv_nsec)) {
			seal(w, &h, &gup);
			next_seal = now;
			next_seal.tv_nsec += (50 + rnd(&w->rng, 200)) * 1000000L;
			if (next_seal.tv_nsec >= 1000000000L) {
				next_seal.tv_sec++;
				next_seal.tv_nsec -= 1000000000L;
			}
		} else if (what < 40) {
			pick_range(&w->rng, size, &off, &len);
			/* Partial pages too: zeroed, not freed. */
			if (!rnd(&w->rng, 4)) {
				off += rnd(&w->rng, page_size);
				len -= rnd(&w->rng, len / 2);
			}
			record(OP_PUNCH, fallocate(h.fd, FALLOC_FL_PUNCH_HOLE |
						   FALLOC_FL_KEEP_SIZE, off, len) ?
			       errno : 0);
		} else if (what < 75) {
			pick_range(&w->rng, size, &off, &len);
			record(OP_FILL, fallocate(h.fd, 0, off, len) ? errno : 0);
		} else if (h.kind == UNSEALED) {
			to = rnd(&w->rng, MEMFD_MAX / page_size + 1) * page_size;
			down = to < size;
			if (to != size)
				record(down ? OP_SHRINK : OP_GROW,
				       ftruncate(h.fd, to) ? errno : 0);
		} else if (size + h.align <= MEMFD_MAX) {
			to = size + h.align * (1 + rnd(&w->rng, 4));
			if (to > MEMFD_MAX)
				to = MEMFD_MAX / h.align * h.align;
			record(OP_GROW, ftruncate(h.fd, to) ? errno : 0);
		}
		close(h.fd);
	}
	if (gup >= 0)
		close(gup);
	return NULL;
}

/* What a child reports through its pipe; op < 0: ready. */
struct child_rec {
	int op;
	int err;
};

static void child_send(int wr, int op, int err)
{
	struct child_rec rec = { op, err };

	if (write(wr, &rec, sizeof(rec)) != sizeof(rec))
		_exit(1);
}

/*
 * In a killer's child: creates 1-3 buffers of @memfd on each device, maps
 * some, pins a range through gup_test, says so through @wr and waits for
 * its SIGKILL. Only async-signal-safe calls: the parent has threads.
 */
static __noreturn void child_main(int memfd, int wr, __u64 seed)
{
	struct udmabuf_create_item items[MAX_ITEMS];
	size_t off, len, total;
	__u64 rng = seed;
	unsigned int i, nr;
	int d, n, buf, gup;
	bool list;
	void *p;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	for (d = 0; d < NR_DEVS; d++) {
		if (dev_fd[d] < 0)
			continue;
		for (n = 1 + rnd(&rng, 3); n > 0; n--) {
			list = rnd(&rng, 2);
			nr = list ? 2 + rnd(&rng, MAX_ITEMS - 1) : 1;
			total = 0;
			for (i = 0; i < nr; i++) {
				pick_range(&rng, file_size(memfd), &off, &len);
				items[i].memfd = memfd;
				items[i].offset = off;
				items[i].size = len;
				total += len;
			}
			buf = create_buf(dev_fd[d], list, items, nr, true);
			child_send(wr, (list ? OP_KLIST : OP_KCREATE) + d,
				   buf < 0 ? -buf : 0);
			if (buf < 0 || rnd(&rng, 2))
				continue;
			p = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED,
				 buf, 0);
			child_send(wr, OP_KMMAP, p == MAP_FAILED ? errno : 0);
			if (p != MAP_FAILED)
				poke((char *)p + rnd(&rng, total));
		}
	}
	gup = have_gup ? open(GUP_TEST_FILE, O_RDWR) : -1;
	if (gup >= 0) {
		pick_range(&rng, file_size(memfd), &off, &len);
		child_send(wr, OP_KPIN, pin_fd(gup, memfd, off, len,
					       pin_flags(&rng)));
	}
	child_send(wr, -1, 0);
	for (;;)
		pause();
}

/* Records what the child said; returns whether it said it is ready. */
static bool child_records(int rd)
{
	struct child_rec rec[16];
	bool ready = false;
	ssize_t n;
	int i;

	while ((n = read(rd, rec, sizeof(rec))) > 0)
		for (i = 0; i < n / (ssize_t)sizeof(rec[0]); i++) {
			if (rec[i].op < 0)
				ready = true;
			else if (rec[i].op < NR_OPS)
				record(rec[i].op, rec[i].err);
		}
	return ready;
}

/* Waits up to 2 s for the child to be ready. */
static bool wait_ready(int rd)
{
	struct pollfd pfd = { .fd = rd, .events = POLLIN };
	int i;

	for (i = 0; i < 200; i++) {
		if (poll(&pfd, 1, 10) < 0 && errno != EINTR)
			return false;
		if (child_records(rd))
			return true;
		if (pfd.revents & (POLLHUP | POLLERR))
			return false;
	}
	return false;
}

static void *killer(void *arg)
{
	struct worker *w = arg;
	bool ready, early;
	__u64 seed;
	struct held h;
	int pipefd[2], status;
	pid_t pid;

	while (running()) {
		if (!acquire(&w->rng, -1, &h)) {
			sleep_us(1000);
			continue;
		}
		if (pipe2(pipefd, O_CLOEXEC)) {
			close(h.fd);
			sleep_us(1000);
			continue;
		}
		seed = rnd_state(rnd64(&w->rng), 0);
		pid = fork();
		if (!pid) {
			close(pipefd[0]);
			child_main(h.fd, pipefd[1], seed);
		}
		record(OP_FORK, pid < 0 ? errno : 0);
		close(pipefd[1]);
		close(h.fd);
		if (pid < 0) {
			close(pipefd[0]);
			sleep_us(10000);
			continue;
		}
		fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
		early = !rnd(&w->rng, 4);
		if (early)
			sleep_us(rnd(&w->rng, 2000));
		ready = !early && wait_ready(pipefd[0]);
		kill(pid, SIGKILL);
		status = 0;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
			report("child %d: %s %d", pid,
			       WIFSIGNALED(status) ? "signal" : "exit",
			       WIFSIGNALED(status) ? WTERMSIG(status) :
						     WEXITSTATUS(status));
		/* What it managed before its end, even if not ready. */
		ready = child_records(pipefd[0]) || ready;
		close(pipefd[0]);
		record(ready ? OP_KILL_HOLDING : OP_KILL_EARLY, 0);
	}
	return NULL;
}

static void *swapper(void *arg)
{
	struct worker *w = arg;

	while (running()) {
		sleep_us(20000 + rnd(&w->rng, 80000));
		replace_slot(rnd(&w->rng, NR_SLOTS), ~0UL);
	}
	return NULL;
}

/* The FOLL_PIN counters, and this process's VmPin. */
struct counters {
	long long acquired, released;
	long long vm_pin_kb;
};

static bool read_counters(struct counters *c)
{
	char line[128];
	int fd, found = 0;
	FILE *f;

	/* Folds the per-CPU deltas; EINVAL if one is negative, folded anyway. */
	fd = open("/proc/sys/vm/stat_refresh", O_WRONLY);
	if (fd < 0)
		return false;
	if (write(fd, "1", 1) != 1 && errno != EINVAL) {
		close(fd);
		return false;
	}
	close(fd);
	f = fopen("/proc/vmstat", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		found += sscanf(line, "nr_foll_pin_acquired %lld", &c->acquired) == 1;
		found += sscanf(line, "nr_foll_pin_released %lld", &c->released) == 1;
	}
	fclose(f);
	f = fopen("/proc/self/status", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		found += sscanf(line, "VmPin: %lld", &c->vm_pin_kb) == 1;
	fclose(f);
	return found == 3;
}

static bool balanced(const struct counters *base, const struct counters *now)
{
	return now->acquired - now->released == base->acquired - base->released &&
	       now->vm_pin_kb == base->vm_pin_kb;
}

static void print_stats(void)
{
	char line[512];
	int role, op, e, n;
	bool used;

	for (role = 0; role < NR_ROLES; role++) {
		ksft_print_msg("%s:\n", role_names[role]);
		for (op = 0; op < NR_OPS; op++) {
			if (ops[op].role != (enum role)role)
				continue;
			n = snprintf(line, sizeof(line), "%-38s %8lu ok",
				     ops[op].name, op_ok[op]);
			used = op_ok[op];
			for (e = 1; e <= MAX_ERRNO; e++) {
				const char *name = e < MAX_ERRNO ? errno_name(e) : "other";

				if (!op_err[op][e] || n >= (int)sizeof(line))
					continue;
				used = true;
				if (name)
					n += snprintf(line + n, sizeof(line) - n,
						      ", %s %lu", name, op_err[op][e]);
				else
					n += snprintf(line + n, sizeof(line) - n,
						      ", errno %d %lu", e, op_err[op][e]);
			}
			if (used)
				ksft_print_msg("  %s\n", line);
		}
	}
}

static void bad_usage(const char *prog)
{
	fprintf(stderr, "usage: %s [-t SECONDS] [-j THREADS] [-s SEED]\n", prog);
	exit(KSFT_FAIL);
}

int main(int argc, char **argv)
{
	void *(*fns[NR_ROLES])(void *) = {
		creator, pinner, mutator, killer, swapper,
	};
	unsigned long seconds = 20, threads = 2;
	struct counters base = { 0 }, now;
	bool counters, ok = false;
	unsigned long long seed;
	struct worker *workers;
	int i, nr_workers = 0, opt, fd, role, ret;
	struct stat st;
	char *end;

	seed = (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
	while ((opt = getopt(argc, argv, "t:j:s:h")) != -1) {
		errno = 0;
		switch (opt) {
		case 't':
			seconds = strtoul(optarg, &end, 0);
			if (errno || *end || !seconds)
				bad_usage(argv[0]);
			break;
		case 'j':
			threads = strtoul(optarg, &end, 0);
			if (errno || *end || !threads || threads > 64)
				bad_usage(argv[0]);
			break;
		case 's':
			seed = strtoull(optarg, &end, 0);
			if (errno || *end)
				bad_usage(argv[0]);
			break;
		default:
			bad_usage(argv[0]);
		}
	}

	ksft_print_header();
	page_size = sysconf(_SC_PAGESIZE);
	for (i = 0; i < NR_DEVS; i++) {
		dev_fd[i] = open(dev_names[i], O_RDWR | O_CLOEXEC);
		if (dev_fd[i] >= 0)
			nr_devs++;
		else
			ksft_print_msg("%s: %s, left out\n", dev_names[i],
				       strerror(errno));
	}
	fd = open(GUP_TEST_FILE, O_RDWR | O_CLOEXEC);
	have_gup = fd >= 0;
	if (have_gup)
		close(fd);
	else
		ksft_print_msg("%s: %s (CONFIG_GUP_TEST, debugfs, root), left out\n",
			       GUP_TEST_FILE, strerror(errno));
	if (!nr_devs && !have_gup)
		ksft_exit_skip("no udmabuf device and no gup_test\n");
	if (nr_devs == 1)
		ksft_print_msg("only %s tested\n", dev_names[dev_fd[0] < 0]);
	ksft_set_plan(2);
	ksft_print_msg("%lu s, %lu threads per role, seed %llu (-s to repeat)\n",
		       seconds, threads, seed);
	counters = read_counters(&base);

	/* The pool: sealed shmem, hugetlb if it can be had, unsealed shmem. */
	for (i = 0; i < NR_SLOTS; i++) {
		pool[i].want = i == 2 ? HUGETLB : i == 3 ? UNSEALED : SHMEM;
		pool[i].kind = pool[i].want;
		pool[i].fd = make_memfd(pool[i].kind);
		if (pool[i].fd >= 0 && pool[i].kind == HUGETLB) {
			if (!fstat(pool[i].fd, &st))
				hpage_size = st.st_blksize;
			if (hpage_size < page_size || MEMFD_SIZE % hpage_size) {
				close(pool[i].fd);
				pool[i].fd = -EINVAL;
			}
		}
		if (pool[i].fd < 0 && pool[i].kind == HUGETLB) {
			ksft_print_msg("no hugetlb memfd (%s): shmem only\n",
				       strerror(-pool[i].fd));
			pool[i].want = SHMEM;
			pool[i].kind = SHMEM;
			pool[i].fd = make_memfd(SHMEM);
		}
		if (pool[i].fd < 0)
			ksft_exit_fail_msg("memfd: %s\n", strerror(-pool[i].fd));
	}

	workers = calloc(NR_ROLES * threads, sizeof(*workers));
	if (!workers)
		ksft_exit_fail_msg("out of memory\n");
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += seconds;
	for (role = 0; role < NR_ROLES; role++) {
		if ((role == CREATOR && !nr_devs) || (role == PINNER && !have_gup))
			continue;
		for (i = 0; i < (role == SWAPPER ? 1 : (int)threads); i++) {
			struct worker *w = &workers[nr_workers];

			w->role = role;
			w->rng = rnd_state(seed, nr_workers);
			ret = pthread_create(&w->thread, NULL, fns[role], w);
			if (ret) {
				report("pthread_create: %s", strerror(ret));
				__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
				break;
			}
			nr_workers++;
		}
	}
	while (running())
		sleep_us(100000);
	__atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < nr_workers; i++)
		pthread_join(workers[i].thread, NULL);
	free(workers);
	for (i = 0; i < NR_SLOTS; i++)
		close(pool[i].fd);
	for (i = 0; i < NR_DEVS; i++)
		if (dev_fd[i] >= 0)
			close(dev_fd[i]);

	print_stats();
	if (unexpected)
		ksft_print_msg("%lu unexpected errors or child deaths\n",
			       unexpected);
	ksft_test_result(!unexpected, "no unexpected errno\n");

	if (!counters) {
		ksft_test_result_skip("pins balanced: no counters (root?)\n");
		ksft_finished();
	}
	/* The last fput of a buffer or gup_test file may come a little later. */
	now = base;
	for (i = 0; i < 50; i++) {
		if (!read_counters(&now))
			break;
		ok = balanced(&base, &now);
		if (ok)
			break;
		sleep_us(100000);
	}
	ksft_print_msg("pins: acquired +%lld, released +%lld, held %+lld\n",
		       now.acquired - base.acquired, now.released - base.released,
		       (now.acquired - now.released) -
		       (base.acquired - base.released));
	ksft_print_msg("VmPin: %lld kB, was %lld kB\n", now.vm_pin_kb,
		       base.vm_pin_kb);
	ksft_test_result(ok, "pins balanced\n");
	ksft_finished();
}
