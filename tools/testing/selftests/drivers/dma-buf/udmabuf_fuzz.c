// SPDX-License-Identifier: GPL-2.0
/*
 * A seeded random ioctl fuzzer that sends each input to /dev/udmabuf_rs and
 * to /dev/udmabuf and requires the same result: the same errno, or two
 * dma-bufs of the same size, close-on-exec flag and contents, which must be
 * those of the memfd ranges.
 *
 * Inputs: UDMABUF_CREATE and UDMABUF_CREATE_LIST (0 to list_limit + 1 items,
 * and counts far past it) with random flags, offsets and sizes (page aligned
 * or not, zero, past the end of the memfd, near size_limit_mb, huge,
 * overflowing), on memfds sealed as required or not (shmem with data, holes
 * or fallocated pages, hugetlb), on other files and on bad fd numbers; on
 * sparse memfds larger than 4 GiB, ranges of a few pages with offsets and
 * ends past 4 GiB, and sizes just past 4 GiB, which a driver that cut an
 * offset or a size to 32 bits would map elsewhere or accept; the
 * argument at NULL, bad, PROT_NONE or unmapped addresses or running into
 * them; and unknown ioctl numbers. About half of the inputs start valid, with
 * at most one field changed.
 *
 * Options:
 *   -s SEED  seed (default: from the time; printed)
 *   -n N     iterations (default 20000)
 *   -t SECS  stop after SECS seconds (default 60)
 *   -i I     run iteration I only, to replay a mismatch
 *
 * Both drivers must have the same list_limit and size_limit_mb. A mismatch
 * prints the input and how to replay it; the test stops after 10 of them.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/udmabuf.h>

#include "kselftest.h"

#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE	0x0010
#endif
#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL		0x0008U
#endif

#define DEV_RS		"/dev/udmabuf_rs"
#define DEV_C		"/dev/udmabuf"
#define MAX_ITEMS	1025	/* list_limit + 1, with the default limit */
#define ARENA_PAGES	8	/* room for a list of MAX_ITEMS items */
#define MAX_FILES	48
#define MAX_MISMATCHES	10
#define PROGRESS_EVERY	2000
/*
 * Both drivers allocate page arrays for buffers within size_limit_mb before
 * they look at the memfd: keep those below 4 GiB, for any limit, but for a
 * few pages more, for the sizes just past 4 GiB tried on sparse memfds.
 */
#define SAFE_BYTES	(4ULL << 30)
#define SAFE_EXTRA	64	/* pages */
/*
 * Sparse memfds: the generator keeps the ranges it lets the drivers pin
 * within SPARSE_WIN pages of a mark (0, every 4 GiB, the end), so that the
 * holes filled stay few; the data is written around the marks.
 */
#define SPARSE_WIN	32
#define SPARSE_DATA	16
#define MAX_MARKS	6

enum op { OP_CREATE, OP_LIST, OP_OTHER };

enum ptr_kind {
	PTR_OK,			/* readable, up to 63 bytes before a PROT_NONE page */
	PTR_NULL,
	PTR_BAD,		/* low, kernel or random */
	PTR_NONE,		/* in the PROT_NONE page */
	PTR_CROSS_NONE,		/* readable, but its end is in the PROT_NONE page */
	PTR_UNMAPPED,		/* in that page, unmapped for the calls */
	PTR_CROSS_UNMAPPED,
	NR_PTR_KINDS,
};

static const char * const ptr_names[] = {
	"ok", "null", "bad", "prot-none", "cross-prot-none", "unmapped",
	"cross-unmapped",
};

struct file_ent {
	int fd;
	bool owned;		/* to close at the end */
	bool good;		/* a memfd both drivers accept, in good_files[] */
	__u64 size;		/* for the generator */
	char name[48];
	/* A sparse memfd, in sparse_files[] instead: pins stay near its marks. */
	unsigned int nr_marks;
	__u64 marks[MAX_MARKS];
};

struct item {
	int file;		/* in files[], or -1 for a raw fd number */
	struct udmabuf_create_item it;
};

struct input {
	enum op op;
	unsigned int cmd;
	__u32 flags;
	__u32 count;		/* the count field of a list */
	unsigned int nitems;	/* items laid out */
	enum ptr_kind ptr;
	unsigned long bad_ptr;
	size_t shift;		/* from the guard page: before it (PTR_OK), or into it */
	bool rs_first;
	struct item items[MAX_ITEMS];
};

static struct file_ent files[MAX_FILES];
static int nr_files, good_files[MAX_FILES], nr_good;
static int sparse_files[MAX_FILES], nr_sparse;
static int max_fd, closed_fd;
static size_t ps;
static unsigned char *arena, *guard;
static __u32 list_limit;
static __u64 pglimit;	/* size_limit_mb in pages, as the drivers compute it */
static __u64 rng;
static struct input cur;
static unsigned char argbuf[sizeof(struct udmabuf_create_list) +
			    MAX_ITEMS * sizeof(struct udmabuf_create_item)];

