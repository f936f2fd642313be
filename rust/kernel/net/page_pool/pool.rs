// SPDX-License-Identifier: GPL-2.0

//! The page pool a driver creates for an rx queue.
//!
//! C header: [`include/net/page_pool/types.h`](srctree/include/net/page_pool/types.h)

use super::netmem::NetmemRef;
use crate::{
    alloc::Flags,
    bindings,
    device::{Bound, Device},
    dma::DataDirection,
    error::from_err_ptr,
    prelude::*,
    sync::aref::ARef, //
};
use core::ptr::NonNull;

/// The parameters of a new page pool (`struct page_pool_params`).
pub struct Params {
    order: u32,
    pool_size: u32,
    flags: u32,
    dma: Option<(ARef<Device>, DataDirection, u32)>,
}

impl Params {
    /// Parameters of a pool of single pages, which the pool does not map for DMA.
    pub fn new() -> Self {
        Self {
            order: 0,
            pool_size: 0,
            flags: 0,
            dma: None,
        }
    }

    /// Hands out blocks of `1 << order` pages.
    pub fn order(mut self, order: u32) -> Self {
        self.order = order;
        self
    }

    /// Sizes the ring of recycled netmems for `size` entries.
    pub fn pool_size(mut self, size: u32) -> Self {
        self.pool_size = size;
        self
    }

    /// Maps the pages for DMA by `dev` in direction `dir`, and syncs `max_len` bytes of them for
    /// the device when they are recycled (`PP_FLAG_DMA_MAP | PP_FLAG_DMA_SYNC_DEV`).
    ///
    /// A memory provider needs both flags; it may turn syncing off.
    pub fn dma(mut self, dev: &Device<Bound>, dir: DataDirection, max_len: u32) -> Self {
        self.flags |= bindings::PP_FLAG_DMA_MAP | bindings::PP_FLAG_DMA_SYNC_DEV;
        let dev: &Device = dev;
        self.dma = Some((dev.into(), dir, max_len));
        self
    }

    /// Returns the C parameters, naming `netdev` and `queue`.
    fn to_raw(&self, netdev: *mut bindings::net_device, queue: u32) -> bindings::page_pool_params {
        // SAFETY: All-zero is a valid `page_pool_params`: no flags, no devices, no callbacks.
        let mut raw: bindings::page_pool_params = unsafe { core::mem::zeroed() };
        // SAFETY: Both members of the union are the same fields, initialized (zeroed).
        let fast = unsafe { &mut raw.__bindgen_anon_1.__bindgen_anon_1 };
        fast.order = self.order;
        fast.pool_size = self.pool_size;
        fast.nid = bindings::NUMA_NO_NODE;
        if let Some((dev, dir, max_len)) = &self.dma {
            fast.dev = dev.as_raw();
            fast.dma_dir = (*dir).into();
            fast.max_len = *max_len;
        }
        // SAFETY: As for `fast`.
        let slow = unsafe { &mut raw.__bindgen_anon_2.__bindgen_anon_1 };
        slow.netdev = netdev;
        slow.queue_idx = queue;
        slow.flags = self.flags;
        raw
    }
}

impl Default for Params {
    fn default() -> Self {
        Self::new()
    }
}

/// A page pool (`struct page_pool`), destroyed when dropped.
///
/// Netmems may outlive the handle: the pool then lives on until every netmem came back, and only
/// then releases the memory its memory provider lent it and calls the provider's `destroy`.
///
/// # Context
///
/// Dropping it may sleep: only in process context.
///
/// # Invariants
///
/// `pool` is a page pool created by `page_pool_create()` that this handle destroys. `_dev` is the
/// device the pool maps pages for, if any, held as long as the handle. Destroying the pool unmaps
/// every page it mapped (on 64-bit, where page_pool tracks them), so it does not use the device
/// while it lingers.
pub struct PagePool {
    pool: NonNull<bindings::page_pool>,
    _dev: Option<ARef<Device>>,
}

// SAFETY: A page pool may be destroyed, and its netmems put, from any thread. Allocation, which
// needs to be serialized, takes `&mut self`.
unsafe impl Send for PagePool {}

// SAFETY: The methods that take `&self` only read the pool's counters.
unsafe impl Sync for PagePool {}

impl PagePool {
    /// Creates a page pool.
    pub fn new(params: Params) -> Result<Self> {
        // SAFETY: No netdev is named.
        unsafe { Self::create(params, core::ptr::null_mut(), 0) }
    }

    /// Creates the page pool of rx queue `queue` of `netdev`, which takes the memory provider
    /// installed on that queue, if there is one (`PP_FLAG_ALLOW_UNREADABLE_NETMEM`).
    ///
    /// # Safety
    ///
    /// `netdev` is a valid net device with an rx queue `queue`, its instance lock is held, and it
    /// outlives the pool (including the time the pool lives on after being dropped).
    pub unsafe fn new_for_rx_queue(
        mut params: Params,
        netdev: *mut bindings::net_device,
        queue: u32,
    ) -> Result<Self> {
        params.flags |= bindings::PP_FLAG_ALLOW_UNREADABLE_NETMEM;
        // SAFETY: By the safety requirements.
        unsafe { Self::create(params, netdev, queue) }
    }

