// SPDX-License-Identifier: GPL-2.0
/*
 * Fault injection into pin_user_pages_fd(), through PIN_FD_LONGTERM_TEST_START
 * of /sys/kernel/debug/gup_test, after iommufd_fail_nth.
 *
 * failslab and fail_page_alloc are set to fail any allocation, from order 0
 * and whatever its gfp flags, and every /sys/kernel/debug/fail* is made
 * silent (verbose 0): no fault may print a stack trace. Then, for nth = 1,
 * 2, ..., nth is written to /proc/thread-self/fail-nth, a fresh memfd is
 * pinned, and fail-nth is read back: 0 means that the nth fault site of this
 * thread (failslab, fail_page_alloc, and fail_usercopy if built in) was hit
 * and failed; not 0 means that the pin went through fewer sites, and the
 * sweep is complete. At each step the pin either fails with an expected
 * errno, and then no page may stay pinned and nothing may stay charged to
 * RLIMIT_MEMLOCK before PIN_LONGTERM_TEST_STOP could release them (not to
 * the VmPin of the test process, nor, with PIN_FD_TEST_FLAG_ACCOUNT, to a
 * fresh user that the test's real uid becomes, without CAP_IPC_LOCK and
 * with a quota of one pin, which must be whole after the sweep); or it
 * succeeds, with every page pinned, and the pins balance at STOP. A hugetlb
 * memfd must also give its huge page and reservation back once closed.
 *
 * The FOLL_PIN counters are system-wide: run the test alone. Needs root,
 * CONFIG_GUP_TEST, CONFIG_FAULT_INJECTION_DEBUG_FS and CONFIG_FAILSLAB;
 * CONFIG_FAIL_PAGE_ALLOC and CONFIG_FAULT_INJECTION_USERCOPY add sites.
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
#include <sys/resource.h>
#include <sys/syscall.h>
#include <asm-generic/hugetlb_encode.h>
#include <linux/capability.h>
#include <mm/gup_test.h>

#include "kselftest_harness.h"
#include "vm_util.h"

#define GUP_TEST_FILE	"/sys/kernel/debug/gup_test"
#define DEBUGFS		"/sys/kernel/debug"
#define FAIL_NTH	"/proc/thread-self/fail-nth"
#define HUGE_2M		"/sys/kernel/mm/hugepages/hugepages-2048kB/"
#define HUGE_SIZE	(2UL << 20)
#define MAX_NTH		100000U
#define MAX_SAVED	64
#define TIMEOUT		600
#define FILL		0x5a	/* the bytes of a populated shmem memfd */

#ifndef MFD_HUGE_2MB
#define MFD_HUGE_2MB	HUGETLB_FLAG_ENCODE_2MB
#endif

/* Fault injection attributes changed, with their values to restore at exit. */
static struct {
	char path[PATH_MAX];
	char val[32];
} saved[MAX_SAVED];
static int nr_saved;

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

/* Sets @path to @val, after saving its value for restore_attrs(). */
static int set_attr(const char *path, const char *val)
{
	char *nl;

	if (nr_saved == MAX_SAVED)
		return -ENOSPC;
	if (!read_file(path, saved[nr_saved].val, sizeof(saved[nr_saved].val)))
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
	if (access(GUP_TEST_FILE, R_OK | W_OK))
		return "no " GUP_TEST_FILE " (CONFIG_GUP_TEST)";

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
 * charged to this process's VmPin: root pins with CAP_IPC_LOCK, so nothing
 * is charged to its user, but the pinning mm is charged all the same.
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
	while (fgets(line, sizeof(line), f)) {
		found += sscanf(line, "nr_foll_pin_acquired %llu", &acq) == 1;
		found += sscanf(line, "nr_foll_pin_released %llu", &rel) == 1;
	}
	fclose(f);
	f = fopen("/proc/self/status", "r");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %lld kB", &vm_pin_kb) == 1)
			break;
	fclose(f);
	pins->held = acq - rel;
	pins->charged = vm_pin_kb * 1024 / psize();
	return found == 2 && vm_pin_kb >= 0 ? 0 : -ENOENT;
}

/*
 * Waits up to 5 s for @pins pages more than @base to be pinned and @charged
 * more charged, and leaves the last reading in @now. Returns whether they
 * were.
 */