/* splitmix64 */
static __u64 rnd(void)
{
	__u64 z = (rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static __u64 below(__u64 n)
{
	return n ? rnd() % n : 0;
}

static bool chance(unsigned int percent)
{
	return below(100) < percent;
}

static int add_file(int fd, bool owned, bool good, __u64 size, const char *name)
{
	struct file_ent *f = &files[nr_files];

	if (fd < 0)
		return -1;
	if (nr_files == MAX_FILES) {
		if (owned)
			close(fd);
		return -1;
	}
	f->fd = fd;
	f->owned = owned;
	f->good = good;
	f->size = size;
	snprintf(f->name, sizeof(f->name), "%s", name);
	if (good)
		good_files[nr_good++] = nr_files;
	if (fd > max_fd)
		max_fd = fd;
	return nr_files++;
}

enum fill { FILL_HOLES, FILL_DATA, FILL_FALLOC };

static int fill_memfd(int fd, __u64 size, enum fill fill, bool huge)
{
	unsigned char *p;
	__u64 i;

	if (fill == FILL_HOLES || !size)
		return 0;
	/* Without free huge pages, writing through a mapping would SIGBUS. */
	if ((fill == FILL_FALLOC || huge) && fallocate(fd, 0, 0, size))
		return -1;
	if (fill == FILL_FALLOC)
		return 0;
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -1;
	for (i = 0; i < size; i++)
		p[i] = (unsigned char)(i * 7 + i / 4096 + fd * 31);
	munmap(p, size);
	return 0;
}

/* Adds a memfd of @size bytes with @seals to the files. Returns its index or -1. */
static int add_memfd(const char *name, unsigned int mfd_flags, __u64 size,
		     unsigned int seals, enum fill fill, bool good)
{
	int fd = memfd_create("udmabuf-fuzz", mfd_flags);

	if (fd < 0)
		return -1;
	if (ftruncate(fd, size) || fill_memfd(fd, size, fill, mfd_flags & MFD_HUGETLB) ||
	    (seals && fcntl(fd, F_ADD_SEALS, seals))) {
		close(fd);
		return -1;
	}
	return add_file(fd, true, good, size, name);
}

static long hugepage_size(void)
{
	char line[128];
	long kb = 0;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Hugepagesize: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb * 1024;
}

/* Byte @i of page @page of a sparse memfd: each page its own. */
static unsigned char sparse_byte(__u64 page, size_t i)
{
	return (unsigned char)((page * 0x9e3779b97f4a7c15ULL >> 56) + i * 7);
}

/* Writes pages [@from, @to) of the sparse memfd @fd, through @huge pages if not 0. */
static int fill_sparse(int fd, __u64 from, __u64 to, long huge)
{
	size_t len = huge ? huge : ps;
	unsigned char *p;
	__u64 off;
	size_t i;

	if (huge) {
		from = from * ps / huge * huge / ps;
		to = (to * ps + huge - 1) / huge * huge / ps;
	}
	for (off = from * ps; off < to * ps; off += len) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off);
		if (p == MAP_FAILED)
			return -1;
		for (i = 0; i < len; i++)
			p[i] = sparse_byte((off + i) / ps, i % ps);
		munmap(p, len);
	}
	return 0;
}

/*
 * Adds a sealed memfd of @size bytes, more than 4 GiB, with data around its
 * marks, 0, every 4 GiB and the end, and holes elsewhere; through whole
 * huge pages if @huge is not 0, so that the ranges near the marks need no
 * more of them.
 */
static int add_sparse(const char *name, unsigned int mfd_flags, __u64 size, long huge)
{
	int fd = memfd_create("udmabuf-fuzz", MFD_ALLOW_SEALING | mfd_flags), i;
	__u64 marks[MAX_MARKS], mark, np = size / ps;
	unsigned int m, nr = 0;

	if (fd < 0)
		return -1;
	for (mark = 0; mark < size && nr < MAX_MARKS - 1; mark += 1ULL << 32)
		marks[nr++] = mark;
	marks[nr++] = size;
	if (ftruncate(fd, size))
		goto err;
	for (m = 0; m < nr; m++) {
		__u64 page = marks[m] / ps;

		if (fill_sparse(fd, page > SPARSE_DATA ? page - SPARSE_DATA : 0,
				page + SPARSE_DATA < np ? page + SPARSE_DATA : np, huge))
			goto err;
	}
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK))
		goto err;
	i = add_file(fd, true, false, size, name);
	if (i < 0)
		return -1;
	memcpy(files[i].marks, marks, sizeof(marks));
	files[i].nr_marks = nr;
	sparse_files[nr_sparse++] = i;
	return i;
err:
	close(fd);
	return -1;
}

/* The sparse memfd whose fd is @fd, or NULL. */
static const struct file_ent *sparse_file(__u32 fd)
{
	for (int i = 0; i < nr_sparse; i++)
		if ((__u32)files[sparse_files[i]].fd == fd)
			return &files[sparse_files[i]];
	return NULL;
}

/* Whether [@off, @off + @size) is within SPARSE_WIN pages of a mark of @f. */
static bool near_marks(const struct file_ent *f, __u64 off, __u64 size)
{
	__u64 win = SPARSE_WIN * ps, lo = 0, hi = 0;

	/* The windows around the marks, merged where they touch. */
	for (unsigned int m = 0; m < f->nr_marks; m++) {
		__u64 from = f->marks[m] > win ? f->marks[m] - win : 0;
		__u64 to = f->marks[m] + win < f->size ? f->marks[m] + win : f->size;

		if (from > hi) {
			if (off >= lo && off + size <= hi)
				return true;
			lo = from;
		}
		hi = to;
	}
	return off >= lo && off + size <= hi;
}

