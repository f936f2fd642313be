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
        Allocator,
        Vec, //
    },
    bindings,
    error::to_result,
    fs::LocalFile,
    mm::{
        folio::Folio,
        MmapReadGuard, //
    },
    page::{
        AsPageIter,
        BorrowedPage,
        Page, //
    },
    prelude::*,
};
use core::{
    iter::FusedIterator,
    marker::PhantomData,
    ops::{
        BitOr,
        Range, //
    },
    ptr::NonNull,
    slice, //
};

/// Options for pinning pages.
///
/// Pins are always pins: `FOLL_PIN` and `FOLL_GET` cannot be expressed. Whether a pin is long-term
/// is not a flag either but the type parameter of [`PinnedPages`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinFlags(u32);

impl PinFlags {
    /// The pages will be written to, for example by a device.
    ///
    /// Pins of user addresses break copy-on-write first (`FOLL_WRITE`); pins of a file refuse a
    /// write-sealed memfd (`PIN_FD_WRITE`).
    pub const WRITE: PinFlags = PinFlags(1 << 0);

    /// No flags: the pages will only be read.
    pub const fn empty() -> PinFlags {
        PinFlags(0)
    }

    /// Returns whether `self` contains all of `flags`.
    pub const fn contains(self, flags: PinFlags) -> bool {
        self.0 & flags.0 == flags.0
    }

    #[inline]
    fn gup_flags(self) -> u32 {
        if self.contains(Self::WRITE) {
            bindings::FOLL_WRITE
        } else {
            0
        }
    }

    #[inline]
    fn pin_fd_flags(self) -> u32 {
        if self.contains(Self::WRITE) {
            bindings::PIN_FD_WRITE
        } else {
            0
        }
    }
}

impl BitOr for PinFlags {
    type Output = PinFlags;

    fn bitor(self, rhs: PinFlags) -> PinFlags {
        PinFlags(self.0 | rhs.0)
    }
}

mod private {
    pub trait Sealed {
        /// The GUP flags that select this kind of pin.
        const GUP_FLAGS: u32;
    }
}

/// How long pins are held: the type parameter of [`PinnedPages`].
///
/// This trait is sealed: [`LongTerm`] and [`ShortTerm`] are its only implementations.
pub trait PinTerm: private::Sealed {}

/// Long-term pins (`FOLL_LONGTERM`): held for as long as the holder decides, for example while a
/// device may access the pages at any time.
///
/// Pages in `ZONE_MOVABLE` or in a CMA area are migrated out of it before they are pinned, so
/// that long-term pins do not defeat memory hot-unplug and contiguous allocations.
pub enum LongTerm {}

impl private::Sealed for LongTerm {
    const GUP_FLAGS: u32 = bindings::FOLL_LONGTERM;
}

impl PinTerm for LongTerm {}

/// Short-term pins: held for the duration of one bounded operation, such as a direct I/O request.
pub enum ShortTerm {}

impl private::Sealed for ShortTerm {
    const GUP_FLAGS: u32 = 0;
}

impl PinTerm for ShortTerm {}

/// Whom long-term pins of a file are charged to.
///
/// A long-term pin keeps memory from being reclaimed or migrated for as long as its holder likes.
/// A driver that pins memory on behalf of users who are not trusted with that should charge the
/// pins to them, as RDMA, io_uring and iommufd do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Accounting {
    /// Not charged: the caller bounds the pins or accounts for them itself.
    #[default]
    None,
    /// Charged to the calling process's `RLIMIT_MEMLOCK` (`PIN_FD_ACCOUNT`): to its user's locked
    /// memory, unless it has `CAP_IPC_LOCK`, and to its `VmPin`. The charge is returned when the
    /// pages are unpinned, by whichever task drops the [`PinnedPages`], which must then be in
    /// process context: returning the charge may free the charged `mm_struct`.
    Memlock,
}

/// An `RLIMIT_MEMLOCK` charge for pins of a file, returned when dropped.
///
/// # Invariants
///
/// `self.0` is empty (zeroed) or a charge made by `pin_user_pages_fd()` with `PIN_FD_ACCOUNT` or
/// by `pin_fd_account_charge()`, which only this object returns.
struct MemlockCharge(bindings::pin_fd_account);

impl MemlockCharge {
    #[inline]
    fn empty() -> Self {
        // INVARIANT: A zeroed `struct pin_fd_account` is an empty charge.
        Self(pin_init::zeroed())
    }
}

impl Drop for MemlockCharge {
    #[inline]
    fn drop(&mut self) {
        // An empty charge, the usual one, has nothing to return: save the call.
        if self.0.nr_pages != 0 {
            // SAFETY: The charge counts pages, so it is not the empty one: by the type
            // invariants, it was made by `pin_user_pages_fd()` or `pin_fd_account_charge()`, and
            // nobody else returns it.
            unsafe { bindings::pin_fd_unaccount(&mut self.0) };
        }
    }
}

/// Pages pinned for DMA, unpinned when dropped.
///
/// A constructor pins all the pages it is asked for or none: a partial pin is released before
/// [`EFAULT`] is returned. Other errors of the C functions are passed on, for example [`ENOMEM`]
/// when pages cannot be allocated or migrated, or [`EINTR`] on a fatal signal.
///
/// The pages are lent out as [`BorrowedPage`]s, by index, by iterator or through [`AsPageIter`],
/// and their folios as [`Folio`]s; they are never freed by this type.
///
/// Pages pinned with [`PinFlags::WRITE`] are marked dirty when they are unpinned
/// (`unpin_user_pages_dirty_lock()`), as `Documentation/core-api/pin_user_pages.rst` asks: a
/// device, or a PFN mapping of the pages, writes to them behind the memory manager's back, and a
/// clean page-cache page could be dropped by reclaim once unpinned, with the data written to it.
///
/// # Context
///
/// Dropping may sleep: marking a page dirty takes its folio lock, the page array may have been
/// allocated with `vmalloc()`, and returning a charge ([`Accounting::Memlock`]) may free an
/// `mm_struct`.
///
/// # Examples
///
/// Pin a user buffer long-term for a device to write into; the pages are released dirty:
///
/// ```
/// use kernel::mm::gup::{PinFlags, LongTerm, PinnedPages};
///
/// fn dma_into_user(addr: usize, nr_pages: usize) -> Result {
///     let pages = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, nr_pages, PinFlags::WRITE)?;
///     for page in pages.iter() {
///         // Hand `page` to the device.
///         let _ = page;
///     }
///     // The device wrote to the pages: dropping `pages` marks them dirty as it unpins them.
///     drop(pages);
///     Ok(())
/// }
/// ```
///
/// # Invariants
///
/// - `pages` is not empty, except in an [`FdRangePins`] that is being filled.
/// - Every entry of `pages` is a page on which this object holds one pin, taken with `FOLL_PIN`
///   and `T::GUP_FLAGS` (or by `pin_user_pages_fd()` for [`LongTerm`] pins), or the shared zero
///   page, which GUP lends without a pin and `unpin_user_pages()` skips.
/// - The pins are released only by [`Drop`].
/// - If `dirty`, every pin was taken with [`PinFlags::WRITE`]: no entry is the zero page, which
///   GUP never lends for writing.
/// - `charge` is empty, or the `RLIMIT_MEMLOCK` charge for pages of `pages` (in an
///   [`FdRangePins`], for the pages it is to hold). It is returned after they are unpinned: fields
///   are dropped after [`Drop::drop`] has run.
pub struct PinnedPages<T: PinTerm> {
    pages: KVVec<NonNull<bindings::page>>,
    /// Mark the pages dirty when unpinning them.
    dirty: bool,
    charge: MemlockCharge,
    _term: PhantomData<T>,
}

