// SPDX-License-Identifier: GPL-2.0

//! Pinning pages for DMA.
//!
//! A driver that lets a device access memory owned by user space pins the pages first, so that
//! they are neither freed nor moved while the device may use them (`FOLL_PIN`, see
//! [`Documentation/core-api/pin_user_pages.rst`]). [`PinnedPages`] owns such pins and releases
//! them when it is dropped; whether the pins are [`LongTerm`] or [`ShortTerm`] is part of its
//! type.
//!
//! C header: [`include/linux/mm.h`](srctree/include/linux/mm.h)
//!
//! [`Documentation/core-api/pin_user_pages.rst`]:
//!     srctree/Documentation/core-api/pin_user_pages.rst

use crate::{
    alloc::{
        flags::GFP_KERNEL,
        KVVec, //
    },
    bindings,
    error::{
        code::*,
        Error,
        Result, //
    },
    fs::File,
    mm::MmapReadGuard,
    page::{
        AsPageIter,
        BorrowedPage, //
    },
    prelude::*,
};
use core::{
    marker::PhantomData,
    ops::BitOr,
    ptr::NonNull,
    slice, //
};

/// Options for pinning pages.
///
/// Pins are always pins: `FOLL_PIN` and `FOLL_GET` cannot be expressed. Whether a pin is long-term
/// is not a flag either but the type parameter of [`PinnedPages`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    /// The pages will be written to, for example by a device.
    ///
    /// Pins of user addresses break copy-on-write first (`FOLL_WRITE`); pins of a file refuse a
    /// write-sealed memfd (`PIN_FD_WRITE`).
    pub const WRITE: Flags = Flags(1 << 0);

    /// No flags: the pages will only be read.
    pub const fn empty() -> Flags {
        Flags(0)
    }

    /// Returns whether `self` contains all of `flags`.
    pub const fn contains(self, flags: Flags) -> bool {
        self.0 & flags.0 == flags.0
    }

    fn gup_flags(self) -> u32 {
        if self.contains(Self::WRITE) {
            bindings::FOLL_WRITE
        } else {
            0
        }
    }

    fn pin_fd_flags(self) -> u32 {
        if self.contains(Self::WRITE) {
            bindings::PIN_FD_WRITE
        } else {
            0
        }
    }
}

impl BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

mod private {
    pub trait Sealed {}
}

/// How long pins are held: the type parameter of [`PinnedPages`].
///
/// This trait is sealed: [`LongTerm`] and [`ShortTerm`] are its only implementations.
pub trait PinTerm: private::Sealed {
    /// The GUP flags that select this kind of pin.
    #[doc(hidden)]
    const GUP_FLAGS: u32;
}

/// Long-term pins (`FOLL_LONGTERM`): held for as long as the holder decides, for example while a
/// device may access the pages at any time.
///
/// Pages in `ZONE_MOVABLE` or in a CMA area are migrated out of it before they are pinned, so
/// that long-term pins do not defeat memory hot-unplug and contiguous allocations.
pub enum LongTerm {}

impl private::Sealed for LongTerm {}

impl PinTerm for LongTerm {
    const GUP_FLAGS: u32 = bindings::FOLL_LONGTERM;
}

/// Short-term pins: held for the duration of one bounded operation, such as a direct I/O request.
pub enum ShortTerm {}

impl private::Sealed for ShortTerm {}

impl PinTerm for ShortTerm {
    const GUP_FLAGS: u32 = 0;
}