static void setup_files(int dev_rs, int dev_c)
{
	const unsigned int seal = MFD_ALLOW_SEALING;
	long huge = hugepage_size();
	int data, partial, fd, buf, p[2], sv[2];
	struct udmabuf_create c;
	char path[64];

	if (add_memfd("shmem, 1 page", seal, ps, F_SEAL_SHRINK, FILL_DATA, true) < 0)
		ksft_exit_fail_perror("memfd");
	data = add_memfd("shmem, 16 pages", seal, 16 * ps, F_SEAL_SHRINK, FILL_DATA, true);
	if (data < 0)
		ksft_exit_fail_perror("memfd");
	add_memfd("shmem, 64 pages of holes", seal, 64 * ps, F_SEAL_SHRINK, FILL_HOLES, true);
	add_memfd("shmem, 128 fallocated pages", seal, 128 * ps, F_SEAL_SHRINK, FILL_FALLOC,
		  true);
	add_memfd("shmem, 8 pages, all seals but write", seal, 8 * ps,
		  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL, FILL_DATA, true);
	add_memfd("shmem, 4 pages, MFD_NOEXEC_SEAL", MFD_NOEXEC_SEAL, 4 * ps, F_SEAL_SHRINK,
		  FILL_DATA, true);
	add_memfd("shmem, empty", seal, 0, F_SEAL_SHRINK, FILL_HOLES, false);
	add_memfd("shmem, unsealed", seal, 4 * ps, 0, FILL_DATA, false);
	add_memfd("shmem, F_SEAL_GROW only", seal, 4 * ps, F_SEAL_GROW, FILL_DATA, false);
	add_memfd("shmem, F_SEAL_WRITE", seal, 4 * ps, F_SEAL_SHRINK | F_SEAL_WRITE,
		  FILL_DATA, false);
	add_memfd("shmem, F_SEAL_FUTURE_WRITE", seal, 4 * ps,
		  F_SEAL_SHRINK | F_SEAL_FUTURE_WRITE, FILL_DATA, false);
	add_memfd("shmem, no MFD_ALLOW_SEALING", 0, 4 * ps, 0, FILL_DATA, false);
	/* Both refuse a range that ends in the partial last page. */
	partial = add_memfd("shmem, 16 pages + 100 bytes", seal, 16 * ps + 100, F_SEAL_SHRINK,
			    FILL_DATA, true);

	if (huge > 0 && huge <= 4 << 20 &&
	    add_memfd("hugetlb, 1 page", seal | MFD_HUGETLB, huge, F_SEAL_SHRINK, FILL_DATA,
		      true) >= 0) {
		add_memfd("hugetlb, 1 page of holes", seal | MFD_HUGETLB, huge, F_SEAL_SHRINK,
			  FILL_HOLES, true);
		add_memfd("hugetlb, unsealed", seal | MFD_HUGETLB, huge, 0, FILL_HOLES, false);
		add_memfd("hugetlb, F_SEAL_WRITE", seal | MFD_HUGETLB, huge,
			  F_SEAL_SHRINK | F_SEAL_WRITE, FILL_HOLES, false);
	} else {
		ksft_print_msg("no free huge page of 4 MiB at most: hugetlb memfds not tested\n");
	}

	/* Both refuse a memfd not open for reading and writing, after the seals. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", files[data].fd);
	add_file(open(path, O_RDONLY), true, false, 16 * ps, "shmem, 16 pages, read-only");
	add_file(open(path, O_WRONLY), true, false, 16 * ps, "shmem, 16 pages, write-only");
	if (partial >= 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", files[partial].fd);
		add_file(open(path, O_RDONLY), true, false, 16 * ps + 100,
			 "shmem, 16 pages + 100 bytes, read-only");
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", files[data].fd);
	add_file(open(path, O_PATH), true, false, 16 * ps, "O_PATH of shmem, 16 pages");
	fd = open("/dev/shm", O_TMPFILE | O_RDWR, 0600);
	if (fd >= 0 && ftruncate(fd, 4 * ps)) {
		close(fd);
		fd = -1;
	}
	add_file(fd, true, false, 4 * ps, "tmpfs O_TMPFILE");
#ifdef __NR_memfd_secret
	add_file(syscall(__NR_memfd_secret, 0), true, false, 0, "memfd_secret");
#endif
	add_file(open("/dev/null", O_RDWR), true, false, 0, "/dev/null");
	add_file(open("/dev/zero", O_RDWR), true, false, 0, "/dev/zero");
	add_file(open("/proc/self/status", O_RDONLY), true, false, 0, "/proc/self/status");
	if (!pipe(p)) {
		add_file(p[0], true, false, 0, "pipe, read end");
		add_file(p[1], true, false, 0, "pipe, write end");
	}
	if (!socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
		add_file(sv[0], true, false, 0, "socket");
		add_file(sv[1], true, false, 0, "socket peer");
	}
	add_file(dev_rs, false, false, 0, DEV_RS);
	add_file(dev_c, false, false, 0, DEV_C);
	c = (struct udmabuf_create){ .memfd = files[data].fd, .size = ps };
	buf = ioctl(dev_c, UDMABUF_CREATE, &c);
	add_file(buf, true, false, ps, "dma-buf");

	/* Past 4 GiB, with holes: last, so that the other files keep their numbers. */
	if (add_sparse("shmem, sparse, 4 GiB + 64 pages", 0, (4ULL << 30) + 64 * ps, 0) < 0 ||
	    add_sparse("shmem, sparse, 16 GiB + 16 pages", 0, (16ULL << 30) + 16 * ps, 0) < 0)
		ksft_print_msg("sparse shmem memfd: %s\n", strerror(errno));
	if (huge > 0 && huge <= 4 << 20 &&
	    add_sparse("hugetlb, sparse, 4 GiB + 1 huge page", MFD_HUGETLB, (4ULL << 30) + huge,
		       huge) < 0)
		ksft_print_msg("no 3 free huge pages: sparse hugetlb memfd not tested\n");

	/* A free fd number, far above the ones the test allocates. */
	for (closed_fd = 1000; fcntl(closed_fd, F_GETFD) != -1; closed_fd++)
		;
}