// SAFETY: Pins have no thread affinity: they can be released from any thread, and the pages they
// pin can be accessed from any thread. A charge holds references to a `user_struct` and an
// `mm_struct`, which can be dropped from any thread.
unsafe impl<T: PinTerm> Send for PinnedPages<T> {}

// SAFETY: Shared access only lends out the pinned pages and their folios, which may be accessed
// concurrently (the same holds for `Page`).
unsafe impl<T: PinTerm> Sync for PinnedPages<T> {}

impl<T: PinTerm> PinnedPages<T> {
    /// Allocates room for `nr_pages` page pointers.
    fn alloc(nr_pages: usize) -> Result<KVVec<NonNull<bindings::page>>> {
        if nr_pages == 0 {
            return Err(EINVAL);
        }
        Ok(KVVec::with_capacity(nr_pages, GFP_KERNEL)?)
    }

    /// The array a GUP call fills, as C sees it.
    fn array(pages: &mut KVVec<NonNull<bindings::page>>) -> *mut *mut bindings::page {
        // `NonNull<T>` has the layout of `*mut T`.
        pages.as_mut_ptr().cast()
    }

    /// Takes over the pins a GUP call with `flags` returned `ret` for, and their `charge`, or
    /// releases them if there are fewer than `nr_pages`.
    ///
    /// # Safety
    ///
    /// `ret` must be the result of a call that pinned up to `nr_pages` pages into the spare
    /// capacity of `pages` with `FOLL_PIN` and `T::GUP_FLAGS`: a negative errno, or the number of
    /// pages it stored and pinned (or lent, for the zero page). `charge` must be empty or the
    /// call's charge for those pages.
    unsafe fn from_pinned(
        mut pages: KVVec<NonNull<bindings::page>>,
        nr_pages: usize,
        flags: PinFlags,
        ret: c_long,
        charge: MemlockCharge,
    ) -> Result<Self> {
        let Ok(pinned) = usize::try_from(ret) else {
            // An errno always fits in an int.
            return Err(Error::from_errno(ret as c_int));
        };
        // SAFETY: The call stored `pinned` page pointers, none of them NULL, at most the
        // `nr_pages` it was asked for and thus within the capacity of `pages`.
        unsafe { pages.inc_len(pinned) };
        // INVARIANT: `pages` holds the pages pinned by the call, one pin each, with the flags of
        // `T`, and nobody else releases them. They are all `nr_pages > 0` of them, or `this` is
        // dropped right away, clean. `dirty` only if they were pinned for writing. `charge` is
        // empty or their charge.
        let mut this = Self {
            pages,
            dirty: flags.contains(PinFlags::WRITE),
            charge,
            _term: PhantomData,
        };
        if pinned < nr_pages {
            // A partial pin never escapes: dropping `this` releases it, clean since nothing was
            // written to the pages yet.
            this.dirty = false;
            drop(this);
            return Err(EFAULT);
        }
        Ok(this)
    }

    /// Pins `nr_pages` pages of the current process, starting at the user address `start`
    /// (`pin_user_pages_fast()`).
    ///
    /// The mmap lock must not be held: it is taken if the pages have to be faulted in.
    ///
    /// Returns [`EINVAL`] if `nr_pages` is zero or too large, and [`EFAULT`] if not all of the
    /// range could be pinned or the current task has no user address space (a kernel thread).
    pub fn pin_user_pages_fast(start: usize, nr_pages: usize, flags: PinFlags) -> Result<Self> {
        let count = c_int::try_from(nr_pages).map_err(|_| EINVAL)?;
        // `pin_user_pages_fast()` dereferences `current->mm` without checking it.
        if crate::current!().mm().is_none() {
            return Err(EFAULT);
        }
        let mut pages = Self::alloc(nr_pages)?;
        // SAFETY: `current->mm` is not NULL, and only the current task can change it. `pages` has
        // room for `nr_pages` page pointers, and the flags are a valid set of external GUP flags.
        let ret = unsafe {
            bindings::pin_user_pages_fast(
                start,
                count,
                flags.gup_flags() | T::GUP_FLAGS,
                Self::array(&mut pages),
            )
        };
        // SAFETY: `ret` is the result of pinning up to `nr_pages` pages into `pages` with
        // `FOLL_PIN` (implied by `pin_user_pages_fast()`) and `T::GUP_FLAGS`.
        unsafe {
            Self::from_pinned(
                pages,
                nr_pages,
                flags,
                ret as c_long,
                MemlockCharge::empty(),
            )
        }
    }

    /// Pins `nr_pages` pages of the address space whose mmap read lock `mmap` holds, starting at
    /// the user address `start` (`pin_user_pages_remote()`).
    ///
    /// GUP keeps the lock held throughout and never drops it. The address space may be another
    /// process's: as for any remote access, memory protection keys are not checked and faults
    /// are accounted as remote (`FOLL_REMOTE`).
    ///
    /// Returns [`EINVAL`] if `nr_pages` is zero, and [`EFAULT`] if not all of the range could be
    /// pinned.
    pub fn pin_user_pages_remote(
        mmap: &MmapReadGuard<'_>,
        start: usize,
        nr_pages: usize,
        flags: PinFlags,
    ) -> Result<Self> {
        let mut pages = Self::alloc(nr_pages)?;
        // SAFETY: By the invariants of `MmapReadGuard`, the mmap read lock of `mmap.mm` is held,
        // and the `mm_users` of an `MmWithUser` is not zero. With a NULL `locked`, GUP relies on
        // the lock being held and never drops it. `pages` has room for `nr_pages` page pointers,
        // and the flags are a valid set of external GUP flags.
        let ret = unsafe {
            bindings::pin_user_pages_remote(
                mmap.mm.as_raw(),
                start,
                nr_pages,
                flags.gup_flags() | T::GUP_FLAGS,
                Self::array(&mut pages),
                core::ptr::null_mut(),
            )
        };
        // SAFETY: `ret` is the result of pinning up to `nr_pages` pages into `pages` with
        // `FOLL_PIN` (implied by `pin_user_pages_remote()`) and `T::GUP_FLAGS`.
        unsafe { Self::from_pinned(pages, nr_pages, flags, ret, MemlockCharge::empty()) }
    }