/// Pages pinned for DMA, unpinned when dropped.
///
/// A constructor pins all the pages it is asked for or none: a partial pin is released before
/// the error is returned. The pages are lent out as [`BorrowedPage`]s, by index, by iterator or
/// through [`AsPageIter`]; they are never freed by this type.
///
/// # Examples
///
/// Pin a user buffer long-term for a device to write into, then release it dirty:
///
/// ```
/// use kernel::mm::gup::{Flags, LongTerm, PinnedPages};
///
/// fn dma_into_user(addr: usize, nr_pages: usize) -> Result {
///     let pages = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, nr_pages, Flags::WRITE)?;
///     for page in pages.iter() {
///         // Hand `page` to the device.
///         let _ = page;
///     }
///     // The device wrote to the pages: mark them dirty as they are unpinned.
///     pages.unpin_dirty();
///     Ok(())
/// }
/// ```
///
/// # Invariants
///
/// - Every pointer in `pages` points to a page on which this object holds one pin, taken with
///   `FOLL_PIN` and `T::GUP_FLAGS` (or by `pin_user_pages_fd()` for [`LongTerm`] pins).
/// - The pins are released only by [`Drop`] or [`PinnedPages::unpin_dirty`].
pub struct PinnedPages<T: PinTerm> {
    pages: KVVec<*mut bindings::page>,
    _term: PhantomData<T>,
}

// SAFETY: Pins have no thread affinity: they can be released from any thread, and the pages they
// pin can be accessed from any thread.
unsafe impl<T: PinTerm> Send for PinnedPages<T> {}

// SAFETY: Shared access only lends out the pinned pages, which may be accessed concurrently (the
// same holds for `Page`).
unsafe impl<T: PinTerm> Sync for PinnedPages<T> {}

impl<T: PinTerm> PinnedPages<T> {
    /// Allocates room for `nr_pages` page pointers.
    fn alloc(nr_pages: usize) -> Result<KVVec<*mut bindings::page>> {
        if nr_pages == 0 {
            return Err(EINVAL);
        }
        Ok(KVVec::with_capacity(nr_pages, GFP_KERNEL)?)
    }

    /// Takes over the pins a GUP call returned `ret` for, or releases them if there are fewer
    /// than `nr_pages`.
    ///
    /// # Safety
    ///
    /// `ret` must be the result of a call that pinned `nr_pages` pages into `pages` with
    /// `FOLL_PIN` and `T::GUP_FLAGS`: a negative errno, or the number of pages pinned, whose
    /// pointers are the first `ret` entries of the spare capacity of `pages`.
    unsafe fn from_pinned(
        mut pages: KVVec<*mut bindings::page>,
        nr_pages: usize,
        ret: c_long,
    ) -> Result<Self> {
        let Ok(pinned) = usize::try_from(ret) else {
            // An errno always fits in an int.
            return Err(Error::from_errno(ret as c_int));
        };
        // SAFETY: The call stored `pinned` page pointers, at most the `nr_pages` it was asked
        // for and thus within the capacity of `pages`.
        unsafe { pages.inc_len(pinned) };
        if pinned < nr_pages {
            // SAFETY: The first `pinned` entries of `pages` point to pages pinned by the call,
            // and nothing else will release these pins.
            unsafe { bindings::unpin_user_pages(pages.as_mut_ptr(), pinned) };
            return Err(EFAULT);
        }
        // INVARIANT: `pages` holds the pages pinned by the call, one pin each, with the flags of
        // `T`, and nobody else releases them.
        Ok(Self {
            pages,
            _term: PhantomData,
        })
    }

    /// Pins `nr_pages` pages of the current process, starting at the user address `start`
    /// (`pin_user_pages_fast()`).
    ///
    /// The mmap lock must not be held: it is taken if the pages have to be faulted in.
    ///
    /// Returns [`EINVAL`] if `nr_pages` is zero or too large, and [`EFAULT`] if not all of the
    /// range could be pinned.
    pub fn pin_user_pages_fast(start: usize, nr_pages: usize, flags: Flags) -> Result<Self> {
        let count = c_int::try_from(nr_pages).map_err(|_| EINVAL)?;
        let mut pages = Self::alloc(nr_pages)?;
        // SAFETY: `pages` has room for `nr_pages` page pointers, and the flags are a valid set of
        // external GUP flags.
        let ret = unsafe {
            bindings::pin_user_pages_fast(
                start,
                count,
                flags.gup_flags() | T::GUP_FLAGS,
                pages.as_mut_ptr(),
            )
        };
        // SAFETY: `ret` is the result of pinning `nr_pages` pages into `pages` with `FOLL_PIN`
        // (implied by `pin_user_pages_fast()`) and `T::GUP_FLAGS`.
        unsafe { Self::from_pinned(pages, nr_pages, ret as c_long) }
    }