static bool wait_pins(const struct pins *base, long long pins,
		      long long charged, struct pins *now)
{
	for (int i = 0; i < 50; i++) {
		if (read_pins(now))
			return false;
		if (now->held - base->held == pins &&
		    now->charged - base->charged == charged)
			return true;
		usleep(100000);
	}
	return false;
}

/* The 2 MiB huge page pool: free pages and reservations. */
struct pool {
	unsigned long free, resv;
};

static int read_pool(struct pool *pool)
{
	char buf[32];

	if (!read_file(HUGE_2M "free_hugepages", buf, sizeof(buf)))
		return -ENOENT;
	pool->free = strtoul(buf, NULL, 10);
	if (!read_file(HUGE_2M "resv_hugepages", buf, sizeof(buf)))
		return -ENOENT;
	pool->resv = strtoul(buf, NULL, 10);
	return 0;
}

/* Waits up to 5 s for the pool to be back to @base. */
static bool wait_pool(const struct pool *base, struct pool *now)
{
	for (int i = 0; i < 50; i++) {
		if (read_pool(now))
			return false;
		if (now->free == base->free && now->resv == base->resv)
			return true;
		usleep(100000);
	}
	return false;
}

/*
 * The errors that an injected fault may cause: ENOMEM from any allocation
 * (the page array, page cache nodes, shmem folios and their memcg charge,
 * hugetlb reservations, migration targets), EFAULT from copying the request
 * in (fail_usercopy, or a fault on its page that fails to allocate), and
 * EINTR, which pin_user_pages_fd() returns on a fatal signal. The EEXIST of
 * filling a hole that was just filled and the EAGAIN of migration are
 * retried within pin_user_pages_fd(), and never returned.
 */
static bool expected_errno(int err)
{
	return err == ENOMEM || err == EFAULT || err == EINTR;
}

FIXTURE(fail_nth)
{
	int gup_fd;
	int nth_fd;
	size_t size;		/* of the memfd, pinned whole */
};

FIXTURE_VARIANT(fail_nth)
{
	const char *name;
	bool hugetlb;
	bool populated;		/* else the pin allocates the pages */
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

FIXTURE_VARIANT_ADD(fail_nth, hugetlb)
{
	.name = "hugetlb",
	.hugetlb = true,
};

FIXTURE_VARIANT_ADD(fail_nth, hugetlb_populated)
{
	.name = "hugetlb_populated",
	.hugetlb = true,
	.populated = true,
};

FIXTURE_SETUP(fail_nth)
{
	char buf[32];

	self->nth_fd = -1;
	self->gup_fd = open(GUP_TEST_FILE, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->gup_fd);
	/* This thread's: the harness forked it. */
	self->nth_fd = open(FAIL_NTH, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->nth_fd);
	/*
	 * Several folios, so that the pin allocates one per hole, page cache
	 * nodes and a larger page array.
	 */
	self->size = 64 * psize();
	if (!variant->hugetlb)
		return;
	self->size = 2 * HUGE_SIZE;
	if (!read_file(HUGE_2M "free_hugepages", buf, sizeof(buf)) ||
	    strtoul(buf, NULL, 10) < 2)
		SKIP(return, "fewer than 2 free 2 MiB huge pages");
}

FIXTURE_TEARDOWN(fail_nth)
{
	if (self->nth_fd >= 0) {
		nth_disarm(self->nth_fd);
		close(self->nth_fd);
	}
	if (self->gup_fd >= 0) {
		ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP);
		close(self->gup_fd);
	}
}

/* A new memfd of the variant, of self->size bytes. Returns the fd or -errno. */
static int new_memfd(struct _test_data_fail_nth *self,
		     const struct _fixture_variant_fail_nth *variant)
{
	unsigned int flags = MFD_CLOEXEC;
	ssize_t written;
	int fd, err;
	char *data;

	if (variant->hugetlb)
		flags |= MFD_HUGETLB | MFD_HUGE_2MB;
	fd = memfd_create("pin_user_pages_fd_fail_nth", flags);
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, self->size))
		goto err;
	if (!variant->populated)
		return fd;
	if (variant->hugetlb) {
		if (fallocate(fd, 0, 0, self->size))
			goto err;
		return fd;
	}
	data = malloc(self->size);
	if (!data)
		goto err;
	memset(data, FILL, self->size);
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