    /// Returns the number of pinned pages.
    #[inline]
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Returns whether no page is pinned, which is never the case: constructors refuse to pin
    /// zero pages.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Returns the pinned page at `index`, or [`None`] if `index` is out of range.
    pub fn page(&self, index: usize) -> Option<BorrowedPage<'_>> {
        let page = *self.pages.get(index)?;
        // SAFETY: By the type invariants, the page is pinned until `self` is dropped or
        // consumed, which cannot happen while it is borrowed.
        Some(unsafe { BorrowedPage::from_raw(page) })
    }

    /// Returns the folio of the pinned page at `index`, or [`None`] if `index` is out of range.
    pub fn folio(&self, index: usize) -> Option<&Folio> {
        let page = self.pages.get(index)?;
        // SAFETY: By the type invariants, the page is pinned (or is the zero page, which is never
        // freed) until `self` is dropped or consumed, which cannot happen while it is borrowed;
        // a pinned folio can be neither freed nor split.
        Some(unsafe { Folio::from_raw(bindings::page_folio(page.as_ptr())) })
    }

    /// Returns an iterator over the pinned pages, in the order they were pinned.
    #[inline]
    pub fn iter(&self) -> PinnedPagesIter<'_> {
        PinnedPagesIter {
            pages: self.pages.iter(),
        }
    }

    /// Returns an iterator over the pinned pages of `range` as runs of consecutive pages of one
    /// folio, in order, or [`None`] if `range` is out of bounds.
    ///
    /// A run ends where a folio ends or where the next entry is not the next page; pins of a file
    /// ([`PinnedPages::pin_user_pages_fd`]) give at most one run per folio of each pinned range.
    /// No struct page but the first of each run is read (`pages_folio_run()`): the other entries
    /// are compared by address.
    pub fn folio_runs(&self, range: Range<usize>) -> Option<FolioRuns<'_>> {
        // INVARIANT: By the type invariants of `self`, every entry is pinned by `self` or is the
        // zero page, and `self` is borrowed for as long as the iterator lives.
        Some(FolioRuns {
            pages: self.pages.get(range)?,
            writable: self.dirty,
        })
    }

    /// Returns whether the pages were pinned for writing ([`PinFlags::WRITE`]): only then may a
    /// device or a user mapping write to them.
    #[inline]
    pub fn writable(&self) -> bool {
        self.dirty
    }

    /// Returns the pinned pages as the array of `struct page` pointers that C functions such as
    /// `vm_map_ram()` take. The pages stay pinned while the array is borrowed.
    #[inline]
    pub fn as_raw_pages(&self) -> &[NonNull<bindings::page>] {
        &self.pages
    }
}

impl PinnedPages<LongTerm> {
    /// Pins `nr_pages` pages of a memfd, shmem or hugetlbfs file, starting at page `start` of the
    /// file (`pin_user_pages_fd()`).
    ///
    /// The pins are always long-term. Holes are filled, and pages in `ZONE_MOVABLE` or CMA are
    /// migrated out of it first. The pins do not hold a reference to `file`: a file just looked
    /// up with [`LocalFile::fget`] will do, and so will a [`File`](crate::fs::File).
    ///
    /// With [`Accounting::Memlock`], the pages are charged to the calling process before they
    /// are pinned, and the charge is returned after they are unpinned.
    ///
    /// A pin grants no more than a shared mapping of `file` would: it returns [`EACCES`] if `file`
    /// is not open for reading, or, with [`PinFlags::WRITE`], not for writing or append-only.
    ///
    /// Returns [`EINVAL`] if the file is of another kind, if `nr_pages` is zero or if the range
    /// goes past the end of the file, [`EPERM`] if [`PinFlags::WRITE`] is asked for a write-sealed
    /// memfd, and [`ENOMEM`] if the charge would exceed `RLIMIT_MEMLOCK`.
    pub fn pin_user_pages_fd(
        file: &LocalFile,
        start: usize,
        nr_pages: usize,
        flags: PinFlags,
        accounting: Accounting,
    ) -> Result<Self> {
        let mut pages = Self::alloc(nr_pages)?;
        let mut charge = MemlockCharge::empty();
        let (account, acct) = match accounting {
            Accounting::None => (0, core::ptr::null_mut()),
            Accounting::Memlock => (bindings::PIN_FD_ACCOUNT, &raw mut charge.0),
        };
        // SAFETY: `file` is a valid file for the duration of the call, `pages` has room for
        // `nr_pages` page pointers, and the flags are valid `PIN_FD_*` flags. With
        // `PIN_FD_ACCOUNT`, `acct` points to an empty charge, and NULL without it.
        let ret = unsafe {
            bindings::pin_user_pages_fd(
                file.as_ptr(),
                start,
                nr_pages,
                flags.pin_fd_flags() | account,
                Self::array(&mut pages),
                acct,
            )
        };
        // SAFETY: `pin_user_pages_fd()` returns a negative errno or `nr_pages`, the number of
        // pages it pinned into `pages`, all of them long-term pins that `unpin_user_pages()`
        // releases. `charge` is their charge, or empty if none was asked for or the call failed.
        unsafe { Self::from_pinned(pages, nr_pages, flags, ret, charge) }
    }
}

