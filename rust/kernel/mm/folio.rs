// SPDX-License-Identifier: GPL-2.0

//! Folios.
//!
//! A folio is a physically contiguous, naturally aligned set of pages that the memory manager
//! handles as a unit: one page (a small folio) or a power of two of them (a large folio). This
//! module only offers the queries needed to reason about pinned pages; it does not own folios or
//! expose their reference counts.
//!
//! C headers: [`include/linux/mm.h`](srctree/include/linux/mm.h),
//! [`include/linux/mm_types.h`](srctree/include/linux/mm_types.h)

use crate::{
    bindings,
    types::Opaque, //
};

/// A wrapper for the kernel's `struct folio`.
///
/// Values of this type are only ever used by reference: a `&Folio` is lent by the owner of a pin
/// on the folio, for example with [`PinnedPages::folio`].
///
/// # Invariants
///
/// For the lifetime of a `&Folio`, the folio is valid and is neither freed nor split.
///
/// [`PinnedPages::folio`]: crate::mm::gup::PinnedPages::folio
#[repr(transparent)]
pub struct Folio {
    folio: Opaque<bindings::folio>,
}

// SAFETY: A `Folio` is only used by reference, and its queries have no thread affinity.
unsafe impl Send for Folio {}

// SAFETY: The queries on `Folio` only read the state of the folio, atomically, so they can run in
// parallel.
unsafe impl Sync for Folio {}

impl Folio {
    /// Creates a reference to a folio from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid folio that is neither freed nor split for the lifetime `'a`,
    /// for example because the caller holds a reference or a pin on one of its pages.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *const bindings::folio) -> &'a Self {
        // SAFETY: `Folio` is a transparent wrapper of `bindings::folio`, and the caller
        // guarantees that the folio stays valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns a raw pointer to the folio.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::folio {
        self.folio.get()
    }

    /// Returns whether the folio may be pinned for DMA (`folio_maybe_dma_pinned()`).
    ///
    /// A `false` answer is exact: the folio is not pinned. A `true` answer may be a false
    /// positive for a small folio with a very large number of plain references.
    #[inline]
    pub fn maybe_dma_pinned(&self) -> bool {
        // SAFETY: By the type invariants, the folio is valid.
        unsafe { bindings::folio_maybe_dma_pinned(self.as_raw()) }
    }

    /// Returns whether the folio is made of more than one page (`folio_test_large()`).
    #[inline]
    pub fn is_large(&self) -> bool {
        // SAFETY: By the type invariants, the folio is valid.
        unsafe { bindings::folio_test_large(self.as_raw()) }
    }

    /// Returns the number of pages in the folio (`folio_nr_pages()`).
    #[inline]
    pub fn nr_pages(&self) -> usize {
        // SAFETY: By the type invariants, the folio is valid.
        unsafe { bindings::folio_nr_pages(self.as_raw()) }
    }

    /// Returns whether the folio is dirty (`folio_test_dirty()`): its data must be written back
    /// before the memory manager may drop it.
    #[inline]
    pub fn is_dirty(&self) -> bool {
        // SAFETY: By the type invariants, the folio is valid.
        unsafe { bindings::folio_test_dirty(self.as_raw()) }
    }

    /// Returns whether the folio may be pinned long-term where it is
    /// (`folio_is_longterm_pinnable()`).
    ///
    /// Folios in `ZONE_MOVABLE` or in a CMA area are not: a long-term pin migrates them first.
    /// Neither are fsdax and coherent device memory, which long-term pins refuse.
    #[inline]
    pub fn is_longterm_pinnable(&self) -> bool {
        // SAFETY: By the type invariants, the folio is valid.
        unsafe { bindings::folio_is_longterm_pinnable(self.as_raw()) }
    }
}