static __u64 file_size(const struct item *it)
{
	return it->file >= 0 ? files[it->file].size : 16 * ps;
}

static void gen_fd(struct item *it)
{
	static const __u32 raw[] = { UINT32_MAX, 0x80000000, INT32_MAX, 0xffff };
	unsigned int r = below(10);

	it->file = -1;
	if (r < 6)
		it->file = good_files[below(nr_good)];
	else if (r < 9)
		it->file = below(nr_files);
	if (it->file >= 0) {
		it->it.memfd = files[it->file].fd;
		return;
	}
	switch (below(4)) {
	case 0:
		it->it.memfd = closed_fd;
		break;
	case 1:
		it->it.memfd = raw[below(ARRAY_SIZE(raw))];
		break;
	case 2:
		it->it.memfd = below(max_fd + 4);
		break;
	default:
		it->it.memfd = rnd();
		break;
	}
}

static __u64 huge_value(void)
{
	const __u64 mask = ~(__u64)(ps - 1);
	const __u64 v[] = {
		UINT64_MAX, UINT64_MAX & mask, 1ULL << 63, (1ULL << 63) - ps,
		(1ULL << 63) + ps, INT64_MAX, 1ULL << 52, (1ULL << 52) + ps,
	};

	if (chance(50))
		return v[below(ARRAY_SIZE(v))];
	return (rnd() | 1ULL << (52 + below(12))) & (chance(70) ? mask : UINT64_MAX);
}

/* Near size_limit_mb (up to SAFE_BYTES), split in @parts. */
static __u64 near_limit(unsigned int parts)
{
	__u64 lim = pglimit * ps;

	if (lim > SAFE_BYTES)
		lim = SAFE_BYTES;
	lim = lim / (parts ? parts : 1) & ~(__u64)(ps - 1);
	switch (below(5)) {
	case 0:
		return lim;
	case 1:
		return lim + ps;
	case 2:
		return lim >= ps ? lim - ps : 0;
	case 3:
		return lim + 1;
	default:
		return lim - 1;
	}
}

static __u64 gen_offset(const struct item *it)
{
	__u64 size = file_size(it), np = (size + ps - 1) / ps;

	switch (below(12)) {
	case 0:
		return 0;
	case 1:
	case 2:
	case 3:
		return below(np + 1) * ps;
	case 4:
		return size;
	case 5:
		return (np + 1 + below(1 << 20)) * ps;
	case 6:
		return below(np + 1) * ps + 1 + below(ps - 1);
	case 7:
		return huge_value();
	case 8:
		return rnd();
	case 9:
		return -(__u64)(1 + below(4)) * ps;
	case 10:
		/* Near the largest loff_t */
		return (1ULL << 63) - (1 + below(4)) * ps;
	default:
		return 1 + below(ps - 1);
	}
}

static __u64 gen_size(const struct item *it, unsigned int parts)
{
	__u64 size = file_size(it), np = (size + ps - 1) / ps;
	__u64 first = it->it.offset / ps, left = first < np ? np - first : 0;

	switch (below(14)) {
	case 0:
		return 0;
	case 1:
	case 2:
	case 3:
	case 4:
		return (1 + below(left ? left : 1)) * ps;
	case 5:
		return (left + 1 + below(4)) * ps;
	case 6:
		if (chance(50))
			return (1 + below(np + 1)) * ps + 1 + below(ps - 1);
		return (1 + below(np + 1)) * ps - 1 - below(ps - 1);
	case 7:
		return 1 + below(ps - 1);
	case 8:
	case 9:
		return near_limit(parts);
	case 10:
		return huge_value();
	case 11:
		return rnd();
	case 12:
		return rnd() & ~(__u64)(ps - 1);
	default:
		return -(__u64)(1 + below(4)) * ps;
	}
}

static __u32 gen_flags(void)
{
	switch (below(6)) {
	case 0:
		return 0;
	case 1:
		return UDMABUF_FLAGS_CLOEXEC;
	case 2:
		return rnd();
	case 3:
		return rnd() | UDMABUF_FLAGS_CLOEXEC;
	case 4:
		return rnd() & ~UDMABUF_FLAGS_CLOEXEC;
	default:
		return 1U << below(32);
	}
}

static __u32 gen_count(void)
{
	static const __u32 odd[] = {
		UINT32_MAX, 0x80000000, INT32_MAX, 0x0aaaaaab, 0x10000,
	};

	switch (below(12)) {
	case 0:
		return 0;
	case 1:
	case 2:
		return 1;
	case 3:
	case 4:
	case 5:
		return 2 + below(7);
	case 6:
		return 9 + below(56);
	case 7:
		return list_limit ? list_limit - below(2) : 0;
	case 8:
		return list_limit + 1;
	case 9:
		return list_limit + 2 + below(1 << 16);
	case 10:
		return odd[below(ARRAY_SIZE(odd))];
	default:
		return rnd();
	}
}

/* Whether the VFS handles ioctls of the type of @cmd before the driver does. */
static bool vfs_ioctl_type(unsigned int cmd)
{
	switch (_IOC_TYPE(cmd)) {
	case 0x00:	/* FIBMAP, FIGETBSZ */
	case 0x15:	/* FS_IOC_GETFSUUID, FS_IOC_GETFSSYSFSPATH */
	case 0x94:	/* FICLONE, FICLONERANGE, FIDEDUPERANGE */
	case 'T':	/* FIOCLEX, FIONBIO, FIOASYNC, FIONREAD, FIOQSIZE... */
	case 'X':	/* FIFREEZE, FITHAW, FS_IOC_FS[GS]ETXATTR */
	case 'f':	/* FS_IOC_*; FIOCLEX... on some architectures */
		return true;
	}
	return false;
}