impl PinnedPages<LongTerm> {
    /// Starts pinning `nr_pages` pages of files into one object, in ranges that
    /// [`FdRangePins::pin`] adds in order, for example the memfd ranges of a dma-buf.
    ///
    /// The array for all the pages is allocated, and with [`Accounting::Memlock`] all of them are
    /// charged, before anything is pinned: a request over the caller's `RLIMIT_MEMLOCK` fails at
    /// once with [`ENOMEM`], however large. Returns [`EINVAL`] if `nr_pages` is zero.
    #[inline]
    pub fn pin_fd_ranges(
        nr_pages: usize,
        flags: PinFlags,
        accounting: Accounting,
    ) -> Result<FdRangePins> {
        if nr_pages == 0 {
            return Err(EINVAL);
        }
        let mut charge = MemlockCharge::empty();
        if accounting == Accounting::Memlock {
            // SAFETY: `charge` is an empty charge, which the call fills on success only.
            to_result(unsafe { bindings::pin_fd_account_charge(&mut charge.0, nr_pages) })?;
        }
        let pages = Self::alloc(nr_pages)?;
        // INVARIANT: The array has room for `nr_pages` pages and holds none yet, `dirty` is false
        // and `charge` is empty or the charge for `nr_pages` pages.
        Ok(FdRangePins {
            pins: Self {
                pages,
                dirty: false,
                charge,
                _term: PhantomData,
            },
            nr_pages,
            flags,
        })
    }
}

/// Long-term pins of ranges of files being gathered into one [`PinnedPages`], from
/// [`PinnedPages::pin_fd_ranges`].
///
/// Dropping it releases the pages pinned so far, clean since nothing can have written to them
/// through the pins yet, and returns the charge; a failed [`FdRangePins::pin`] leaves the earlier
/// ranges pinned.
///
/// # Invariants
///
/// `pins.pages` has room for `nr_pages` pages, `pins.dirty` is false, and `pins.charge` is empty or
/// the charge for `nr_pages` pages. Every page in `pins.pages` was pinned with `flags`.
#[must_use]
pub struct FdRangePins {
    pins: PinnedPages<LongTerm>,
    nr_pages: usize,
    flags: PinFlags,
}

impl FdRangePins {
    /// Pins `nr_pages` pages of `file` from page `start` on, after the pages pinned so far
    /// ([`PinnedPages::pin_user_pages_fd`], with its errors and permission checks, and with the
    /// flags given to [`PinnedPages::pin_fd_ranges`]).
    ///
    /// Returns [`EINVAL`] if `nr_pages` is zero or more than the pages left to pin. On failure,
    /// nothing of this range is left pinned; the earlier ranges stay.
    #[inline]
    pub fn pin(&mut self, file: &LocalFile, start: usize, nr_pages: usize) -> Result {
        let len = self.pins.pages.len();
        if nr_pages == 0 || nr_pages > self.nr_pages - len {
            return Err(EINVAL);
        }
        // SAFETY: `file` is a valid file for the duration of the call, the array has room for
        // `nr_pages` page pointers after its `len` entries (type invariants), and the flags are
        // valid `PIN_FD_*` flags without `PIN_FD_ACCOUNT`, hence a NULL charge.
        let ret = unsafe {
            bindings::pin_user_pages_fd(
                file.as_ptr(),
                start,
                nr_pages,
                self.flags.pin_fd_flags(),
                PinnedPages::<LongTerm>::array(&mut self.pins.pages).add(len),
                core::ptr::null_mut(),
            )
        };
        let pinned = usize::try_from(ret).map_err(|_| Error::from_errno(ret as c_int))?;
        // `pin_user_pages_fd()` pins all the pages or none; should it ever return fewer, the pins
        // it took are kept, to be released with the others.
        let kept = pinned.min(nr_pages);
        // SAFETY: The call stored `pinned` page pointers, none of them NULL, after the first `len`
        // entries; at most `nr_pages` of them, within the capacity, are taken.
        // INVARIANT: The new entries are long-term pins taken with `self.flags`, which `self.pins`
        // releases.
        unsafe { self.pins.pages.inc_len(kept) };
        if kept < nr_pages {
            return Err(EFAULT);
        }
        Ok(())
    }

    /// Returns the pins once every page is pinned, or [`EINVAL`] (and releases them) if pages
    /// are left.
    #[inline]
    pub fn finish(mut self) -> Result<PinnedPages<LongTerm>> {
        if self.pins.pages.len() != self.nr_pages {
            return Err(EINVAL);
        }
        // INVARIANT: The array is full and not empty, and `charge` is the charge for its pages.
        // Pins taken for writing are released dirty.
        self.pins.dirty = self.flags.contains(PinFlags::WRITE);
        Ok(self.pins)
    }
}

impl<T: PinTerm> Drop for PinnedPages<T> {
    fn drop(&mut self) {
        // Say so in every drop, not only when a page is still clean or the array is vmalloc'ed.
        crate::task::might_sleep();
        let len = self.pages.len();
        // SAFETY: By the type invariants, each of the `len` pages holds one pin owned by `self`,
        // or is the zero page, which is unpinned as a no-op. GUP never lends the zero page for
        // [`PinFlags::WRITE`] (a write fault breaks copy-on-write first), and only pages pinned for
        // writing are dirtied.
        // `unpin_user_pages_dirty_lock()` releases consecutive pages of one folio with one update
        // of the folio, and assumes nothing of how the pages lie in memory.
        unsafe {
            bindings::unpin_user_pages_dirty_lock(Self::array(&mut self.pages), len, self.dirty)
        };
    }
}

/// Consecutive pages of one folio, lent by a [`PinnedPages`] or by owned pages: a run of
/// [`FolioRuns`].
///
/// The pages are pinned, or the run is one entry of the zero page, which GUP lends unpinned, or
/// the page is owned by a [`Page`] (an order-0 page, a run of its own).
pub struct FolioRun<'a> {
    folio: &'a Folio,
    first: BorrowedPage<'a>,
    nr_pages: usize,
}

impl<'a> FolioRun<'a> {
    /// Returns the folio of the pages.
    #[inline]
    pub fn folio(&self) -> &'a Folio {
        self.folio
    }

    /// Returns the first page of the run.
    #[inline]
    pub fn first_page(&self) -> &BorrowedPage<'a> {
        &self.first
    }

    /// Returns the number of pages in the run, at least one: the run covers the pages from
    /// [`FolioRun::first_page`] on, physically contiguous.
    #[inline]
    pub fn nr_pages(&self) -> usize {
        self.nr_pages
    }
}

/// An iterator over pages as runs of one folio: those of a [`PinnedPages`], from
/// [`PinnedPages::folio_runs`], or pages a driver allocated, from [`FolioRuns::of_pages`].
///
/// # Invariants
///
/// Every entry of `pages` is a page pinned by the [`PinnedPages`] borrowed for `'a`, or the zero
/// page, or every entry is a page owned by a [`Page`] borrowed for `'a`. If `writable`, every pin
/// was taken with [`PinFlags::WRITE`], or the pages are owned.
#[derive(Clone)]
pub struct FolioRuns<'a> {
    pages: &'a [NonNull<bindings::page>],
    writable: bool,
}