    /// Pins `nr_pages` pages of the address space locked by `mmap`, starting at the user address
    /// `start` (`pin_user_pages_remote()`).
    ///
    /// The mmap read lock stays held throughout.
    ///
    /// Returns [`EINVAL`] if `nr_pages` is zero, and [`EFAULT`] if not all of the range could be
    /// pinned.
    pub fn pin_user_pages(
        mmap: &MmapReadGuard<'_>,
        start: usize,
        nr_pages: usize,
        flags: Flags,
    ) -> Result<Self> {
        let mut pages = Self::alloc(nr_pages)?;
        // SAFETY: By the invariants of `MmapReadGuard`, the mmap read lock of `mmap.mm` is held,
        // and `mm_users` of an `MmWithUser` is not zero. A NULL `locked` tells GUP that the lock
        // is held and must not be dropped. `pages` has room for `nr_pages` page pointers, and the
        // flags are a valid set of external GUP flags.
        let ret = unsafe {
            bindings::pin_user_pages_remote(
                mmap.mm.as_raw(),
                start,
                nr_pages,
                flags.gup_flags() | T::GUP_FLAGS,
                pages.as_mut_ptr(),
                core::ptr::null_mut(),
            )
        };
        // SAFETY: `ret` is the result of pinning `nr_pages` pages into `pages` with `FOLL_PIN`
        // (implied by `pin_user_pages_remote()`) and `T::GUP_FLAGS`.
        unsafe { Self::from_pinned(pages, nr_pages, ret) }
    }

    /// Returns the number of pinned pages.
    #[inline]
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Returns whether no page is pinned, which only happens after [`PinnedPages::unpin_dirty`].
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Returns the pinned page at `index`, or [`None`] if `index` is out of range.
    pub fn page(&self, index: usize) -> Option<BorrowedPage<'_>> {
        let page = NonNull::new(*self.pages.get(index)?)?;
        // SAFETY: By the type invariants, the page is pinned until `self` is dropped or
        // consumed, which cannot happen while it is borrowed.
        Some(unsafe { BorrowedPage::from_raw(page) })
    }

    /// Returns an iterator over the pinned pages, in the order they were pinned.
    #[inline]
    pub fn iter(&self) -> PinnedPagesIter<'_> {
        PinnedPagesIter {
            pages: self.pages.iter(),
        }
    }

    /// Unpins the pages and marks them dirty (`unpin_user_pages_dirty_lock()`).
    ///
    /// Use this after the pages were written to behind the memory manager's back, for example by
    /// DMA, so that the data is written back before the pages are reclaimed.
    pub fn unpin_dirty(mut self) {
        // SAFETY: By the type invariants, every page in `pages` holds one pin owned by `self`.
        unsafe {
            bindings::unpin_user_pages_dirty_lock(self.pages.as_mut_ptr(), self.pages.len(), true)
        };
        // INVARIANT: The pins are released: leave nothing for `drop` to unpin.
        self.pages.clear();
    }
}