static unsigned int gen_cmd(void)
{
	static const unsigned int sizes[] = { 0, 4, 8, 16, 24, 32, 4096 };
	unsigned int cmd;

	do {
		switch (below(5)) {
		case 0:
			cmd = _IOC(below(4), 'u', 0x42 + below(2),
				   sizes[below(ARRAY_SIZE(sizes))]);
			break;
		case 1:
			cmd = _IOC(below(4), 'u', below(256), below(1 << _IOC_SIZEBITS));
			break;
		case 2:
			cmd = UDMABUF_CREATE ^ 1U << below(32);
			break;
		case 3:
			cmd = UDMABUF_CREATE_LIST ^ 1U << below(32);
			break;
		default:
			cmd = rnd();
			break;
		}
	} while (vfs_ioctl_type(cmd) || cmd == UDMABUF_CREATE || cmd == UDMABUF_CREATE_LIST);
	return cmd;
}

static size_t arg_len(const struct input *in)
{
	if (in->op == OP_CREATE)
		return sizeof(struct udmabuf_create);
	return sizeof(struct udmabuf_create_list) +
	       in->nitems * sizeof(struct udmabuf_create_item);
}

static void gen_bad_ptr(struct input *in)
{
	const unsigned long top = 1UL << (sizeof(long) * 8 - 1);
	const unsigned long bad[] = { 1, 8, 4096, top, top - 8, -4096UL, -8UL, -1UL };
	size_t len = arg_len(in);

	in->ptr = 1 + below(NR_PTR_KINDS - 1);
	in->bad_ptr = chance(30) ? rnd() : bad[below(ARRAY_SIZE(bad))];
	in->shift = 0;
	if (in->ptr == PTR_NONE || in->ptr == PTR_UNMAPPED)
		in->shift = below(ps);
	else if (in->ptr == PTR_CROSS_NONE || in->ptr == PTR_CROSS_UNMAPPED)
		in->shift = 1 + below(len - 1);
}

/* A range of a memfd that both drivers accept. */
static void gen_valid_item(struct item *it, unsigned int count)
{
	const struct file_ent *f;
	__u64 np, first, max;

	it->file = good_files[below(nr_good)];
	f = &files[it->file];
	it->it.memfd = f->fd;
	np = (f->size + ps - 1) / ps;
	first = below(np);
	max = np - first;
	/* Long lists of small ranges: they pin the same pages again. */
	if (count > 64 && max > 4)
		max = 4;
	it->it.offset = first * ps;
	it->it.size = (1 + below(max)) * ps;
}

/*
 * A range of a few pages of a sparse memfd within SPARSE_WIN pages of one
 * of its marks, which both drivers accept; unless @valid, with one field
 * changed so that it only differs from such a range, or from a range near
 * another mark, above bit 31: past the end, 4 GiB further, 4 GiB longer.
 */
static void gen_sparse_item(struct item *it, bool valid)
{
	const struct file_ent *f;
	__u64 mark, lo, hi, room;

	it->file = sparse_files[below(nr_sparse)];
	f = &files[it->file];
	it->it.memfd = f->fd;
	mark = f->marks[below(f->nr_marks)];
	lo = mark > SPARSE_WIN * ps ? mark - SPARSE_WIN * ps : 0;
	hi = mark + SPARSE_WIN * ps < f->size ? mark + SPARSE_WIN * ps : f->size;
	/* Page aligned, in [lo, hi), and at most 8 pages. */
	it->it.offset = (lo + below(hi - lo)) / ps * ps;
	room = (hi - it->it.offset) / ps;
	it->it.size = (1 + below(room < 8 ? room : 8)) * ps;
	if (valid)
		return;

	switch (below(8)) {
	case 0:
		/* Another mark's data, for a driver that drops bits 32 and up. */
		it->it.offset += (1 + below(4)) << 32;
		break;
	case 1:
		if (it->it.offset >= 1ULL << 32)
			it->it.offset -= 1ULL << 32;
		else
			it->it.offset |= 1ULL << (32 + below(16));
		break;
	case 2:
		/* Past the end, or not, by 4 GiB; the same size in 32 bits. */
		it->it.size += 1ULL << 32;
		break;
	case 3:
		/* Ends in the page past the end. */
		it->it.offset = f->size - it->it.size + ps;
		break;
	case 4:
		it->it.offset = f->size + below(4) * ps;
		break;
	case 5:
		it->it.offset += 1 + below(ps - 1);
		break;
	case 6:
		it->it.size += 1 + below(ps - 1);
		break;
	default:
		/* Crosses the next multiple of 4 GiB; past the end for the last. */
		it->it.offset = ((it->it.offset >> 32) + 1) << 32;
		it->it.offset -= below(4) * ps;
		it->it.size = (1 + below(8)) * ps;
		break;
	}
}

/* Changes one field of a valid input. */
static void mutate(struct input *in)
{
	struct item *it = &in->items[below(in->nitems)];

	switch (below(8)) {
	case 0:
		gen_fd(it);
		break;
	case 1:
		it->it.offset = gen_offset(it);
		break;
	case 2:
		it->it.size = gen_size(it, in->nitems);
		break;
	case 3:
		if (in->op == OP_LIST)
			in->count = gen_count();
		break;
	case 4:
		gen_bad_ptr(in);
		break;
	case 5:
		in->op = OP_OTHER;
		in->cmd = gen_cmd();
		break;
	case 6:
		it->it.offset += 1 + below(ps - 1);
		break;
	default:
		it->it.size += 1 + below(ps - 1);
		break;
	}
}

