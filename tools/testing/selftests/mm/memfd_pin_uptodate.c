// SPDX-License-Identifier: GPL-2.0
/*
 * memfd_pin_folios() and the folios fallocate() leaves !uptodate.
 *
 * fallocate() on shmem allocates folios without clearing them: they stay
 * !uptodate, their old contents unread, until their first use clears them.
 * memfd_pin_folios() must not pin such a folio as it is: it must fill it as it
 * fills a hole, clearing it. Otherwise
 * - the pinned pages hand whatever the allocator left in them to the device
 *   and to whoever maps the pinned pages (fallocated_no_stale_data), and
 * - the first fault on the memfd clears the folio under the pin, wiping what
 *   was written through the pin (fallocated_write_survives).
 *
 * The pins are taken through udmabuf (UDMABUF_CREATE), the user of
 * memfd_pin_folios() that userspace reaches: the tests are skipped without
 * /dev/udmabuf.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <linux/dma-buf.h>
#include <linux/memfd.h>
#include <linux/udmabuf.h>

#include "kselftest_harness.h"

#define BUF_SIZE	(4UL << 20)	/* fallocated_write_survives */
#define STALE_SIZE	(16UL << 20)	/* fallocated_no_stale_data */
#define FILL_SIZE	(64UL << 20)	/* freed memory, filled with FILL_BYTE */
#define FILL_BYTE	0x5a

FIXTURE(memfd_pin) {
	int devfd;
	size_t ps;
};

FIXTURE_SETUP(memfd_pin)
{
	self->ps = getpagesize();
	self->devfd = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
	if (self->devfd < 0)
		SKIP(return, "/dev/udmabuf: %s", strerror(errno));
}

FIXTURE_TEARDOWN(memfd_pin)
{
	if (self->devfd >= 0)
		close(self->devfd);
}

static int udmabuf_create_fd(int devfd, int memfd, __u64 size)
{
	struct udmabuf_create create;

	memset(&create, 0, sizeof(create));
	create.memfd = memfd;
	create.flags = UDMABUF_FLAGS_CLOEXEC;
	create.offset = 0;
	create.size = size;

	return ioctl(devfd, UDMABUF_CREATE, &create);
}

static int dmabuf_sync(int buf, __u64 flags)
{
	struct dma_buf_sync sync = { .flags = flags };

	return ioctl(buf, DMA_BUF_IOCTL_SYNC, &sync);
}

/* A memfd of @size bytes, fallocated, sealed with F_SEAL_SHRINK. */
static int fallocated_memfd(size_t size)
{
	int memfd = memfd_create("memfd_pin_uptodate",
				 MFD_ALLOW_SEALING | MFD_CLOEXEC);

	if (memfd < 0)
		return -1;
	if (fallocate(memfd, 0, 0, size) ||
	    fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK)) {
		int err = errno;

		close(memfd);
		errno = err;
		return -1;
	}
	return memfd;
}

/* Never 0, and not the same in two pages. */
static unsigned char pattern_byte(size_t off)
{
	return 1 + (off + (off >> 12) * 13) % 251;
}

/* Number of pages that differ from the pattern; *zero: those read as 0. */
static size_t check_pattern(const unsigned char *p, size_t len, size_t ps,
			    size_t *zero)
{
	size_t pg, i, bad = 0;
	bool ok, allzero;

	*zero = 0;
	for (pg = 0; pg < len; pg += ps) {
		ok = true;
		allzero = true;
		for (i = pg; i < pg + ps; i++) {
			if (p[i] != pattern_byte(i))
				ok = false;
			if (p[i])
				allzero = false;
		}
		bad += !ok;
		*zero += allzero;
	}
	return bad;
}

static ssize_t pread_full(int fd, void *data, size_t len)
{
	size_t done = 0;
	ssize_t ret;

	while (done < len) {
		ret = pread(fd, (char *)data + done, len - done, done);
		if (ret < 0 && errno == EINTR)
			continue;
		if (ret <= 0)
			return -1;
		done += ret;
	}
	return done;
}

/* Run on the CPU we are on: its freed pages are the next it allocates. */
static void stay_on_this_cpu(void)
{
	int cpu = sched_getcpu();
	cpu_set_t one;

	if (cpu < 0)
		return;
	CPU_ZERO(&one);
	CPU_SET(cpu, &one);
	sched_setaffinity(0, sizeof(one), &one);
}

/*
 * What was written through a buffer of fallocated pages is what the memfd
 * reads, through a mapping (shmem_fault()) and through pread().
 */
