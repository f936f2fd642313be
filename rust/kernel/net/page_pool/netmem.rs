// SPDX-License-Identifier: GPL-2.0

//! Netmem: memory a page pool hands out, a page or a net_iov.
//!
//! C header: [`include/net/netmem.h`](srctree/include/net/netmem.h)

use crate::{
    bindings,
    page::BorrowedPage,
    sync::atomic::{Atomic, Relaxed},
    types::Opaque, //
};
use core::{marker::PhantomData, ptr::NonNull};

/// The bit of a `netmem_ref` that marks a net_iov (`NET_IOV`).
///
/// The netmem conversions are done here rather than by calls to their C inline functions: they
/// are a bit each, on the paths that allocate and release every netmem of a provider.
const NET_IOV: bindings::netmem_ref = bindings::NET_IOV as bindings::netmem_ref;

/// Returns the `netmem_ref` of `niov` (`net_iov_to_netmem()`), for the page pool code that
/// takes a net_iov from a provider.
#[inline]
pub fn net_iov_to_netmem(niov: *mut bindings::net_iov) -> bindings::netmem_ref {
    niov as bindings::netmem_ref | NET_IOV
}

/// A `struct net_iov`: a piece of memory that a memory provider owns and the kernel cannot read
/// or map, such as a part of a dma-buf.
///
/// # Invariants
///
/// The wrapped `net_iov` is valid for as long as a reference to it is.
#[repr(transparent)]
pub struct NetIov(Opaque<bindings::net_iov>);

impl NetIov {
    /// Creates a reference to a `net_iov` from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` points to a valid `net_iov` that stays valid for `'a`.
    #[inline]
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::net_iov) -> &'a Self {
        // SAFETY: `NetIov` is a transparent wrapper of `net_iov`, valid for `'a` by the safety
        // requirements.
        unsafe { &*ptr.cast() }
    }

    /// Returns the raw `struct net_iov` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::net_iov {
        self.0.get()
    }

    /// Returns the references page pool users hold on the net_iov (`pp_ref_count`).
    #[inline]
    pub fn pp_ref_count(&self) -> i64 {
        // SAFETY: The net_iov is valid by the type invariants; `pp_ref_count` is an
        // `atomic_long_t`, only accessed atomically, and 64 bits wide: the abstractions build on
        // 64-bit kernels only (`RUST_PAGE_POOL_ABSTRACTIONS` depends on `64BIT`).
        let count =
            unsafe { Atomic::<i64>::from_ptr(&raw mut (*self.as_raw()).desc.pp_ref_count.counter) };
        count.load(Relaxed)
    }
}

/// What a netmem is.
pub enum NetmemKind<'a> {
    /// A page, which the kernel can read.
    Page(BorrowedPage<'a>),
    /// A net_iov, which it cannot.
    NetIov(&'a NetIov),
}

/// A borrowed netmem (`netmem_ref`): a page or a net_iov held by a page pool.
///
/// A net_iov is never treated as a page: [`NetmemRef::kind`] tells them apart.
///
/// # Invariants
///
/// `self.0` refers to a page or net_iov with a page pool reference held for `'a`.
#[derive(Clone, Copy)]
pub struct NetmemRef<'a>(bindings::netmem_ref, PhantomData<&'a NetIov>);

impl<'a> NetmemRef<'a> {
    /// Creates a borrowed netmem from a raw `netmem_ref`.
    ///
    /// # Safety
    ///
    /// `netmem` refers to a page or a net_iov of a page pool, whose page pool reference is held
    /// for `'a`.
    #[inline]
    pub unsafe fn from_raw(netmem: bindings::netmem_ref) -> Self {
        // INVARIANT: By the safety requirements.
        Self(netmem, PhantomData)
    }

    /// Returns the raw `netmem_ref`.
    #[inline]
    pub fn as_raw(self) -> bindings::netmem_ref {
        self.0
    }

    /// Returns whether this is a net_iov, not a page (`netmem_is_net_iov()`).
    #[inline]
    pub fn is_net_iov(self) -> bool {
        self.0 & NET_IOV != 0
    }

    /// Returns the net_iov, if this is one (`netmem_to_net_iov()`).
    #[inline]
    pub fn net_iov(self) -> Option<&'a NetIov> {
        // SAFETY: `self.0` without its `NET_IOV` bit is a net_iov, valid for `'a` by the type
        // invariants.
        self.is_net_iov()
            .then(|| unsafe { NetIov::from_raw((self.0 & !NET_IOV) as *mut bindings::net_iov) })
    }

    /// Returns the page or the net_iov.
    pub fn kind(self) -> NetmemKind<'a> {
        if let Some(niov) = self.net_iov() {
            NetmemKind::NetIov(niov)
        } else {
            // SAFETY: `self.0` is a page, not a net_iov, so `netmem_to_page()` returns it.
            let page = unsafe { bindings::netmem_to_page(self.0) };
            // SAFETY: The page is valid, and its page pool reference held, for `'a` by the type
            // invariants.
            NetmemKind::Page(unsafe { BorrowedPage::from_raw(NonNull::new_unchecked(page)) })
        }
    }

    /// Returns the references page pool users hold on the netmem (`pp_ref_count`).
    #[inline]
    pub fn pp_ref_count(self) -> isize {
        // SAFETY: The netmem is valid by the type invariants, and belongs to a page pool, which
        // makes `pp_ref_count` its page pool reference count.
        unsafe { bindings::netmem_pp_ref_count(self.0) }
    }
}