static void gen_input(struct input *in)
{
	bool valid = chance(45);
	unsigned int i, r = below(100);

	in->op = r < 35 ? OP_CREATE : r < 92 ? OP_LIST : OP_OTHER;
	in->cmd = in->op == OP_CREATE ? UDMABUF_CREATE :
		  in->op == OP_LIST ? UDMABUF_CREATE_LIST : gen_cmd();
	in->flags = gen_flags();
	in->rs_first = chance(50);
	in->count = 1;
	if (in->op != OP_CREATE && valid)
		in->count = chance(90) ? 1 + below(8) : chance(50) ? 9 + below(56) : list_limit;
	else if (in->op != OP_CREATE)
		in->count = gen_count();
	in->nitems = in->op == OP_CREATE ? 1 : in->count <= MAX_ITEMS ? in->count : below(4);

	for (i = 0; i < in->nitems; i++) {
		struct item *it = &in->items[i];

		if (nr_sparse && chance(10)) {
			gen_sparse_item(it, valid);
		} else if (valid) {
			gen_valid_item(it, in->nitems);
		} else {
			gen_fd(it);
			it->it.offset = gen_offset(it);
			it->it.size = gen_size(it, in->nitems);
		}
		it->it.__pad = chance(70) ? 0 : rnd();
	}

	in->ptr = PTR_OK;
	in->bad_ptr = 0;
	in->shift = chance(50) ? 0 : below(64);
	if (!valid && chance(30))
		gen_bad_ptr(in);
	if (valid && in->nitems && chance(50))
		mutate(in);
}

/*
 * How many items of @in the drivers check: none for other ioctls and lists
 * over list_limit, else those of the create or the list that were generated.
 */
static unsigned int items_checked(const struct input *in)
{
	unsigned int n = in->op == OP_CREATE ? 1 : in->count;

	if (in->op == OP_OTHER || (in->op == OP_LIST && in->count > list_limit))
		return 0;
	return n > in->nitems ? in->nitems : n;
}

/*
 * Whether @in passes size_limit_mb with more than SAFE_BYTES (and a few
 * pages), which would have the drivers allocate large page arrays before
 * failing.
 */
static bool too_big(const struct input *in)
{
	unsigned int i, n = items_checked(in);
	__u64 pages = 0;

	for (i = 0; i < n; i++) {
		const struct udmabuf_create_item *it = &in->items[i].it;

		if ((it->offset | it->size) & (ps - 1))
			return false;
		pages += it->size / ps;
		if (pages > pglimit)
			return false;
	}
	return pages > SAFE_BYTES / ps + SAFE_EXTRA;
}

/*
 * Whether @in lets the drivers pin a range of a sparse memfd that is not
 * near its marks: filling its holes could take all memory. Conservative:
 * it counts every item, also those after one that fails.
 */
static bool fills_holes(const struct input *in)
{
	unsigned int i, n = items_checked(in);

	for (i = 0; i < n; i++) {
		const struct udmabuf_create_item *it = &in->items[i].it;
		const struct file_ent *f = sparse_file(it->memfd);

		if (!f || !it->size || (it->offset | it->size) & (ps - 1) ||
		    it->offset + it->size < it->offset || it->offset + it->size > f->size)
			continue;
		if (!near_marks(f, it->offset, it->size))
			return true;
	}
	return false;
}

/* Writes the argument of @in to the arena and returns its address. */
static unsigned long lay_out(const struct input *in)
{
	struct udmabuf_create_list head = { .flags = in->flags, .count = in->count };
	size_t len = arg_len(in);
	unsigned int i;
	unsigned char *p;

	if (in->op == OP_CREATE) {
		struct udmabuf_create c = {
			.memfd = in->items[0].it.memfd, .flags = in->flags,
			.offset = in->items[0].it.offset, .size = in->items[0].it.size,
		};

		memcpy(argbuf, &c, sizeof(c));
	} else {
		memcpy(argbuf, &head, sizeof(head));
		for (i = 0; i < in->nitems; i++)
			memcpy(argbuf + sizeof(head) + i * sizeof(in->items[i].it),
			       &in->items[i].it, sizeof(in->items[i].it));
	}

	switch (in->ptr) {
	case PTR_OK:
		p = guard - len - in->shift;
		memcpy(p, argbuf, len);
		/* Items past the laid out ones, if count says so, are zero. */
		memset(p + len, 0, in->shift);
		return (unsigned long)p;
	case PTR_NULL:
		return 0;
	case PTR_BAD:
		return in->bad_ptr;
	case PTR_NONE:
	case PTR_UNMAPPED:
		return (unsigned long)(guard + in->shift);
	default:
		p = guard - len + in->shift;
		memcpy(p, argbuf, len - in->shift);
		return (unsigned long)p;
	}
}

static int call(int dev, unsigned int cmd, unsigned long arg)
{
	int ret = ioctl(dev, cmd, arg);

	return ret < 0 ? -errno : ret;
}

static const char *result_str(int ret, char *buf, size_t size)
{
	if (ret >= 0)
		snprintf(buf, size, "fd %d", ret);
	else
		snprintf(buf, size, "errno %d (%s)", -ret, strerror(-ret));
	return buf;
}