impl PinnedPages<LongTerm> {
    /// Pins `nr_pages` pages of a memfd, shmem or hugetlbfs file, starting at page `start` of the
    /// file (`pin_user_pages_fd()`).
    ///
    /// The pins are always long-term. Holes are filled, and pages in `ZONE_MOVABLE` or CMA are
    /// migrated out of it first.
    ///
    /// Returns [`EINVAL`] if the file is of another kind, if `nr_pages` is zero or if the range
    /// goes past the end of the file, and [`EPERM`] if [`Flags::WRITE`] is asked for a
    /// write-sealed memfd.
    pub fn pin_user_pages_fd(
        file: &File,
        start: usize,
        nr_pages: usize,
        flags: Flags,
    ) -> Result<Self> {
        let mut pages = Self::alloc(nr_pages)?;
        // SAFETY: `file` is a valid file for the duration of the call, `pages` has room for
        // `nr_pages` page pointers, and the flags are valid `PIN_FD_*` flags.
        let ret = unsafe {
            bindings::pin_user_pages_fd(
                file.as_ptr(),
                start,
                nr_pages,
                flags.pin_fd_flags(),
                pages.as_mut_ptr(),
            )
        };
        // SAFETY: `pin_user_pages_fd()` returns a negative errno or the number of pages it
        // pinned into `pages`, all of them long-term pins that `unpin_user_pages()` releases.
        unsafe { Self::from_pinned(pages, nr_pages, ret) }
    }
}

impl<T: PinTerm> Drop for PinnedPages<T> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, every page in `pages` holds one pin owned by `self`.
        unsafe { bindings::unpin_user_pages(self.pages.as_mut_ptr(), self.pages.len()) };
    }
}

/// An iterator over the pages of a [`PinnedPages`].
pub struct PinnedPagesIter<'a> {
    pages: slice::Iter<'a, *mut bindings::page>,
}

impl<'a> Iterator for PinnedPagesIter<'a> {
    type Item = BorrowedPage<'a>;

    fn next(&mut self) -> Option<BorrowedPage<'a>> {
        let page = NonNull::new(*self.pages.next()?)?;
        // SAFETY: The page is pinned by the `PinnedPages` this iterator borrows for `'a`.
        Some(unsafe { BorrowedPage::from_raw(page) })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pages.size_hint()
    }
}

impl ExactSizeIterator for PinnedPagesIter<'_> {}

impl<T: PinTerm> AsPageIter for PinnedPages<T> {
    type Iter<'a>
        = PinnedPagesIter<'a>
    where
        T: 'a;

    fn page_iter(&mut self) -> PinnedPagesIter<'_> {
        self.iter()
    }
}

#[cfg(CONFIG_RUST_GUP_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_gup)]
mod tests {
    use super::*;
    use crate::{
        cpu::nr_cpu_ids,
        error::{
            from_err_ptr,
            to_result, //
        },
        mm::folio::Folio,
        page::PAGE_SIZE,
        sizes::SZ_2M,
        sync::aref::ARef, //
    };

    const PIN_BIAS: i32 = bindings::GUP_PIN_COUNTING_BIAS as i32;

    /// Creates a memfd of `len` bytes in the kernel, with its pages allocated.
    fn memfd(hugetlb: bool, len: usize) -> Result<ARef<File>> {
        let mut flags = uapi::MFD_ALLOW_SEALING;
        if hugetlb {
            flags |= uapi::MFD_HUGETLB;
        }
        // SAFETY: The name is a NUL-terminated string, and any `MFD_*` flags are accepted.
        let file =
            from_err_ptr(unsafe { bindings::memfd_alloc_file(c"rust_gup".as_char_ptr(), flags) })?;
        // SAFETY: `memfd_alloc_file()` returned a new file and its reference, which the `ARef`
        // takes over; `File` is a transparent wrapper of `struct file`.
        let file: ARef<File> = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
        let len = i64::try_from(len)?;
        // SAFETY: `file` is valid; mode 0 allocates the range and extends the file to cover it.
        to_result(unsafe { bindings::vfs_fallocate(file.as_ptr(), 0, 0, len) } as c_int)?;
        Ok(file)
    }

    /// Maps `len` bytes of `file`, shared and writable, into the address space of the test.
    fn map(file: &File, len: usize) -> Result<usize> {
        // SAFETY: Always safe to call.
        let test = unsafe { bindings::kunit_get_current_test() };
        // SAFETY: `test` is the running test, whose thread gets an address space of its own for
        // the mapping, torn down when the test ends. `file` is valid.
        let addr = unsafe {
            bindings::kunit_vm_mmap(
                test,
                file.as_ptr(),
                0,
                len,
                (bindings::PROT_READ | bindings::PROT_WRITE) as c_ulong,
                bindings::MAP_SHARED as c_ulong,
                0,
            )
        };
        // `vm_mmap()` returns an errno in place of the address when it fails.
        if addr == 0 || addr > usize::MAX - bindings::MAX_ERRNO as usize {
            return Err(ENOMEM);
        }
        Ok(addr)
    }