/* Whether the pinned pages read as the memfd of the variant was filled. */
static bool pinned_data_ok(struct _test_data_fail_nth *self,
			   const struct _fixture_variant_fail_nth *variant)
{
	unsigned char fill = variant->populated && !variant->hugetlb ? FILL : 0;
	unsigned char *buf = malloc(self->size);
	__u64 addr = (uintptr_t)buf;
	bool ok;

	if (!buf)
		return false;
	memset(buf, ~fill, self->size);
	ok = !ioctl(self->gup_fd, PIN_LONGTERM_TEST_READ, &addr);
	for (size_t i = 0; ok && i < self->size; i++)
		ok = buf[i] == fill;
	free(buf);
	return ok;
}

/*
 * Pins a new memfd of the variant with @flags, fail-nth armed at @nth (not at
 * all for 0), and checks what the pin leaves. Returns 0 or the pin's errno,
 * and sets *hit if the fault was injected.
 */
static int pin_step(struct __test_metadata *_metadata,
		    struct _test_data_fail_nth *self,
		    const struct _fixture_variant_fail_nth *variant,
		    unsigned int flags, unsigned int nth, bool *hit)
{
	struct pin_fd_test args = { .size = self->size, .flags = flags };
	long long nr = self->size / psize(), charge = 0;
	struct pool pool_base = {}, pool = {};
	struct pins base, now;
	int ret, err = 0;

	if (variant->hugetlb)
		ASSERT_EQ(0, read_pool(&pool_base));
	args.fd = new_memfd(self, variant);
	ASSERT_LE(0, args.fd) TH_LOG("memfd: %s", strerror(-args.fd));
	ASSERT_EQ(0, read_pins(&base));
	if (flags & PIN_FD_TEST_FLAG_ACCOUNT)
		charge = nr;

	/* Nothing but the pin between arming and disarming. */
	if (nth)
		ASSERT_EQ(0, nth_arm(self->nth_fd, nth));
	if (ioctl(self->gup_fd, PIN_FD_LONGTERM_TEST_START, &args))
		err = errno;
	ret = nth ? nth_disarm(self->nth_fd) : 0;
	ASSERT_LE(0, ret) TH_LOG("fail-nth: %s", strerror(-ret));
	*hit = ret;

	if (err && !nth) {
		/* The caller tells whether the test can run at all. */
	} else if (err) {
		EXPECT_TRUE(*hit)
			TH_LOG("nth %u: %s, but no fault injected", nth, strerror(err));
		EXPECT_TRUE(expected_errno(err))
			TH_LOG("nth %u: unexpected error %s", nth, strerror(err));
		/* Before STOP, which would release what the failed pin kept. */
		EXPECT_TRUE(wait_pins(&base, 0, 0, &now))
			TH_LOG("nth %u: failed with %s, but left %lld pins, %lld pages charged",
			       nth, strerror(err), now.held - base.held,
			       now.charged - base.charged);
	} else {
		EXPECT_TRUE(wait_pins(&base, nr, charge, &now))
			TH_LOG("nth %u: pinned %lld pages, charged %lld, not %lld",
			       nth, now.held - base.held,
			       now.charged - base.charged, nr);
		EXPECT_TRUE(pinned_data_ok(self, variant))
			TH_LOG("nth %u: the pinned pages are not the memfd's", nth);
		ASSERT_EQ(0, ioctl(self->gup_fd, PIN_LONGTERM_TEST_STOP));
		EXPECT_TRUE(wait_pins(&base, 0, 0, &now))
			TH_LOG("nth %u: %lld pins, %lld pages charged left after STOP",
			       nth, now.held - base.held,
			       now.charged - base.charged);
	}
	close(args.fd);
	if (variant->hugetlb)
		EXPECT_TRUE(wait_pool(&pool_base, &pool))
			TH_LOG("nth %u: huge pages free %lu, reserved %lu; were %lu, %lu",
			       nth, pool.free, pool.resv, pool_base.free,
			       pool_base.resv);
	return err;
}