impl<'a> FolioRuns<'a> {
    /// Returns the runs of `pages`, which the caller allocated: a table or a mapping of them, from
    /// a dma-buf exporter whose memory is its own for example, borrows them for `'a`. Pages of
    /// [`Page::alloc_page`] are order-0 pages, not compound, a run each.
    ///
    /// The pages are writable, as their owner may write to them. They come in a [`Vec`], which
    /// holds `Page` values, owned: a `&Page` may also be lent by a [`BorrowedPage`], of a page
    /// pinned only for reading for example, but a vector of them cannot be made of it.
    ///
    /// Devices and user space will see the pages: allocate them zeroed (`__GFP_ZERO`) or fill them
    /// first, lest old kernel data leak; and not movable (`__GFP_MOVABLE`), as pages held for the
    /// life of a dma-buf cannot migrate.
    #[inline]
    pub fn of_pages<A: Allocator>(pages: &'a Vec<Page, A>) -> Self {
        // CAST: `Page` is a transparent `NonNull<bindings::page>`.
        let raw = pages.as_ptr().cast::<NonNull<bindings::page>>();
        // INVARIANT: Every entry is a page owned by a `Page` of `pages`, borrowed for `'a`: safe
        // code makes a `Page` value only by allocating its page.
        Self {
            // SAFETY: `raw` points to `pages.len()` valid `NonNull<bindings::page>`, borrowed from
            // `pages` for `'a`.
            pages: unsafe { slice::from_raw_parts(raw, pages.len()) },
            writable: true,
        }
    }

    /// Returns whether the pages were pinned for writing ([`PinnedPages::writable`]), or are
    /// owned.
    #[inline]
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Returns the entries not walked yet, for C functions that take an array of pages.
    #[inline]
    pub(crate) fn as_raw_pages(&self) -> &'a [NonNull<bindings::page>] {
        self.pages
    }
}

impl<'a> Iterator for FolioRuns<'a> {
    type Item = FolioRun<'a>;

    #[inline]
    fn next(&mut self) -> Option<FolioRun<'a>> {
        let first = *self.pages.first()?;
        let mut nr_pages = 0;
        // SAFETY: `self.pages` is a non-empty array of `self.pages.len()` pages, which by the type
        // invariants are pinned (or the zero page), or owned, while `'a` lasts: their folios can
        // be neither freed nor split. `NonNull<T>` has the layout of `*mut T`.
        let folio = unsafe {
            bindings::pages_folio_run(self.pages.as_ptr().cast(), self.pages.len(), &mut nr_pages)
        };
        // `pages_folio_run()` returns a run of 1 to `self.pages.len()` entries.
        // INVARIANT: The rest of the entries are pages of the same `PinnedPages`, or owned pages
        // of the same vector.
        self.pages = self.pages.get(nr_pages..).unwrap_or_default();
        Some(FolioRun {
            // SAFETY: `folio` is the folio of a page pinned or owned for `'a`, see above.
            folio: unsafe { Folio::from_raw(folio) },
            // SAFETY: The page is pinned or owned for `'a`, see above.
            first: unsafe { BorrowedPage::from_raw(first) },
            nr_pages,
        })
    }
}

impl FusedIterator for FolioRuns<'_> {}

/// An iterator over the pages of a [`PinnedPages`].
pub struct PinnedPagesIter<'a> {
    pages: slice::Iter<'a, NonNull<bindings::page>>,
}

impl<'a> Iterator for PinnedPagesIter<'a> {
    type Item = BorrowedPage<'a>;

    fn next(&mut self) -> Option<BorrowedPage<'a>> {
        let page = *self.pages.next()?;
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
    //! The tests run at boot, on an otherwise idle system: they compare exact pin counts. A failed
    //! assertion ends the test's thread without running destructors, so it leaks pins as well.

    use super::*;
    use crate::{
        cpu::nr_cpu_ids,
        error::from_err_ptr,
        fs::File,
        page::PAGE_SIZE,
        sizes::SZ_2M,
        sync::aref::ARef, //
    };

    const PIN_BIAS: i32 = bindings::GUP_PIN_COUNTING_BIAS as i32;

    /// Marks the running test as skipped, with `reason`, for a machine that lacks what it needs.
    fn skip(reason: &CStr) {
        // SAFETY: Always safe to call.
        let test = unsafe { bindings::kunit_get_current_test() };
        let reason = reason.to_bytes();
        // SAFETY: `test` is the running test, not NULL in a KUnit test, and its status is only
        // written by its own thread until the test function returns.
        unsafe {
            let comment = &mut (*test).status_comment;
            let len = reason.len().min(comment.len() - 1);
            for (dst, src) in comment.iter_mut().zip(&reason[..len]) {
                *dst = *src;
            }
            comment[len] = 0;
            (*test).status = bindings::kunit_status_KUNIT_SKIPPED;
        }
    }