static void print_input(unsigned long iter, unsigned long long seed,
			const struct input *in, const int *ret, const char *why)
{
	char res[2][64];
	unsigned int i;

	ksft_print_msg("MISMATCH at iteration %lu (replay: -s %llu -i %lu): %s %s, %s %s%s%s\n",
		       iter, seed, iter,
		       DEV_RS, result_str(ret[0], res[0], sizeof(res[0])),
		       DEV_C, result_str(ret[1], res[1], sizeof(res[1])),
		       *why ? ": " : "", why);
	ksft_print_msg("  cmd 0x%08x, flags 0x%08x, count %u, %u items laid out\n",
		       in->cmd, in->flags, in->count, in->nitems);
	ksft_print_msg("  argument %s (bad 0x%lx, shift %zu), %s called first\n",
		       ptr_names[in->ptr], in->bad_ptr, in->shift, in->rs_first ? DEV_RS : DEV_C);
	for (i = 0; i < in->nitems; i++) {
		const struct item *it = &in->items[i];

		ksft_print_msg("  item %u: memfd %u (%s), pad 0x%x, offset 0x%llx, size 0x%llx\n",
			       i, it->it.memfd, it->file >= 0 ? files[it->file].name : "raw number",
			       it->it.__pad, (unsigned long long)it->it.offset,
			       (unsigned long long)it->it.size);
	}
}

/* Reads byte @off of the dma-buf @fd through a mapping; -1 if mmap fails. */
static int read_buf(int fd, __u64 off)
{
	unsigned char *p = mmap(NULL, ps, PROT_READ, MAP_SHARED, fd, off / ps * ps);
	int val;

	if (p == MAP_FAILED)
		return -1;
	val = p[off % ps];
	munmap(p, ps);
	return val;
}

/* Compares the buffers @fd made from @in; returns NULL, or what differs. */
static const char *compare_bufs(const struct input *in, const int *fd)
{
	static char why[128];
	unsigned int i, n = in->op == OP_CREATE ? 1 : in->count;
	int cloexec = in->flags & UDMABUF_FLAGS_CLOEXEC ? FD_CLOEXEC : 0;
	off_t size[2];
	__u64 want = 0, off, pos;
	int val[2], cl[2], d;
	unsigned char exp = 0;

	if (n > in->nitems)
		n = in->nitems;
	for (i = 0; i < n; i++)
		want += in->items[i].it.size;
	for (d = 0; d < 2; d++) {
		size[d] = lseek(fd[d], 0, SEEK_END);
		cl[d] = fcntl(fd[d], F_GETFD) & FD_CLOEXEC;
	}
	if (size[0] != size[1] || (__u64)size[0] != want) {
		snprintf(why, sizeof(why), "sizes %lld and %lld, expected %llu",
			 (long long)size[0], (long long)size[1], (unsigned long long)want);
		return why;
	}
	if (cl[0] != cloexec || cl[1] != cloexec)
		return "FD_CLOEXEC does not follow UDMABUF_FLAGS_CLOEXEC";

	off = below(want);
	for (d = 0; d < 2; d++)
		val[d] = read_buf(fd[d], off);
	if (val[0] < 0 || val[1] < 0) {
		snprintf(why, sizeof(why), "mmap at 0x%llx: %s %s, %s %s",
			 (unsigned long long)off / ps * ps, DEV_RS, val[0] < 0 ? "failed" : "ok",
			 DEV_C, val[1] < 0 ? "failed" : "ok");
		return why;
	}
	/* The byte of the memfd that @off maps. */
	for (i = 0, pos = off; i < n && pos >= in->items[i].it.size; i++)
		pos -= in->items[i].it.size;
	if (i < n && pread(in->items[i].it.memfd, &exp, 1, in->items[i].it.offset + pos) != 1)
		exp = val[0];
	if (val[0] != val[1] || val[0] != exp) {
		snprintf(why, sizeof(why), "byte 0x%llx: 0x%02x and 0x%02x, memfd 0x%02x",
			 (unsigned long long)off, val[0], val[1], exp);
		return why;
	}
	return NULL;
}

static long cmdline_param(const char *param, long def)
{
	static char buf[4096];
	size_t plen = strlen(param);
	ssize_t len;
	char *p;
	int fd;

	fd = open("/proc/cmdline", O_RDONLY);
	if (fd < 0)
		return def;
	len = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (len <= 0)
		return def;
	buf[len] = '\0';
	/* The last one wins, as for the kernel. */
	for (p = buf; (p = strstr(p, param)); p += plen)
		if ((p == buf || p[-1] == ' ') && p[plen] == '=')
			def = strtol(p + plen + 1, NULL, 0);
	return def;
}

static long sysfs_param(const char *path, long def)
{
	FILE *f = fopen(path, "r");
	long val;

	if (!f)
		return def;
	if (fscanf(f, "%ld", &val) != 1)
		val = def;
	fclose(f);
	return val;
}