TEST_F_TIMEOUT(memfd_pin, fallocated_write_survives, 120)
{
	size_t size = BUF_SIZE, npages = size / self->ps;
	size_t bad, zero, i;
	unsigned char *buf_map, *mem, *data;
	int memfd, buf;

	memfd = fallocated_memfd(size);
	ASSERT_LE(0, memfd) TH_LOG("fallocated memfd: %s", strerror(errno));
	buf = udmabuf_create_fd(self->devfd, memfd, size);
	ASSERT_LE(0, buf) TH_LOG("UDMABUF_CREATE: %s", strerror(errno));
	buf_map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, buf, 0);
	ASSERT_NE(MAP_FAILED, buf_map);
	data = malloc(size);
	ASSERT_NE(NULL, data);

	ASSERT_EQ(0, dmabuf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_WRITE));
	for (i = 0; i < size; i++)
		buf_map[i] = pattern_byte(i);
	ASSERT_EQ(0, dmabuf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_WRITE));

	/* Fault the memfd's pages in while the buffer holds its pins. */
	mem = mmap(NULL, size, PROT_READ, MAP_SHARED, memfd, 0);
	ASSERT_NE(MAP_FAILED, mem);
	bad = check_pattern(mem, size, self->ps, &zero);
	munmap(mem, size);
	TH_LOG("memfd mapping: %zu of %zu pages lost the buffer's data (%zu zeros)",
	       bad, npages, zero);
	EXPECT_EQ((size_t)0, bad);

	if (!dmabuf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ)) {
		bad = check_pattern(buf_map, size, self->ps, &zero);
		dmabuf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ);
		if (bad)
			TH_LOG("the buffer's own mapping: %zu pages changed (%zu read zeros)",
			       bad, zero);
	}

	ASSERT_EQ((ssize_t)size, pread_full(memfd, data, size));
	bad = check_pattern(data, size, self->ps, &zero);
	TH_LOG("pread(): %zu of %zu pages lost (%zu read zeros)", bad, npages, zero);
	EXPECT_EQ((size_t)0, bad);

	free(data);
	munmap(buf_map, size);
	close(buf);
	close(memfd);
}

/*
 * A buffer of fallocated pages reads zeros, not what the pages held before:
 * free memory full of FILL_BYTE first, so that fallocate() likely reuses it.
 */
TEST_F_TIMEOUT(memfd_pin, fallocated_no_stale_data, 120)
{
	size_t size = STALE_SIZE, chunk = 1UL << 20;
	size_t done, i, nonzero = 0, filled = 0;
	const unsigned char *buf_map;
	unsigned char *fill;
	ssize_t ret;
	int fd, memfd, buf;

	stay_on_this_cpu();

	/* FILL_SIZE of FILL_BYTE in a memfd, freed as it is closed. */
	fill = malloc(chunk);
	ASSERT_NE(NULL, fill);
	memset(fill, FILL_BYTE, chunk);
	fd = memfd_create("memfd_pin_uptodate-fill", MFD_CLOEXEC);
	ASSERT_LE(0, fd);
	for (done = 0; done < FILL_SIZE; done += ret) {
		ret = write(fd, fill, chunk);
		if (ret < 0 && errno == EINTR) {
			ret = 0;
			continue;
		}
		ASSERT_LT(0, ret) TH_LOG("filling memory: %s", strerror(errno));
	}
	close(fd);
	free(fill);

	memfd = fallocated_memfd(size);
	ASSERT_LE(0, memfd) TH_LOG("fallocated memfd: %s", strerror(errno));
	buf = udmabuf_create_fd(self->devfd, memfd, size);
	ASSERT_LE(0, buf) TH_LOG("UDMABUF_CREATE: %s", strerror(errno));
	buf_map = mmap(NULL, size, PROT_READ, MAP_SHARED, buf, 0);
	ASSERT_NE(MAP_FAILED, buf_map);

	ASSERT_EQ(0, dmabuf_sync(buf, DMA_BUF_SYNC_START | DMA_BUF_SYNC_READ));
	for (i = 0; i < size; i += sizeof(uint64_t)) {
		uint64_t word = *(const uint64_t *)(buf_map + i);
		size_t j;

		if (!word)
			continue;
		for (j = i; j < i + sizeof(word); j++) {
			nonzero += buf_map[j] != 0;
			filled += buf_map[j] == FILL_BYTE;
		}
	}
	EXPECT_EQ(0, dmabuf_sync(buf, DMA_BUF_SYNC_END | DMA_BUF_SYNC_READ));

	TH_LOG("%zu non-zero bytes (%zu of them %#x) in %zu MiB of fallocated pages",
	       nonzero, filled, FILL_BYTE, size >> 20);
	if (!nonzero)
		TH_LOG("(with init_on_alloc=1 an unfixed kernel reads zeros too)");
	EXPECT_EQ((size_t)0, nonzero);

	munmap((void *)buf_map, size);
	close(buf);
	close(memfd);
}

TEST_HARNESS_MAIN