    /// Reads a node vmstat item exactly: the global count plus the deltas that the CPUs have not
    /// folded into it yet (what writing to `/proc/sys/vm/stat_refresh` folds).
    fn node_stat(item: bindings::node_stat_item) -> i64 {
        let item = item as usize;
        let mut sum = 0;
        // SAFETY: Always safe to call; nodes are not taken offline while the test runs.
        let mut pgdat = unsafe { bindings::first_online_pgdat() };
        while !pgdat.is_null() {
            // SAFETY: `pgdat` is an online node, and its counters are read atomically.
            sum += unsafe { bindings::atomic64_read(&raw const (*pgdat).vm_stat[item]) };
            for cpu in 0..nr_cpu_ids() {
                // SAFETY: `__cpu_possible_mask` is a valid cpumask and `cpu < nr_cpu_ids`.
                let possible = unsafe {
                    bindings::cpumask_test_cpu(cpu as c_int, &raw mut bindings::__cpu_possible_mask)
                };
                if !possible {
                    continue;
                }
                // SAFETY: `per_cpu_nodestats` is a per-CPU allocation and `cpu` is possible.
                let pcp = unsafe { bindings::per_cpu_ptr((*pgdat).per_cpu_nodestats.cast(), cpu) }
                    .cast::<bindings::per_cpu_nodestat>();
                // SAFETY: `pcp` points to the deltas of `cpu`, which that CPU may update at any
                // time: read the one needed once.
                let diff = unsafe { (&raw const (*pcp).vm_node_stat_diff[item]).read_volatile() };
                sum += i64::from(diff);
            }
            // SAFETY: `pgdat` is an online node.
            pgdat = unsafe { bindings::next_online_pgdat(pgdat) };
        }
        sum
    }