/* Skips unless both drivers have the same limits; udmabuf_rs's are not in sysfs. */
static void read_limits(int dev_rs, int dev_c)
{
	long ll_c = sysfs_param("/sys/module/udmabuf/parameters/list_limit",
				cmdline_param("udmabuf.list_limit", 1024));
	long sl_c = sysfs_param("/sys/module/udmabuf/parameters/size_limit_mb",
				cmdline_param("udmabuf.size_limit_mb", INT_MAX));
	long ll_rs = cmdline_param("udmabuf_rs.list_limit", 1024);
	long sl_rs = cmdline_param("udmabuf_rs.size_limit_mb", INT_MAX);
	struct rlimit rl;
	const char *skip = NULL;

	if (ll_c != ll_rs || sl_c != sl_rs)
		skip = "list_limit or size_limit_mb differ";
	else if (ll_c < 0 || ll_c >= MAX_ITEMS)
		skip = "the generator needs list_limit in [0, 1024]";
	else if (cmdline_param("udmabuf_rs.account_memlock", 0) && geteuid() &&
		 (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur != RLIM_INFINITY))
		skip = "udmabuf_rs.account_memlock=1 limits udmabuf_rs only: run as root";
	if (skip) {
		close(dev_rs);
		close(dev_c);
		ksft_exit_skip("%s (udmabuf: %ld, %ld MiB; udmabuf_rs: %ld, %ld MiB)\n",
			       skip, ll_c, sl_c, ll_rs, sl_rs);
	}
	list_limit = ll_c;
	/* As both drivers compute it: a negative limit is none. */
	pglimit = (__u64)(__s64)(int)sl_c * 1024 * 1024 / ps;
	ksft_print_msg("list_limit %u, size_limit_mb %ld\n", list_limit, sl_c);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	unsigned long iters = 20000, first = 0, iter, done = 0, both_ok = 0;
	static unsigned long errno_cnt[4096];
	unsigned long long seed;
	bool one = false;
	double secs = 60, start;
	int dev_rs, dev_c, opt, d, mismatches = 0;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	seed = (unsigned long long)ts.tv_sec * 1000000000ULL + ts.tv_nsec;
	while ((opt = getopt(argc, argv, "s:n:t:i:")) != -1) {
		switch (opt) {
		case 's':
			seed = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			iters = strtoul(optarg, NULL, 0);
			break;
		case 't':
			secs = strtod(optarg, NULL);
			break;
		case 'i':
			first = strtoul(optarg, NULL, 0);
			one = true;
			break;
		default:
			fprintf(stderr, "usage: %s [-s seed] [-n iters] [-t secs] [-i iter]\n",
				argv[0]);
			return KSFT_FAIL;
		}
	}
	if (one)
		iters = 1;

	ksft_print_header();
	ps = sysconf(_SC_PAGESIZE);
	dev_rs = open(DEV_RS, O_RDWR | O_CLOEXEC);
	if (dev_rs < 0)
		ksft_exit_skip("%s: %s\n", DEV_RS, strerror(errno));
	dev_c = open(DEV_C, O_RDWR | O_CLOEXEC);
	if (dev_c < 0) {
		close(dev_rs);
		ksft_exit_skip("%s: %s\n", DEV_C, strerror(errno));
	}
	read_limits(dev_rs, dev_c);
	ksft_set_plan(1);
	ksft_print_msg("seed %llu, %lu iterations from %lu, at most %.0f s\n", seed, iters,
		       first, secs);

	arena = mmap(NULL, (ARENA_PAGES + 1) * ps, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (arena == MAP_FAILED)
		ksft_exit_fail_perror("mmap");
	guard = arena + ARENA_PAGES * ps;
	if (mprotect(guard, ps, PROT_NONE))
		ksft_exit_fail_perror("mprotect");
	setup_files(dev_rs, dev_c);

	start = now();
	for (iter = first; iter - first < iters && mismatches < MAX_MISMATCHES; iter++) {
		bool unmap;
		unsigned long arg;
		const char *why = NULL;
		int ret[2];

		if (now() - start > secs) {
			ksft_print_msg("time limit of %.0f s reached\n", secs);
			break;
		}
		/* Each iteration has its own stream, to be replayed alone. */
		rng = seed ^ (iter + 1) * 0xd1b54a32d192ed03ULL;
		do {
			gen_input(&cur);
		} while (too_big(&cur) || fills_holes(&cur));

		arg = lay_out(&cur);
		unmap = cur.ptr == PTR_UNMAPPED || cur.ptr == PTR_CROSS_UNMAPPED;
		if (unmap && munmap(guard, ps))
			ksft_exit_fail_perror("munmap");
		if (cur.rs_first) {
			ret[0] = call(dev_rs, cur.cmd, arg);
			ret[1] = call(dev_c, cur.cmd, arg);
		} else {
			ret[1] = call(dev_c, cur.cmd, arg);
			ret[0] = call(dev_rs, cur.cmd, arg);
		}
		/* Nothing else maps memory while it is unmapped. */
		if (unmap && mmap(guard, ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
				  -1, 0) != guard)
			ksft_exit_fail_perror("mmap");
		done++;

		if (ret[0] >= 0 && ret[1] >= 0 && cur.op != OP_OTHER) {
			why = compare_bufs(&cur, ret);
			both_ok++;
		} else if (ret[0] < 0 && ret[0] == ret[1] && -ret[0] < 4096) {
			errno_cnt[-ret[0]]++;
		} else if (ret[0] != ret[1]) {
			why = "";
		}
		if (cur.op != OP_OTHER)
			for (d = 0; d < 2; d++)
				if (ret[d] >= 0)
					close(ret[d]);
		if (why) {
			print_input(iter, seed, &cur, ret, why);
			mismatches++;
		}
		if (done % PROGRESS_EVERY == 0)
			ksft_print_msg("%lu iterations, %lu succeeded on both, %d mismatches\n",
				       done, both_ok, mismatches);
	}

	ksft_print_msg("%lu iterations (seed %llu), %lu succeeded on both, %d mismatches\n",
		       done, seed, both_ok, mismatches);
	for (d = 0; d < 4096; d++)
		if (errno_cnt[d])
			ksft_print_msg("  both failed with errno %d (%s): %lu\n", d, strerror(d),
				       errno_cnt[d]);
	if (mismatches >= MAX_MISMATCHES)
		ksft_print_msg("stopped after %d mismatches\n", mismatches);

	for (d = 0; d < nr_files; d++)
		if (files[d].owned)
			close(files[d].fd);
	close(dev_rs);
	close(dev_c);
	munmap(arena, (ARENA_PAGES + 1) * ps);
	ksft_test_result(!mismatches, "udmabuf_rs and udmabuf agree on %lu random inputs\n", done);
	ksft_finished();
}