/*
 * Makes the pins of this process (a test, which the harness forked) with
 * PIN_FD_TEST_FLAG_ACCOUNT charge a user of its own with a quota of @pages:
 * the real uid becomes a fresh one (the charged user is the real uid's, and
 * root's is shared with every root process), the effective uid stays 0,
 * CAP_IPC_LOCK leaves the effective set and RLIMIT_MEMLOCK becomes @pages.
 * A charge that a failed pin left behind then makes the next full pin fail.
 * Returns 0 or -errno.
 */
static int charge_user(size_t pages)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
	};
	struct __user_cap_data_struct caps[_LINUX_CAPABILITY_U32S_3];
	struct rlimit rl = { pages * psize(), pages * psize() };

	/* Far from the ids of real users and of subordinate ranges. */
	if (setresuid(0x40000000 + getpid(), -1, -1) ||
	    syscall(SYS_capget, &hdr, caps))
		return -errno;
	caps[CAP_TO_INDEX(CAP_IPC_LOCK)].effective &= ~CAP_TO_MASK(CAP_IPC_LOCK);
	if (syscall(SYS_capset, &hdr, caps) || setrlimit(RLIMIT_MEMLOCK, &rl))
		return -errno;
	return 0;
}

/*
 * Runs a pin without fault injection, then with a fault at every site in
 * turn, until the pin runs through all of them.
 */
static void sweep(struct __test_metadata *_metadata,
		  struct _test_data_fail_nth *self,
		  const struct _fixture_variant_fail_nth *variant,
		  unsigned int flags)
{
	unsigned int nth, injected = 0, failed = 0;
	bool hit;
	int err;

	if (flags & PIN_FD_TEST_FLAG_ACCOUNT) {
		err = charge_user(self->size / psize());
		ASSERT_EQ(0, err) TH_LOG("dropping CAP_IPC_LOCK: %s", strerror(-err));
	}
	/* Also warms up what is allocated once, such as debugfs file data. */
	err = pin_step(_metadata, self, variant, flags, 0, &hit);
	if (err == EINVAL && (flags & PIN_FD_TEST_FLAG_ACCOUNT))
		SKIP(return, "gup_test has no PIN_FD_TEST_FLAG_ACCOUNT");
	if (err == ENOMEM && variant->hugetlb)
		SKIP(return, "no huge page to pin, or to migrate to");
	ASSERT_EQ(0, err) TH_LOG("pin without fault injection: %s", strerror(err));
	if (_metadata->exit_code != KSFT_PASS)
		return;

	for (nth = 1; ; nth++) {
		ASSERT_GE(MAX_NTH, nth) TH_LOG("still hitting faults at nth %u", nth);
		err = pin_step(_metadata, self, variant, flags, nth, &hit);
		/* Stop at the first wrong step: the next ones would follow. */
		if (_metadata->exit_code != KSFT_PASS)
			return;
		if (!hit)
			break;
		injected++;
		failed += !!err;
	}
	/* Every charge came back: the whole quota is there for a full pin. */
	if (flags & PIN_FD_TEST_FLAG_ACCOUNT) {
		err = pin_step(_metadata, self, variant, flags, 0, &hit);
		EXPECT_EQ(0, err) TH_LOG("a full pin once swept: %s", strerror(err));
	}
	ksft_print_msg("%s, flags %#x: %u faults injected: %u failed the pin, %u were absorbed\n",
		       variant->name, flags, injected, failed, injected - failed);
}

TEST_F_TIMEOUT(fail_nth, pin, TIMEOUT)
{
	sweep(_metadata, self, variant, 0);
}

TEST_F_TIMEOUT(fail_nth, pin_write, TIMEOUT)
{
	sweep(_metadata, self, variant, PIN_FD_TEST_FLAG_WRITE);
}

TEST_F_TIMEOUT(fail_nth, pin_account, TIMEOUT)
{
	sweep(_metadata, self, variant, PIN_FD_TEST_FLAG_ACCOUNT);
}

TEST_F_TIMEOUT(fail_nth, pin_write_account, TIMEOUT)
{
	sweep(_metadata, self, variant,
	      PIN_FD_TEST_FLAG_WRITE | PIN_FD_TEST_FLAG_ACCOUNT);
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