    /// The vmstat pin counters: pages pinned and pages unpinned since boot.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct PinStats {
        acquired: i64,
        released: i64,
    }

    impl PinStats {
        fn now() -> Self {
            Self {
                acquired: node_stat(bindings::node_stat_item_NR_FOLL_PIN_ACQUIRED),
                released: node_stat(bindings::node_stat_item_NR_FOLL_PIN_RELEASED),
            }
        }

        /// `self` after `pinned` more pages were pinned and `unpinned` more were unpinned.
        fn plus(self, pinned: i64, unpinned: i64) -> Self {
            Self {
                acquired: self.acquired + pinned,
                released: self.released + unpinned,
            }
        }
    }

    fn ref_count(folio: &Folio) -> i32 {
        // SAFETY: The folio is valid, and `_refcount` is read atomically.
        unsafe {
            bindings::atomic_read(
                &raw const (*folio.as_raw())
                    .__bindgen_anon_1
                    .__bindgen_anon_1
                    ._refcount,
            )
        }
    }

    /// Reads the pincount of a large folio, which small folios do not have.
    fn pincount(folio: &Folio) -> i32 {
        assert!(folio.is_large());
        // SAFETY: The folio is valid and large, so it has a `_pincount`, read atomically.
        unsafe {
            bindings::atomic_read(
                &raw const (*folio.as_raw())
                    .__bindgen_anon_2
                    .__bindgen_anon_1
                    .__bindgen_anon_1
                    .__bindgen_anon_1
                    ._pincount,
            )
        }
    }

    /// A plain reference to a folio, which keeps it from being freed or migrated while the test
    /// looks at it with no pin held.
    ///
    /// # Invariants
    ///
    /// `self.0` points to a folio on which `self` holds a reference.
    struct HeldFolio(NonNull<bindings::folio>);

    impl HeldFolio {
        /// Takes a reference to the folio of the first page of `pages`.
        fn new<T: PinTerm>(pages: &PinnedPages<T>) -> Result<Self> {
            let page = pages.page(0).ok_or(EINVAL)?;
            let folio = page.folio().as_raw();
            // SAFETY: The folio is pinned through `page`, so it is valid.
            unsafe { bindings::folio_get(folio) };
            // INVARIANT: We just took a reference to `folio`.
            Ok(Self(NonNull::new(folio).ok_or(EINVAL)?))
        }

        fn folio(&self) -> &Folio {
            // SAFETY: By the type invariants, `self` holds a reference to the folio.
            unsafe { Folio::from_raw(self.0.as_ptr()) }
        }
    }

    impl Drop for HeldFolio {
        fn drop(&mut self) {
            // SAFETY: By the type invariants, `self` holds a reference to the folio.
            unsafe { bindings::folio_put(self.0.as_ptr()) };
        }
    }

    /// Returns whether `pages` starts in `folio`.
    fn first_in<T: PinTerm>(pages: &PinnedPages<T>, folio: &Folio) -> bool {
        pages
            .page(0)
            .is_some_and(|page| core::ptr::eq(page.folio(), folio))
    }

    #[test]
    fn small_folio_pin_adds_bias() -> Result {
        let file = memfd(false, PAGE_SIZE)?;
        let addr = map(&file, PAGE_SIZE)?;
        // A first long-term pin moves the page out of ZONE_MOVABLE, so that the pins below find
        // it where it is.
        let first = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 1, Flags::WRITE)?;
        let held = HeldFolio::new(&first)?;
        drop(first);
        let folio = held.folio();
        assert!(!folio.is_large());
        assert_eq!(folio.nr_pages(), 1);
        assert!(!folio.maybe_dma_pinned());
        let refs = ref_count(folio);
        let stats = PinStats::now();

        let pinned = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, 1, Flags::WRITE)?;
        assert!(first_in(&pinned, folio));
        assert_eq!(ref_count(folio), refs + PIN_BIAS);
        assert!(folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(1, 0));
        drop(pinned);
        assert_eq!(ref_count(folio), refs);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(1, 1));

        let pinned = PinnedPages::pin_user_pages_fd(&file, 0, 1, Flags::WRITE)?;
        assert!(first_in(&pinned, folio));
        assert_eq!(ref_count(folio), refs + PIN_BIAS);
        assert!(folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(2, 1));
        pinned.unpin_dirty();
        assert_eq!(ref_count(folio), refs);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(2, 2));
        Ok(())
    }

    #[test]
    fn large_folio_pin_adds_pincount() -> Result {
        const NR: usize = 8;
        let file = memfd(true, SZ_2M)?;
        let addr = map(&file, SZ_2M)?;
        let first = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 1, Flags::WRITE)?;
        let held = HeldFolio::new(&first)?;
        drop(first);
        let folio = held.folio();
        assert!(folio.is_large());
        assert_eq!(folio.nr_pages(), SZ_2M / PAGE_SIZE);
        assert_eq!(pincount(folio), 0);
        assert!(!folio.maybe_dma_pinned());
        let refs = ref_count(folio);
        let stats = PinStats::now();

        // Pages 3 to 10 of the folio: the pincount counts pages, not calls.
        let start = addr + 3 * PAGE_SIZE;
        let pinned = PinnedPages::<LongTerm>::pin_user_pages_fast(start, NR, Flags::WRITE)?;
        assert_eq!(pinned.len(), NR);
        assert!(pinned.iter().all(|page| core::ptr::eq(page.folio(), folio)));
        assert_eq!(pincount(folio), NR as i32);
        assert_eq!(ref_count(folio), refs + NR as i32);
        assert!(folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(NR as i64, 0));
        drop(pinned);
        assert_eq!(pincount(folio), 0);
        assert_eq!(ref_count(folio), refs);
        assert_eq!(PinStats::now(), stats.plus(NR as i64, NR as i64));

        let pinned = PinnedPages::pin_user_pages_fd(&file, 3, NR, Flags::empty())?;
        assert!(pinned.iter().all(|page| core::ptr::eq(page.folio(), folio)));
        assert_eq!(pincount(folio), NR as i32);
        assert_eq!(ref_count(folio), refs + NR as i32);
        assert_eq!(PinStats::now(), stats.plus(2 * NR as i64, NR as i64));
        drop(pinned);
        assert_eq!(pincount(folio), 0);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(2 * NR as i64, 2 * NR as i64));
        Ok(())
    }

    #[test]
    fn pin_counters_follow_pages() -> Result {
        const NR: usize = 100;
        let file = memfd(false, NR * PAGE_SIZE)?;
        let addr = map(&file, NR * PAGE_SIZE)?;
        // Move the pages out of ZONE_MOVABLE first: a long-term pin that migrates pages also
        // counts the pins it dropped to migrate them.
        drop(PinnedPages::pin_user_pages_fd(
            &file,
            0,
            NR,
            Flags::empty(),
        )?);
        let stats = PinStats::now();

        let pinned = {
            let task = crate::current!();
            let mmap = task.mm().ok_or(EINVAL)?.mmap_read_lock();
            PinnedPages::<ShortTerm>::pin_user_pages(&mmap, addr, NR, Flags::WRITE)?
        };
        assert_eq!(pinned.len(), NR);
        assert!(pinned.iter().all(|page| page.folio().maybe_dma_pinned()));
        assert_eq!(PinStats::now(), stats.plus(NR as i64, 0));
        drop(pinned);
        assert_eq!(PinStats::now(), stats.plus(NR as i64, NR as i64));

        let mut pinned = PinnedPages::pin_user_pages_fd(&file, 0, NR, Flags::WRITE)?;
        assert_eq!(pinned.page_iter().count(), NR);
        assert_eq!(PinStats::now(), stats.plus(2 * NR as i64, NR as i64));
        pinned.unpin_dirty();
        assert_eq!(PinStats::now(), stats.plus(2 * NR as i64, 2 * NR as i64));
        Ok(())
    }

    #[test]
    fn failed_pin_leaves_no_pin() -> Result {
        let file = memfd(false, 2 * PAGE_SIZE)?;
        // Pages 2 and 3 of the mapping are past the end of the file.
        let addr = map(&file, 4 * PAGE_SIZE)?;
        let first = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 1, Flags::WRITE)?;
        let held = HeldFolio::new(&first)?;
        drop(first);
        let stats = PinStats::now();

        // Pages 0 and 1 are pinned, then released when page 2 fails.
        let ret = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 4, Flags::WRITE);
        assert_eq!(ret.err(), Some(EFAULT));
        let now = PinStats::now();
        assert_eq!(now.acquired - stats.acquired, now.released - stats.released);
        assert!(!held.folio().maybe_dma_pinned());

        let stats = PinStats::now();
        let ret = PinnedPages::pin_user_pages_fd(&file, 1, 2, Flags::WRITE);
        assert_eq!(ret.err(), Some(EINVAL));
        let ret = PinnedPages::pin_user_pages_fd(&file, 0, 0, Flags::WRITE);
        assert_eq!(ret.err(), Some(EINVAL));
        let ret = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, 0, Flags::WRITE);
        assert_eq!(ret.err(), Some(EINVAL));
        // Nothing is mapped at address 0.
        let ret = PinnedPages::<ShortTerm>::pin_user_pages_fast(0, 1, Flags::empty());
        assert_eq!(ret.err(), Some(EFAULT));

        // SAFETY: `file` is a valid memfd.
        let ret = unsafe {
            bindings::memfd_fcntl(
                file.as_ptr(),
                bindings::F_ADD_SEALS,
                bindings::F_SEAL_FUTURE_WRITE,
            )
        };
        to_result(ret as c_int)?;
        let ret = PinnedPages::pin_user_pages_fd(&file, 0, 2, Flags::WRITE);
        assert_eq!(ret.err(), Some(EPERM));
        assert_eq!(PinStats::now(), stats);
        assert!(!held.folio().maybe_dma_pinned());

        // Read-only pins of a sealed memfd are fine.
        let pinned = PinnedPages::pin_user_pages_fd(&file, 0, 2, Flags::empty())?;
        assert_eq!(PinStats::now(), stats.plus(2, 0));
        drop(pinned);
        assert_eq!(PinStats::now(), stats.plus(2, 2));
        Ok(())
    }

    /// Fills a new memfd of `nr` pages with a byte per page: `page index + 1`.
    fn memfd_with_data(nr: usize) -> Result<ARef<File>> {
        let file = memfd(false, nr * PAGE_SIZE)?;
        let mut data = KVVec::with_capacity(nr * PAGE_SIZE, GFP_KERNEL)?;
        for i in 0..nr {
            data.extend_with(PAGE_SIZE, (i + 1) as u8, GFP_KERNEL)?;
        }
        let mut pos = 0;
        // SAFETY: `file` is valid, `data` holds `data.len()` bytes, and `pos` is a valid offset.
        let written = unsafe {
            bindings::kernel_write(file.as_ptr(), data.as_ptr().cast(), data.len(), &mut pos)
        };
        assert_eq!(usize::try_from(written), Ok(data.len()));
        Ok(file)
    }

    /// Checks that every page of `pages` is long-term pinnable and holds its data.
    fn check_pinnable_with_data(pages: &PinnedPages<LongTerm>) -> Result {
        for (i, page) in pages.iter().enumerate() {
            assert!(page.folio().is_longterm_pinnable());
            let mut byte = 0u8;
            // SAFETY: `byte` is valid for writing one byte, and nothing writes to the page.
            unsafe { page.read_raw(&mut byte, PAGE_SIZE - 1, 1)? };
            assert_eq!(byte, (i + 1) as u8);
        }
        Ok(())
    }

    /// Checks that at least `nr` pages were pinned since `stats` and that all pins were released:
    /// pins dropped to migrate pages count on both sides.
    fn check_balanced(stats: PinStats, nr: usize) {
        let now = PinStats::now();
        assert!(now.acquired - stats.acquired >= nr as i64);
        assert_eq!(now.acquired - stats.acquired, now.released - stats.released);
    }

    /// Returns how many pages of the user range are not long-term pinnable where they are.
    fn count_movable(addr: usize, nr: usize) -> Result<usize> {
        let pinned = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, nr, Flags::empty())?;
        Ok(pinned
            .iter()
            .filter(|page| !page.folio().is_longterm_pinnable())
            .count())
    }

    #[test]
    fn longterm_pin_leaves_zone_movable() -> Result {
        const NR: usize = 64;
        // Fresh shmem pages are movable allocations: with `movablecore=` they come from
        // ZONE_MOVABLE, which a short-term pin leaves them in.
        let file = memfd_with_data(NR)?;
        let addr = map(&file, NR * PAGE_SIZE)?;
        let movable = count_movable(addr, NR)?;
        // Fails without ZONE_MOVABLE: boot with `movablecore=`.
        assert!(movable > 0);
        let stats = PinStats::now();
        let pinned = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, NR, Flags::empty())?;
        check_pinnable_with_data(&pinned)?;
        drop(pinned);
        check_balanced(stats, NR);

        let file = memfd_with_data(NR)?;
        let addr = map(&file, NR * PAGE_SIZE)?;
        let movable = count_movable(addr, NR)?;
        assert!(movable > 0);
        let stats = PinStats::now();
        let pinned = PinnedPages::pin_user_pages_fd(&file, 0, NR, Flags::empty())?;
        check_pinnable_with_data(&pinned)?;
        drop(pinned);
        check_balanced(stats, NR);
        Ok(())
    }
}