    /// # Safety
    ///
    /// `netdev` is NULL, or valid, locked and outlives the pool.
    unsafe fn create(
        params: Params,
        netdev: *mut bindings::net_device,
        queue: u32,
    ) -> Result<Self> {
        let raw = params.to_raw(netdev, queue);
        // SAFETY: `raw` is a valid `page_pool_params`, whose device (if any) the handle keeps,
        // and whose netdev is NULL or valid and locked by the safety requirements.
        let pool = from_err_ptr(unsafe { bindings::page_pool_create(&raw) })?;
        // INVARIANT: `page_pool_create()` returned a new pool, which the handle destroys.
        Ok(Self {
            // SAFETY: `page_pool_create()` returns a valid pointer or an error.
            pool: unsafe { NonNull::new_unchecked(pool) },
            _dev: params.dma.map(|(dev, _, _)| dev),
        })
    }

    /// Returns the raw `struct page_pool` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::page_pool {
        self.pool.as_ptr()
    }

    /// Allocates a netmem: a page, or a net_iov of the pool's memory provider.
    ///
    /// `&mut self` serializes allocations, as the pool's lockless cache needs. In a driver that is
    /// the pool's NAPI context.
    pub fn alloc_netmem(&mut self, gfp: Flags) -> Option<PoolNetmem> {
        // SAFETY: The pool is valid by the type invariants, and `&mut self` makes this the only
        // allocation in progress.
        let netmem = unsafe { bindings::page_pool_alloc_netmems(self.as_raw(), gfp.as_raw()) };
        // No `PoolNetmem` for 0: dropping it would put a netmem that is not there.
        if netmem == 0 {
            return None;
        }
        // INVARIANT: A netmem that is not 0 comes with one page pool reference.
        Some(PoolNetmem(netmem))
    }

    /// Returns the netmems allocated and not yet returned to the memory they came from: those in
    /// use and those in the pool's caches.
    pub fn inflight(&self) -> i64 {
        let pool = self.as_raw();
        // SAFETY: The pool is valid by the type invariants. `pages_state_hold_cnt` is only written
        // by allocations, which need `&mut self`, and the release count is atomic.
        let (hold, release) = unsafe {
            (
                (*pool).pages_state_hold_cnt,
                bindings::atomic_read(&raw mut (*pool).pages_state_release_cnt),
            )
        };
        // The counters wrap; their difference does not (as in `page_pool_inflight()`).
        i64::from(hold.wrapping_sub(release as u32) as i32)
    }
}

impl Drop for PagePool {
    fn drop(&mut self) {
        // SAFETY: The handle owns the pool by the type invariants. The pool lives on for the
        // netmems still out, which do not refer to the handle.
        unsafe { bindings::page_pool_destroy(self.as_raw()) };
    }
}

/// A netmem allocated from a page pool, holding one page pool reference (`pp_ref_count`).
///
/// Dropping it returns it to its pool.
///
/// # Context
///
/// It is put back in process or softirq context, never in hard interrupts.
///
/// # Invariants
///
/// `self.0` is a netmem of a page pool, and this object owns one of its page pool references.
pub struct PoolNetmem(bindings::netmem_ref);

// SAFETY: A netmem may be put back from any thread (in process or softirq context).
unsafe impl Send for PoolNetmem {}

// SAFETY: `&PoolNetmem` only reads the netmem.
unsafe impl Sync for PoolNetmem {}

impl PoolNetmem {
    /// Returns the netmem.
    #[inline]
    pub fn netmem(&self) -> NetmemRef<'_> {
        // SAFETY: By the type invariants, the page pool reference is held while `self` lives.
        unsafe { NetmemRef::from_raw(self.0) }
    }

    /// Returns the netmem to its pool's lockless cache, which only the pool's allocating context
    /// may use. A netmem of another pool goes back the normal way.
    pub fn recycle_direct(self, pool: &mut PagePool) {
        let netmem = core::mem::ManuallyDrop::new(self).0;
        // SAFETY: The netmem is valid, and belongs to a page pool, by the type invariants.
        let pp = unsafe { bindings::netmem_get_pp(netmem) };
        if pp == pool.as_raw() {
            // SAFETY: `&mut pool` makes this the pool's allocating context, and the reference
            // owned is given back.
            unsafe { bindings::page_pool_recycle_direct_netmem(pp, netmem) };
        } else {
            // SAFETY: As in `drop()`.
            unsafe { bindings::page_pool_put_full_netmem(pp, netmem, false) };
        }
    }
}

impl Drop for PoolNetmem {
    fn drop(&mut self) {
        // SAFETY: The netmem is valid, and belongs to a page pool, by the type invariants.
        let pp = unsafe { bindings::netmem_get_pp(self.0) };
        // SAFETY: The pool lives until its netmems come back, and the reference owned is given
        // back. With `false`, and no NAPI instance or CPU set for pools made here, the netmem
        // does not go into the allocating context's cache.
        unsafe { bindings::page_pool_put_full_netmem(pp, self.0, false) };
    }
}