    /// Creates a memfd of `len` bytes in the kernel, backed by 2 MiB huge pages if `huge`, with
    /// its pages allocated.
    fn memfd(huge: bool, len: usize) -> Result<ARef<File>> {
        let mut flags = uapi::MFD_ALLOW_SEALING;
        if huge {
            flags |= uapi::MFD_HUGETLB | uapi::MFD_HUGE_2MB;
        }
        // SAFETY: The name is a NUL-terminated string, and any `MFD_*` flags are accepted.
        let file =
            from_err_ptr(unsafe { bindings::memfd_alloc_file(c"rust_gup".as_char_ptr(), flags) })?;
        // SAFETY: `memfd_alloc_file()` returned a new file and its reference, which the `ARef`
        // takes over; `File` is a transparent wrapper of `struct file`.
        let file: ARef<File> = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
        let len = i64::try_from(len)?;
        if len > 0 {
            // SAFETY: `file` is valid; mode 0 allocates the range and extends the file to cover
            // it.
            to_result(unsafe { bindings::vfs_fallocate(file.as_ptr(), 0, 0, len) } as c_int)?;
        }
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
                (uapi::PROT_READ | uapi::PROT_WRITE) as c_ulong,
                uapi::MAP_SHARED as c_ulong,
                0,
            )
        };
        if addr == 0 {
            return Err(ENOMEM);
        }
        // `vm_mmap()` returns a negative errno in place of the address when it fails.
        let err = addr as isize;
        if err < 0 && err >= -(bindings::MAX_ERRNO as isize) {
            return Err(Error::from_errno(err as c_int));
        }
        Ok(addr)
    }

    /// Sums a node vmstat item: the global count plus the deltas that the CPUs have not folded
    /// into it yet (what writing to `/proc/sys/vm/stat_refresh` folds).
    fn node_stat_sum(item: usize) -> i64 {
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

    /// Reads a node vmstat item exactly. A CPU that folds its delta into the global count while
    /// the sum is taken makes it count the delta twice or not at all: take the sum until two in
    /// a row agree.
    fn node_stat(item: bindings::node_stat_item) -> i64 {
        let item = item as usize;
        let mut last = node_stat_sum(item);
        for _ in 0..8 {
            let sum = node_stat_sum(item);
            if sum == last {
                break;
            }
            last = sum;
        }
        last
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
        fn plus(self, pinned: usize, unpinned: usize) -> Self {
            Self {
                acquired: self.acquired + pinned as i64,
                released: self.released + unpinned as i64,
            }
        }

        /// Whether at least `nr` pages were pinned since `self` and as many were unpinned: pins
        /// dropped to migrate pages count on both sides.
        fn balanced_since(self, nr: usize) -> bool {
            let now = Self::now();
            let pinned = now.acquired - self.acquired;
            pinned >= nr as i64 && pinned == now.released - self.released
        }
    }

    /// Reads the reference count of a folio.
    ///
    /// Per-CPU LRU batches hold references to folios until they are drained: drain them first.
    fn ref_count(folio: &Folio) -> i32 {
        // SAFETY: Always safe to call from a context that may sleep.
        unsafe { bindings::lru_add_drain_all() };
        // SAFETY: The folio is valid.
        unsafe { bindings::folio_ref_count(folio.as_raw()) }
    }

    /// A plain reference to a folio, which keeps it from being freed or migrated while the test
    /// looks at it with no pin held.
    ///
    /// # Invariants
    ///
    /// `self.0` points to a folio on which `self` holds a reference.
    struct HeldFolio(NonNull<bindings::folio>);

    impl HeldFolio {
        /// Takes a reference to the folio of the page at `index` of `pages`.
        fn new<T: PinTerm>(pages: &PinnedPages<T>, index: usize) -> Result<Self> {
            let folio = NonNull::from(pages.folio(index).ok_or(EINVAL)?);
            // SAFETY: The folio is pinned by `pages`, so it is valid.
            unsafe { bindings::folio_get(folio.as_ptr().cast()) };
            // INVARIANT: We just took a reference to the folio.
            Ok(Self(folio.cast()))
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

    /// Returns whether every page of `pages` belongs to `folio`.
    fn all_in<T: PinTerm>(pages: &PinnedPages<T>, folio: &Folio) -> bool {
        (0..pages.len()).all(|i| pages.folio(i).is_some_and(|f| core::ptr::eq(f, folio)))
    }

    #[test]
    fn small_folio_pin_adds_bias() -> Result {
        let file = memfd(false, PAGE_SIZE)?;
        let addr = map(&file, PAGE_SIZE)?;
        // A first long-term pin moves the page out of ZONE_MOVABLE, so that the pins below find
        // it where it is.
        let first = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 1, PinFlags::WRITE)?;
        let held = HeldFolio::new(&first, 0)?;
        drop(first);
        let folio = held.folio();
        assert!(!folio.is_large());
        assert_eq!(folio.nr_pages(), 1);
        assert!(!folio.maybe_dma_pinned());
        let refs = ref_count(folio);
        let stats = PinStats::now();

        let pinned = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, 1, PinFlags::WRITE)?;
        assert!(all_in(&pinned, folio));
        assert_eq!(ref_count(folio), refs + PIN_BIAS);
        assert!(folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(1, 0));
        drop(pinned);
        assert_eq!(ref_count(folio), refs);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(1, 1));

        let pinned =
            PinnedPages::pin_user_pages_fd(&file, 0, 1, PinFlags::WRITE, Accounting::None)?;
        assert!(all_in(&pinned, folio));
        assert_eq!(ref_count(folio), refs + PIN_BIAS);
        assert!(folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(2, 1));
        drop(pinned);
        assert_eq!(ref_count(folio), refs);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(2, 2));
        Ok(())
    }

    #[test]
    fn large_folio_counts_pins_per_page() -> Result {
        const NR: usize = 8;
        let Ok(file) = memfd(true, SZ_2M) else {
            skip(c"needs a free 2 MiB huge page (hugepages=)");
            return Ok(());
        };
        let addr = map(&file, SZ_2M)?;
        let first = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 1, PinFlags::WRITE)?;
        let held = HeldFolio::new(&first, 0)?;
        drop(first);
        let folio = held.folio();
        assert!(folio.is_large());
        assert_eq!(folio.nr_pages(), SZ_2M / PAGE_SIZE);
        assert!(!folio.maybe_dma_pinned());
        let refs = ref_count(folio);
        let stats = PinStats::now();

        // Pages 3 to 10 of the folio: a large folio counts pins per page, not per call.
        let start = addr + 3 * PAGE_SIZE;
        let pinned = PinnedPages::<LongTerm>::pin_user_pages_fast(start, NR, PinFlags::WRITE)?;
        assert_eq!(pinned.len(), NR);
        assert!(all_in(&pinned, folio));
        assert!(folio.maybe_dma_pinned());
        assert_eq!(ref_count(folio), refs + NR as i32);
        assert_eq!(PinStats::now(), stats.plus(NR, 0));
        drop(pinned);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(ref_count(folio), refs);
        assert_eq!(PinStats::now(), stats.plus(NR, NR));

        let pinned =
            PinnedPages::pin_user_pages_fd(&file, 3, NR, PinFlags::empty(), Accounting::None)?;
        assert!(all_in(&pinned, folio));
        assert!(folio.maybe_dma_pinned());
        assert_eq!(ref_count(folio), refs + NR as i32);
        assert_eq!(PinStats::now(), stats.plus(2 * NR, NR));
        drop(pinned);
        assert!(!folio.maybe_dma_pinned());
        assert_eq!(PinStats::now(), stats.plus(2 * NR, 2 * NR));
        Ok(())
    }

    #[test]
    fn folio_runs_follow_folios() -> Result {
        const HALF: usize = 12;
        let per_folio = SZ_2M / PAGE_SIZE;
        let Ok(file) = memfd(true, 2 * SZ_2M) else {
            skip(c"needs two free 2 MiB huge pages (hugepages=)");
            return Ok(());
        };
        // The last HALF pages of the first folio and the first HALF of the second, twice in one
        // array: the second copy starts a run of its own where it goes back to the first folio.
        let twice = |start, nr| -> Result<PinnedPages<LongTerm>> {
            let mut pins = PinnedPages::pin_fd_ranges(2 * nr, PinFlags::empty(), Accounting::None)?;
            pins.pin(&file, start, nr)?;
            pins.pin(&file, start, nr)?;
            pins.finish()
        };
        let pinned = twice(per_folio - HALF, 2 * HALF)?;
        let cases: [(Range<usize>, &[usize]); 4] = [
            (0..2 * HALF, &[HALF, HALF]),
            (0..4 * HALF, &[HALF, HALF, HALF, HALF]),
            (HALF - 2..HALF + 2, &[2, 2]),
            (3..4, &[1]),
        ];
        for (range, lens) in cases {
            let mut index = range.start;
            let mut nr_runs = 0;
            for run in pinned.folio_runs(range).ok_or(EINVAL)? {
                assert_eq!(Some(&run.nr_pages()), lens.get(nr_runs));
                assert_eq!(
                    Some(run.first_page().pfn()),
                    pinned.page(index).map(|p| p.pfn())
                );
                let last = pinned.folio(index + run.nr_pages() - 1).ok_or(EINVAL)?;
                assert!(core::ptr::eq(run.folio(), last));
                assert_eq!(run.folio().nr_pages(), per_folio);
                index += run.nr_pages();
                nr_runs += 1;
            }
            assert_eq!(nr_runs, lens.len());
        }
        let mut runs = pinned.folio_runs(0..2 * HALF).ok_or(EINVAL)?;
        let (first, second) = (runs.next().ok_or(EINVAL)?, runs.next().ok_or(EINVAL)?);
        assert!(!core::ptr::eq(first.folio(), second.folio()));
        assert!(runs.next().is_none());
        assert!(pinned.folio_runs(4 * HALF - 1..4 * HALF + 1).is_none());

        // Pages of one folio, but the second range is not the next pages of the first: two runs.
        let pinned = twice(per_folio, HALF)?;
        let mut runs = pinned.folio_runs(0..2 * HALF).ok_or(EINVAL)?;
        let (first, second) = (runs.next().ok_or(EINVAL)?, runs.next().ok_or(EINVAL)?);
        assert_eq!((first.nr_pages(), second.nr_pages()), (HALF, HALF));
        assert!(core::ptr::eq(first.folio(), second.folio()));
        assert_eq!(first.first_page().pfn(), second.first_page().pfn());
        assert!(runs.next().is_none());
        Ok(())
    }

    #[test]
    fn pin_counters_follow_pages() -> Result {
        const NR: usize = 100;
        let file = memfd(false, NR * PAGE_SIZE)?;
        let addr = map(&file, NR * PAGE_SIZE)?;
        // Move the pages out of ZONE_MOVABLE first: a long-term pin that migrates pages also
        // counts the pins it dropped to migrate them.
        let first =
            PinnedPages::pin_user_pages_fd(&file, 0, NR, PinFlags::empty(), Accounting::None)?;
        drop(first);
        let stats = PinStats::now();

        let pinned = {
            let task = crate::current!();
            let mmap = task.mm().ok_or(EINVAL)?.mmap_read_lock();
            PinnedPages::<LongTerm>::pin_user_pages_remote(&mmap, addr, NR, PinFlags::WRITE)?
        };
        assert_eq!(pinned.len(), NR);
        assert!((0..NR).all(|i| pinned.folio(i).is_some_and(|f| f.maybe_dma_pinned())));
        assert_eq!(PinStats::now(), stats.plus(NR, 0));
        drop(pinned);
        assert_eq!(PinStats::now(), stats.plus(NR, NR));

        let mut pinned =
            PinnedPages::pin_user_pages_fd(&file, 0, NR, PinFlags::WRITE, Accounting::None)?;
        assert_eq!(pinned.page_iter().count(), NR);
        assert_eq!(PinStats::now(), stats.plus(2 * NR, NR));
        drop(pinned);
        assert_eq!(PinStats::now(), stats.plus(2 * NR, 2 * NR));
        Ok(())
    }

    #[test]
    fn failed_pin_leaves_no_pin() -> Result {
        let file = memfd(false, 2 * PAGE_SIZE)?;
        // Pages 2 and 3 of the mapping are past the end of the file.
        let addr = map(&file, 4 * PAGE_SIZE)?;
        let first = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, 2, PinFlags::WRITE)?;
        let held = [HeldFolio::new(&first, 0)?, HeldFolio::new(&first, 1)?];
        drop(first);
        let unpinned = || held.iter().all(|h| !h.folio().maybe_dma_pinned());
        let stats = PinStats::now();

        // Pages 0 and 1 are pinned, then released when page 2 fails.
        let ret = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, 4, PinFlags::WRITE);
        assert_eq!(ret.err(), Some(EFAULT));
        assert_eq!(PinStats::now(), stats.plus(2, 2));
        assert!(unpinned());
        let ret = {
            let task = crate::current!();
            let mmap = task.mm().ok_or(EINVAL)?.mmap_read_lock();
            PinnedPages::<ShortTerm>::pin_user_pages_remote(&mmap, addr, 3, PinFlags::WRITE)
        };
        assert_eq!(ret.err(), Some(EFAULT));
        assert_eq!(PinStats::now(), stats.plus(4, 4));
        assert!(unpinned());

        let stats = PinStats::now();
        let ret = PinnedPages::pin_user_pages_fd(&file, 1, 2, PinFlags::WRITE, Accounting::None);
        assert_eq!(ret.err(), Some(EINVAL));
        let ret = PinnedPages::pin_user_pages_fd(&file, 0, 0, PinFlags::WRITE, Accounting::None);
        assert_eq!(ret.err(), Some(EINVAL));
        let ret = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, 0, PinFlags::WRITE);
        assert_eq!(ret.err(), Some(EINVAL));
        // Nothing is mapped at address 0.
        let ret = PinnedPages::<ShortTerm>::pin_user_pages_fast(0, 1, PinFlags::empty());
        assert_eq!(ret.err(), Some(EFAULT));

        // SAFETY: `file` is a valid memfd.
        let ret = unsafe {
            bindings::memfd_fcntl(file.as_ptr(), uapi::F_ADD_SEALS, uapi::F_SEAL_FUTURE_WRITE)
        };
        to_result(ret as c_int)?;
        let ret = PinnedPages::pin_user_pages_fd(&file, 0, 2, PinFlags::WRITE, Accounting::None);
        assert_eq!(ret.err(), Some(EPERM));
        assert_eq!(PinStats::now(), stats);
        assert!(unpinned());

        // Read-only pins of a sealed memfd are fine.
        let pinned =
            PinnedPages::pin_user_pages_fd(&file, 0, 2, PinFlags::empty(), Accounting::None)?;
        assert_eq!(PinStats::now(), stats.plus(2, 0));
        drop(pinned);
        assert_eq!(PinStats::now(), stats.plus(2, 2));
        Ok(())
    }

    #[test]
    fn write_pins_end_dirty() -> Result {
        // Page 0 is a hole, which the first pin fills with a clean page-cache folio.
        let file = memfd(false, 0)?;
        let mut pos = (2 * PAGE_SIZE - 1) as i64;
        let byte = [0u8; 1];
        // SAFETY: `file` is valid, `byte` holds one byte, and `pos` is a valid offset.
        let written =
            unsafe { bindings::kernel_write(file.as_ptr(), byte.as_ptr().cast(), 1, &mut pos) };
        assert_eq!(written, 1);

        let pinned =
            PinnedPages::pin_user_pages_fd(&file, 0, 1, PinFlags::empty(), Accounting::None)?;
        let held = HeldFolio::new(&pinned, 0)?;
        if held.folio().is_large() {
            // The write of page 1 may have dirtied a huge folio that holds page 0 too.
            skip(c"needs small shmem folios (shmem_enabled other than always)");
            return Ok(());
        }
        assert!(!held.folio().is_dirty());
        drop(pinned);
        assert!(!held.folio().is_dirty());

        // A device may write to pages pinned for writing without dirtying them: the drop does.
        let pinned =
            PinnedPages::pin_user_pages_fd(&file, 0, 1, PinFlags::WRITE, Accounting::None)?;
        assert!(all_in(&pinned, held.folio()));
        assert!(!held.folio().is_dirty());
        drop(pinned);
        assert!(held.folio().is_dirty());
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
        if usize::try_from(written) != Ok(data.len()) {
            return Err(EIO);
        }
        Ok(file)
    }

    /// Returns whether every page of `pages` may stay pinned long-term where it is and holds the
    /// data of [`memfd_with_data`].
    fn pinnable_with_data(pages: &PinnedPages<LongTerm>) -> Result<bool> {
        for (i, page) in pages.iter().enumerate() {
            if !pages.folio(i).is_some_and(|f| f.is_longterm_pinnable()) {
                return Ok(false);
            }
            let mut byte = 0u8;
            // SAFETY: `byte` is valid for writing one byte, and nothing writes to the page.
            unsafe { page.read_raw(&mut byte, PAGE_SIZE - 1, 1)? };
            if byte != (i + 1) as u8 {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Returns how many pages of the user range are where long-term pins may not stay.
    fn count_movable(addr: usize, nr: usize) -> Result<usize> {
        let pinned = PinnedPages::<ShortTerm>::pin_user_pages_fast(addr, nr, PinFlags::empty())?;
        Ok((0..nr)
            .filter(|&i| pinned.folio(i).is_some_and(|f| !f.is_longterm_pinnable()))
            .count())
    }

    #[test]
    fn longterm_pin_leaves_zone_movable() -> Result {
        const NR: usize = 64;
        // Fresh shmem pages are movable allocations: with `movablecore=` they come from
        // ZONE_MOVABLE, where a short-term pin leaves them.
        let file = memfd_with_data(NR)?;
        let addr = map(&file, NR * PAGE_SIZE)?;
        if count_movable(addr, NR)? == 0 {
            skip(c"no page in ZONE_MOVABLE (movablecore=)");
            return Ok(());
        }
        let stats = PinStats::now();
        let pinned = PinnedPages::<LongTerm>::pin_user_pages_fast(addr, NR, PinFlags::empty())?;
        assert!(pinnable_with_data(&pinned)?);
        drop(pinned);
        assert!(stats.balanced_since(NR));

        let file = memfd_with_data(NR)?;
        let addr = map(&file, NR * PAGE_SIZE)?;
        assert!(count_movable(addr, NR)? > 0);
        let stats = PinStats::now();
        let pinned =
            PinnedPages::pin_user_pages_fd(&file, 0, NR, PinFlags::empty(), Accounting::None)?;
        assert!(pinnable_with_data(&pinned)?);
        drop(pinned);
        assert!(stats.balanced_since(NR));
        Ok(())
    }

    #[test]
    fn memlock_charge_follows_pins() -> Result {
        const NR: usize = 8;
        let file = memfd(false, 3 * NR * PAGE_SIZE)?;
        let pin = |start, accounting| {
            PinnedPages::pin_user_pages_fd(&file, start, NR, PinFlags::empty(), accounting)
        };
        // The test's kthread has CAP_IPC_LOCK and no mm, so the charge takes nothing from a quota
        // (the selftests check that), but it is recorded, and must follow the pins.
        let pinned = pin(0, Accounting::Memlock)?;
        let plain = pin(NR, Accounting::None)?;
        assert_eq!(pinned.charge.0.nr_pages, NR);
        assert_eq!(plain.charge.0.nr_pages, 0);
        drop((pinned, plain));

        // Ranges pinned into one object are charged together, before the first is pinned.
        let ranges = |nr| PinnedPages::pin_fd_ranges(nr, PinFlags::empty(), Accounting::Memlock);
        assert_eq!(ranges(0).err(), Some(EINVAL));
        let mut pins = ranges(2 * NR)?;
        assert_eq!(pins.pins.charge.0.nr_pages, 2 * NR);
        pins.pin(&file, 0, NR)?;
        // More pages than are left, and a range past the end of the file.
        assert_eq!(pins.pin(&file, NR, NR + 1), Err(EINVAL));
        assert_eq!(pins.pin(&file, 3 * NR, 1), Err(EINVAL));
        assert_eq!(pins.pins.len(), NR);
        // Unfinished: refused, and the pins go with the charge.
        let stats = PinStats::now();
        assert_eq!(pins.finish().err(), Some(EINVAL));
        assert_eq!(PinStats::now(), stats.plus(0, NR));

        let mut pins = ranges(3 * NR)?;
        for start in [2 * NR, 0, NR] {
            pins.pin(&file, start, NR)?;
        }
        let pinned = pins.finish()?;
        assert_eq!(pinned.len(), 3 * NR);
        assert_eq!(pinned.charge.0.nr_pages, 3 * NR);

        let stats = PinStats::now();
        drop(pinned);
        assert_eq!(PinStats::now(), stats.plus(0, 3 * NR));
        Ok(())
    }
}
