// SPDX-License-Identifier: GPL-2.0

//! Memory providers: memory other than pages that page pools of an rx queue hand out.
//!
//! A memory provider implements [`MemoryProvider`]; its [`MemoryProviderOps`] is the `struct
//! memory_provider_ops` page pools call. The table is declared once, as a `static`, with
//! [`memory_provider_ops!`](crate::memory_provider_ops), so that it sits in the kernel's read-only
//! data, as `page_pool_init()` checks, and has one address, which the rx queue code compares.
//!
//! Providers must be built into the kernel: `page_pool_init()` refuses an ops table in a module's
//! read-only data, and the helpers to install providers are not exported.
//!
//! C header:
//! [`include/net/page_pool/memory_provider.h`](srctree/include/net/page_pool/memory_provider.h)

use super::netmem::{NetIov, NetmemRef};
use crate::{
    alloc::Flags,
    bindings,
    error::{from_result, to_result, VTABLE_DEFAULT_ERROR},
    prelude::*,
    types::Opaque, //
};
use core::{marker::PhantomData, ptr::NonNull};

/// What a page pool does with its DMA mappings once the provider's `init` returns.
pub enum DmaSync {
    /// Syncs recycled memory for the device, as for pages.
    Keep,
    /// Never syncs: the provider's memory is mapped elsewhere (a dma-buf's importer mapping).
    Disable,
}

/// Who takes a netmem back when a page pool releases it.
pub enum Release {
    /// The provider took it back (or keeps it out of the pool's way); the pool forgets it.
    Provider,
    /// The pool puts the page, as for pages it allocated itself. Only valid for pages: for a
    /// net_iov the pool warns and forgets it instead.
    PutPage,
}

/// A memory provider (`struct memory_provider_ops`).
///
/// Its page pools call it in these contexts:
/// - `init` when a pool of an rx queue it is installed on is created (process context), and
///   `destroy` once such a pool was destroyed and every netmem came back to it (process context,
///   possibly a workqueue long after the rx queue was closed).
/// - `alloc` when the pool's caches are empty, in the pool's allocating context, usually NAPI
///   (softirq): it must not sleep.
/// - `release` when the pool gives a netmem back, in any context but hard interrupts and on any
///   CPU, concurrently with `alloc`.
/// - `nl_fill` to describe the provider in netlink replies about the pool or the rx queue, and
///   `uninstall` when the rx queue goes away with the provider installed.
#[vtable]
pub trait MemoryProvider: Sized + 'static {
    /// The provider's state for an rx queue it is installed on (`mp_priv`), shared by the queue's
    /// page pools.
    type Priv: Sync;

    /// The provider's ops table: the `static` declared with
    /// [`memory_provider_ops!`](crate::memory_provider_ops).
    const OPS: &'static MemoryProviderOps<Self>;

    /// Prepares for a new page pool of an rx queue the provider is installed on.
    ///
    /// On success `destroy` is called for the pool, once it is gone.
    fn init(pool: &ProviderPool<Self>) -> Result<DmaSync>;

    /// Releases what `init` set up for a page pool, after the pool released every netmem.
    fn destroy(pool: &ProviderPool<Self>);

    /// Lends a net_iov to the page pool, or returns `None` when the provider has none left.
    fn alloc(pool: &ProviderPool<Self>, gfp: Flags) -> Option<ProviderNetIov>;

    /// Takes back a netmem the page pool releases.
    fn release(pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>) -> Release;

    /// Describes the provider in a netlink reply about the page pool, or about `rxq` if given.
    fn nl_fill(_priv: &Self::Priv, _reply: &NlReply, _rxq: Option<&RxQueue>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when `rxq` goes away while the provider is installed: its device is unregistered,
    /// or the virtual queue `rxq` leased the provider's queue and the lease ends.
    fn uninstall(_priv: &Self::Priv, _rxq: &RxQueue) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The ops table of a [`MemoryProvider`] (`struct memory_provider_ops`).
///
/// Declare it with [`memory_provider_ops!`](crate::memory_provider_ops) and point
/// [`MemoryProvider::OPS`] at it; the table has no interior mutability, so it is placed in
/// read-only data.
#[repr(transparent)]
pub struct MemoryProviderOps<T: MemoryProvider>(
    bindings::memory_provider_ops,
    PhantomData<fn() -> T>,
);

/// Declares the ops table of a [`MemoryProvider`], a `static`.
///
/// ```ignore
/// kernel::memory_provider_ops! {
///     static MY_OPS: MyProvider;
/// }
/// ```
#[macro_export]
macro_rules! memory_provider_ops {
    ($(#[$attr:meta])* $vis:vis static $name:ident: $provider:ty;) => {
        $(#[$attr])*
        $vis static $name: $crate::net::page_pool::provider::MemoryProviderOps<$provider> =
            // SAFETY: This is the provider's one ops table, a static.
            unsafe { $crate::net::page_pool::provider::MemoryProviderOps::new() };
    };
}

impl<T: MemoryProvider> MemoryProviderOps<T> {
    /// Builds the ops table of `T`.
    ///
    /// # Safety
    ///
    /// The table initializes a `static`, the only one of `T`, which [`MemoryProvider::OPS`]
    /// points to: the rx queue code compares tables by address. Use
    /// [`memory_provider_ops!`](crate::memory_provider_ops).
    pub const unsafe fn new() -> Self {
        Self(
            bindings::memory_provider_ops {
                alloc_netmems: Some(Self::alloc_netmems),
                release_netmem: Some(Self::release_netmem),
                init: Some(Self::init),
                destroy: Some(Self::destroy),
                nl_fill: if T::HAS_NL_FILL {
                    Some(Self::nl_fill)
                } else {
                    None
                },
                uninstall: if T::HAS_UNINSTALL {
                    Some(Self::uninstall)
                } else {
                    None
                },
            },
            PhantomData,
        )
    }

    /// Returns the raw `struct memory_provider_ops` pointer.
    #[inline]
    pub fn as_raw(&'static self) -> *const bindings::memory_provider_ops {
        &self.0
    }

    /// # Safety
    ///
    /// `pool` is a valid page pool whose provider is `T`.
    unsafe extern "C" fn init(pool: *mut bindings::page_pool) -> c_int {
        // SAFETY: By the safety requirements; the pool is not visible to anyone else yet.
        let pp = unsafe { ProviderPool::<T>::from_raw(pool) };
        from_result(|| {
            if let DmaSync::Disable = T::init(pp)? {
                // SAFETY: The pool is valid and, during `init`, not listed yet: nobody else
                // reads or writes its bitfields.
                unsafe {
                    (*pool).set_dma_sync(false);
                    (*pool).set_dma_sync_for_cpu(false);
                }
            }
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// `pool` is a valid page pool whose provider is `T`, and whose `init` succeeded.
    unsafe extern "C" fn destroy(pool: *mut bindings::page_pool) {
        // SAFETY: By the safety requirements.
        T::destroy(unsafe { ProviderPool::from_raw(pool) })
    }

    /// # Safety
    ///
    /// `pool` is a valid page pool whose provider is `T`, in its allocating context.
    unsafe extern "C" fn alloc_netmems(
        pool: *mut bindings::page_pool,
        gfp: bindings::gfp_t,
    ) -> bindings::netmem_ref {
        // SAFETY: By the safety requirements.
        let pp = unsafe { ProviderPool::<T>::from_raw(pool) };
        match T::alloc(pp, Flags::from_raw(gfp)) {
            Some(niov) => {
                let niov = niov.into_raw();
                // SAFETY: `niov` is a net_iov the provider lends and nobody else uses, by the
                // invariants of `ProviderNetIov`, and this is the pool's allocating context,
                // which the hold count needs.
                unsafe { bindings::net_mp_niov_set_page_pool(pool, niov) };
                super::netmem::net_iov_to_netmem(niov)
            }
            None => 0,
        }
    }

    /// # Safety
    ///
    /// `pool` is a valid page pool whose provider is `T`, and `netmem` a netmem it releases.
    unsafe extern "C" fn release_netmem(
        pool: *mut bindings::page_pool,
        netmem: bindings::netmem_ref,
    ) -> bool {
        // SAFETY: By the safety requirements.
        let pp = unsafe { ProviderPool::<T>::from_raw(pool) };
        // SAFETY: The pool releases `netmem`, which stays valid during the call.
        let netmem = unsafe { NetmemRef::from_raw(netmem) };
        match T::release(pp, ReleasedNetmem(netmem)) {
            Release::Provider => false,
            // A net_iov is not a page: putting it would corrupt memory.
            Release::PutPage => !crate::warn_on!(netmem.is_net_iov()),
        }
    }

    /// # Safety
    ///
    /// `mp_priv` is the private data `T` is installed with, `rsp` a netlink message being built,
    /// and `rxq` NULL or a valid rx queue.
    unsafe extern "C" fn nl_fill(
        mp_priv: *mut c_void,
        rsp: *mut bindings::sk_buff,
        rxq: *mut bindings::netdev_rx_queue,
    ) -> c_int {
        if mp_priv.is_null() {
            return EINVAL.to_errno();
        }
        // SAFETY: By the safety requirements, `mp_priv` points to a `T::Priv`.
        let priv_ = unsafe { &*mp_priv.cast::<T::Priv>() };
        // SAFETY: By the safety requirements, `rsp` is valid for the call.
        let reply = unsafe { NlReply::from_raw(rsp) };
        // SAFETY: By the safety requirements, `rxq` is NULL or valid for the call.
        let rxq = (!rxq.is_null()).then(|| unsafe { RxQueue::from_raw(rxq) });
        from_result(|| T::nl_fill(priv_, reply, rxq).map(|()| 0))
    }

    /// # Safety
    ///
    /// `mp_priv` is the private data `T` is installed with on `rxq`, a valid rx queue.
    unsafe extern "C" fn uninstall(mp_priv: *mut c_void, rxq: *mut bindings::netdev_rx_queue) {
        if mp_priv.is_null() {
            return;
        }
        // SAFETY: By the safety requirements.
        T::uninstall(unsafe { &*mp_priv.cast::<T::Priv>() }, unsafe {
            RxQueue::from_raw(rxq)
        })
    }
}

/// A page pool of an rx queue a [`MemoryProvider`] `T` is installed on, as the provider sees it.
///
/// # Invariants
///
/// The wrapped pool is valid and its provider is `T`: its `mp_priv` is NULL or points to a
/// `T::Priv` that outlives the pool.
#[repr(transparent)]
pub struct ProviderPool<T: MemoryProvider>(Opaque<bindings::page_pool>, PhantomData<T>);

impl<T: MemoryProvider> ProviderPool<T> {
    /// # Safety
    ///
    /// `pool` is a valid page pool whose provider is `T`, valid for `'a`.
    #[inline]
    unsafe fn from_raw<'a>(pool: *mut bindings::page_pool) -> &'a Self {
        // SAFETY: `ProviderPool` is a transparent wrapper of `page_pool`; by the safety
        // requirements it is valid for `'a` and its provider is `T`.
        unsafe { &*pool.cast() }
    }

    /// Returns the raw `struct page_pool` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::page_pool {
        self.0.get()
    }

    /// Returns the provider's private data for the pool's rx queue, if it has any.
    #[inline]
    pub fn priv_data(&self) -> Option<&T::Priv> {
        // SAFETY: The pool is valid and `mp_priv` is never changed after creation.
        let mp_priv = unsafe { (*self.as_raw()).mp_priv };
        // SAFETY: By the type invariants, a non-NULL `mp_priv` points to a `T::Priv` that
        // outlives the pool.
        (!mp_priv.is_null()).then(|| unsafe { &*mp_priv.cast::<T::Priv>() })
    }

    /// Returns the order of the blocks the pool hands out (`1 << order` pages each).
    pub fn order(&self) -> u32 {
        // SAFETY: The pool is valid and its parameters never change after creation.
        unsafe { (*self.as_raw()).p.order }
    }
}

/// A net_iov of a provider that no page pool or user holds: the provider's to lend or keep.
///
/// # Invariants
///
/// `self.0` is a valid net_iov of the provider, with clear `pp` and `pp_magic`, that no page pool
/// or user holds. The provider keeps its memory valid while this object exists, and while any
/// object [`ReleasedNetmem::into_net_iov`] makes for it after a pool it was lent to releases it.
pub struct ProviderNetIov(NonNull<bindings::net_iov>);

// SAFETY: The net_iov is the provider's alone, which may keep it on any CPU.
unsafe impl Send for ProviderNetIov {}

impl ProviderNetIov {
    /// Creates the object for a free net_iov of the provider.
    ///
    /// # Safety
    ///
    /// `niov` is a valid net_iov of the provider that no page pool or user holds, with clear `pp`
    /// and `pp_magic`. The provider keeps its memory valid while the new object exists and, once
    /// lent, while the objects [`ReleasedNetmem::into_net_iov`] makes for it exist: it frees the
    /// memory only after it took all of them back.
    #[inline]
    pub unsafe fn from_raw(niov: NonNull<bindings::net_iov>) -> Self {
        // INVARIANT: By the safety requirements.
        Self(niov)
    }

    /// Returns the net_iov.
    #[inline]
    pub fn net_iov(&self) -> &NetIov {
        // SAFETY: The net_iov is valid while `self` lives, by the type invariants.
        unsafe { NetIov::from_raw(self.0.as_ptr()) }
    }

    /// Gives up the net_iov, which the caller lends to a pool or keeps.
    #[inline]
    pub fn into_raw(self) -> *mut bindings::net_iov {
        self.0.as_ptr()
    }
}

/// A netmem a page pool gives back to its provider.
pub struct ReleasedNetmem<'a>(NetmemRef<'a>);

/// Why [`ReleasedNetmem::into_net_iov`] did not take a netmem back.
#[derive(Debug, PartialEq, Eq)]
pub enum NotTaken {
    /// It is a page.
    Page,
    /// It is a net_iov with page pool references other than the pool's.
    Held,
}

impl<'a> ReleasedNetmem<'a> {
    /// Returns the netmem.
    #[inline]
    pub fn netmem(&self) -> NetmemRef<'a> {
        self.0
    }

    /// Takes back a net_iov, clearing its `pp` and `pp_magic`, if it is a net_iov of which the
    /// pool holds the only reference. Otherwise the netmem stays as it is.
    #[inline]
    pub fn into_net_iov(self) -> Result<ProviderNetIov, NotTaken> {
        let niov = self.0.net_iov().ok_or(NotTaken::Page)?;
        if niov.pp_ref_count() != 1 {
            return Err(NotTaken::Held);
        }
        let niov = niov.as_raw();
        // SAFETY: The pool releases the net_iov and holds its only reference: nobody else uses
        // it, so its page pool fields may be cleared.
        unsafe { bindings::net_mp_niov_clear_page_pool(niov) };
        // SAFETY: `niov` is a valid net_iov, with no holder left and clear `pp` and `pp_magic`.
        // A provider's pool only holds net_iovs its provider lent through `ProviderNetIov`,
        // whose safety requirements make the provider keep this one valid while the new object
        // exists.
        Ok(unsafe { ProviderNetIov::from_raw(NonNull::new_unchecked(niov)) })
    }
}

/// An rx queue (`struct netdev_rx_queue`).
#[repr(transparent)]
pub struct RxQueue(Opaque<bindings::netdev_rx_queue>);

impl RxQueue {
    /// # Safety
    ///
    /// `rxq` is a valid rx queue for `'a`.
    #[inline]
    unsafe fn from_raw<'a>(rxq: *mut bindings::netdev_rx_queue) -> &'a Self {
        // SAFETY: `RxQueue` is a transparent wrapper of `netdev_rx_queue`, valid for `'a` by the
        // safety requirements.
        unsafe { &*rxq.cast() }
    }

    /// Returns the raw `struct netdev_rx_queue` pointer.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::netdev_rx_queue {
        self.0.get()
    }
}

/// A netlink message being filled with a provider's attributes.
#[repr(transparent)]
pub struct NlReply(Opaque<bindings::sk_buff>);

impl NlReply {
    /// # Safety
    ///
    /// `skb` is a netlink message being built, valid and not used by others for `'a`.
    #[inline]
    unsafe fn from_raw<'a>(skb: *mut bindings::sk_buff) -> &'a Self {
        // SAFETY: `NlReply` is a transparent wrapper of `sk_buff`, valid for `'a` by the safety
        // requirements.
        unsafe { &*skb.cast() }
    }

    /// Adds a `u32` attribute; fails with `EMSGSIZE` when the message is full.
    pub fn put_u32(&self, attr: u32, value: u32) -> Result {
        let attr = c_int::try_from(attr)?;
        // SAFETY: The message is valid and ours during the call, by the type invariants.
        to_result(unsafe { bindings::nla_put_u32(self.0.get(), attr, value) })
    }
}

/// Installs provider `T`, with `priv_data`, on rx queue `queue` of `netdev`, and restarts the
/// queue so that its page pool comes from the provider (`netif_mp_open_rxq()`).
///
/// # Safety
///
/// `netdev` is a valid net device with queue management ops, and its instance lock is held.
/// `priv_data` stays valid until [`close_rx_queue`] or `T`'s `uninstall` for the queue, whichever
/// comes first, and until the `destroy` of every page pool `T` was initialized for with it (`T`
/// keeps it alive from `init` to `destroy`, or it is static). Netlink replies about the queue call
/// `T`'s `nl_fill` with it meanwhile.
#[inline]
pub unsafe fn open_rx_queue<T: MemoryProvider>(
    netdev: *mut bindings::net_device,
    queue: u32,
    priv_data: &T::Priv,
) -> Result {
    let params = bindings::pp_memory_provider_params {
        mp_priv: core::ptr::from_ref(priv_data).cast_mut().cast(),
        mp_ops: T::OPS.as_raw(),
        rx_page_size: 0,
    };
    // SAFETY: By the safety requirements; the params are copied.
    to_result(unsafe { bindings::netif_mp_open_rxq(netdev, queue, &params, core::ptr::null_mut()) })
}

/// Removes provider `T`, installed with `priv_data`, from rx queue `queue` of `netdev`, and
/// restarts the queue with pages (`netif_mp_close_rxq()`).
///
/// # Safety
///
/// `netdev` is a valid net device, its instance lock is held, and [`open_rx_queue`] installed `T`
/// with `priv_data` on the queue.
#[inline]
pub unsafe fn close_rx_queue<T: MemoryProvider>(
    netdev: *mut bindings::net_device,
    queue: u32,
    priv_data: &T::Priv,
) {
    let params = bindings::pp_memory_provider_params {
        mp_priv: core::ptr::from_ref(priv_data).cast_mut().cast(),
        mp_ops: T::OPS.as_raw(),
        rx_page_size: 0,
    };
    // SAFETY: By the safety requirements.
    unsafe { bindings::netif_mp_close_rxq(netdev, queue, &params) }
}

#[cfg(CONFIG_RUST_PAGE_POOL_KUNIT_TEST)]
#[macros::kunit_tests(rust_kernel_page_pool_mp)]
mod tests {
    //! A counting provider on the rx queue of a net device that is never registered, so never
    //! running: installing the provider creates the queue's pool and destroys it at once, and the
    //! tests create pools of the queue themselves. They run at boot, one at a time.

    use super::*;
    use crate::{
        device::{Bound, Device, Normal},
        dma::DataDirection,
        faux,
        net::page_pool::netmem::NetmemKind,
        net::page_pool::{PagePool, Params, PoolNetmem},
        page::PAGE_SIZE,
        sync::atomic::{ordering, Atomic, Relaxed},
    };

    // The net_iovs are zeroed: type NET_IOV_DMABUF with no owner. Only page pool code, which does
    // not look at either, sees them.
    const NR_NIOVS: usize = 32;
    const ALL_FREE: u64 = (1 << NR_NIOVS) - 1;

    /// The test provider's memory and the calls it got.
    struct Counters {
        niovs: [Opaque<bindings::net_iov>; NR_NIOVS],
        /// Bit `i` is set while `niovs[i]` is with the provider.
        free: Atomic<u64>,
        init: Atomic<u32>,
        destroy: Atomic<u32>,
        alloc: Atomic<u32>,
        release: Atomic<u32>,
    }

    // SAFETY: A net_iov is used by one holder at a time, which `free` hands out atomically; the
    // counters are atomic.
    unsafe impl Sync for Counters {}

    impl Counters {
        fn calls(&self) -> [u32; 4] {
            [&self.init, &self.destroy, &self.alloc, &self.release].map(|c| c.load(Relaxed))
        }

        fn index_of(&self, niov: &NetIov) -> Option<usize> {
            self.niovs.iter().position(|n| n.get() == niov.as_raw())
        }
    }

    static COUNTERS: Counters = Counters {
        niovs: [const { Opaque::zeroed() }; NR_NIOVS],
        free: Atomic::new(ALL_FREE),
        init: Atomic::new(0),
        destroy: Atomic::new(0),
        alloc: Atomic::new(0),
        release: Atomic::new(0),
    };

    struct Counting;

    crate::memory_provider_ops! {
        static COUNTING_OPS: Counting;
    }

    #[vtable]
    impl MemoryProvider for Counting {
        type Priv = Counters;
        const OPS: &'static MemoryProviderOps<Self> = &COUNTING_OPS;

        fn init(pool: &ProviderPool<Self>) -> Result<DmaSync> {
            let counters = pool.priv_data().ok_or(EINVAL)?;
            counters.init.add(1, Relaxed);
            Ok(DmaSync::Disable)
        }

        fn destroy(pool: &ProviderPool<Self>) {
            if let Some(counters) = pool.priv_data() {
                // Release: the test reads what the releases wrote once it sees this.
                counters.destroy.fetch_add(1, ordering::Release);
            }
        }

        fn alloc(pool: &ProviderPool<Self>, _gfp: Flags) -> Option<ProviderNetIov> {
            let counters = pool.priv_data()?;
            let mut free = counters.free.load(Relaxed);
            loop {
                if free == 0 {
                    return None;
                }
                let i = free.trailing_zeros() as usize;
                match counters.free.cmpxchg(free, free & !(1 << i), Relaxed) {
                    Ok(_) => {
                        counters.alloc.add(1, Relaxed);
                        let niov = NonNull::new(counters.niovs[i].get())?;
                        // SAFETY: Clearing bit `i` handed `niovs[i]`, static and zeroed by the
                        // provider's release, to this caller alone.
                        return Some(unsafe { ProviderNetIov::from_raw(niov) });
                    }
                    Err(now) => free = now,
                }
            }
        }

        fn release(pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>) -> Release {
            let Some(counters) = pool.priv_data() else {
                return Release::Provider;
            };
            counters.release.add(1, Relaxed);
            if let Ok(niov) = netmem.into_net_iov() {
                if let Some(i) = counters.index_of(niov.net_iov()) {
                    // Bit `i` is clear while the net_iov is out: adding sets it.
                    counters.free.fetch_add(1 << i, Relaxed);
                }
            }
            Release::Provider
        }
    }

    /// Queue memory: the page pool of the queue (NULL, `None`, in zeroed memory).
    type QueueMem = Option<KBox<PagePool>>;

    /// # Safety
    ///
    /// Called by the rx queue code with `dev` locked and `mem` zeroed room for a `QueueMem`.
    unsafe extern "C" fn mem_alloc(
        dev: *mut bindings::net_device,
        _qcfg: *mut bindings::netdev_queue_config,
        mem: *mut c_void,
        idx: c_int,
    ) -> c_int {
        // SAFETY: The test set the device's parent to a faux device, bound while the netdev
        // exists.
        let parent = unsafe { Device::<Normal>::from_raw((*dev).dev.parent).as_bound() };
        let params = Params::new().dma(parent, DataDirection::FromDevice, PAGE_SIZE as u32);
        // SAFETY: `dev` is valid and locked, has queue `idx`, and outlives its pools (the tests
        // wait for every pool's `destroy`).
        let pool = unsafe { PagePool::new_for_rx_queue(params, dev, idx as u32) }
            .and_then(|pool| Ok(KBox::new(pool, GFP_KERNEL)?));
        match pool {
            Ok(pool) => {
                // SAFETY: `mem` has room for a `QueueMem` by the safety requirements.
                unsafe { mem.cast::<QueueMem>().write(Some(pool)) };
                0
            }
            Err(e) => e.to_errno(),
        }
    }

    /// # Safety
    ///
    /// `mem` holds a `QueueMem` written by `mem_alloc`, or is zeroed (`None`).
    unsafe extern "C" fn mem_free(_dev: *mut bindings::net_device, mem: *mut c_void) {
        // SAFETY: By the safety requirements; the rx queue code frees `mem` after this.
        drop(unsafe { mem.cast::<QueueMem>().read() });
    }

    extern "C" fn queue_start(
        _dev: *mut bindings::net_device,
        _qcfg: *mut bindings::netdev_queue_config,
        _mem: *mut c_void,
        _idx: c_int,
    ) -> c_int {
        0
    }

    extern "C" fn queue_stop(
        _dev: *mut bindings::net_device,
        _mem: *mut c_void,
        _idx: c_int,
    ) -> c_int {
        0
    }

    static QUEUE_OPS: bindings::netdev_queue_mgmt_ops = bindings::netdev_queue_mgmt_ops {
        ndo_queue_mem_size: core::mem::size_of::<QueueMem>(),
        ndo_queue_mem_alloc: Some(mem_alloc),
        ndo_queue_mem_free: Some(mem_free),
        ndo_queue_start: Some(queue_start),
        ndo_queue_stop: Some(queue_stop),
        // SAFETY: The other ops are optional, NULL when zeroed, and no parameters are supported.
        ..unsafe { core::mem::zeroed() }
    };

    /// The test device's `net_device_ops`: none; registering would fill in defaults, but the
    /// device is never registered.
    struct NetdevOps(bindings::net_device_ops);

    // SAFETY: The table is all NULL pointers and never written.
    unsafe impl Sync for NetdevOps {}

    static NETDEV_OPS: NetdevOps = NetdevOps(
        // SAFETY: All-zero is a table with no ops, which are all optional.
        unsafe { core::mem::zeroed() },
    );

    /// A net device with one rx queue, never registered, with tcp-data-split on and locked; its
    /// parent is `parent`.
    struct TestNetdev(NonNull<bindings::net_device>);

    impl TestNetdev {
        fn new(parent: &Device) -> Result<Self> {
            // SAFETY: The name is a NUL-terminated template and `ether_setup` a setup function.
            let dev = unsafe {
                bindings::alloc_netdev_mqs(
                    0,
                    c"ppmp%d".as_char_ptr(),
                    bindings::NET_NAME_UNKNOWN as u8,
                    Some(bindings::ether_setup),
                    1,
                    1,
                )
            };
            let dev = NonNull::new(dev).ok_or(ENOMEM)?;
            let raw = dev.as_ptr();
            // SAFETY: `raw` is a new net device that nobody else knows of; `parent` outlives it.
            unsafe {
                (*raw).netdev_ops = &NETDEV_OPS.0;
                (*raw).queue_mgmt_ops = &QUEUE_OPS;
                (*(*raw).cfg).hds_config =
                    bindings::ethtool_tcp_data_split_ETHTOOL_TCP_DATA_SPLIT_ENABLED as u8;
                (*raw).dev.parent = parent.as_raw();
                bindings::netdev_lock(raw);
            }
            Ok(Self(dev))
        }

        fn as_raw(&self) -> *mut bindings::net_device {
            self.0.as_ptr()
        }

        fn provider_installed(&self) -> bool {
            // SAFETY: The device is valid and locked, and has rx queue 0.
            unsafe { !(*(*self.as_raw())._rx).mp_params.mp_ops.is_null() }
        }
    }

    impl Drop for TestNetdev {
        fn drop(&mut self) {
            // SAFETY: The device is valid and locked by us; it was never registered, and the
            // tests destroyed its pools.
            unsafe {
                bindings::netdev_unlock(self.as_raw());
                bindings::free_netdev(self.as_raw());
            }
        }
    }

    /// Waits up to 5 s for `destroy` to have been called `n` times: a pool with netmems out
    /// releases them from a delayed work, once a second.
    fn wait_for_destroy(n: u32) -> u32 {
        for _ in 0..50 {
            if COUNTERS.destroy.load(ordering::Acquire) >= n {
                break;
            }
            // SAFETY: Always safe to call in process context.
            unsafe { bindings::msleep(100) };
        }
        COUNTERS.destroy.load(ordering::Acquire)
    }

    #[test]
    fn provider_pool_lifecycle() -> Result {
        let parent = faux::Registration::new(c"rust_pp_mp_kunit", None)?;
        let bound: &Device<Bound> = parent.as_ref().as_ref();
        let dev = TestNetdev::new(bound)?;
        let calls0 = COUNTERS.calls();

        // Installing restarts the queue: its new pool gets `init`, and, as the device is down,
        // is destroyed at once.
        // SAFETY: `dev` has queue management ops and is locked; `COUNTERS` is static.
        unsafe { open_rx_queue::<Counting>(dev.as_raw(), 0, &COUNTERS)? };
        assert!(dev.provider_installed());
        let [init, destroy, alloc, release] = COUNTERS.calls();
        assert_eq!(
            [init, destroy, alloc, release],
            [calls0[0] + 1, calls0[1] + 1, calls0[2], calls0[3]]
        );

        // A second install on the same queue is refused.
        // SAFETY: As above.
        let again = unsafe { open_rx_queue::<Counting>(dev.as_raw(), 0, &COUNTERS) };
        assert_eq!(again, Err(EEXIST));

        // A pool of the queue takes the provider: every netmem is one of its net_iovs.
        let params = Params::new().dma(bound, DataDirection::FromDevice, PAGE_SIZE as u32);
        // SAFETY: `dev` is locked, has queue 0 and outlives the pool (we wait for `destroy`).
        let mut pool = unsafe { PagePool::new_for_rx_queue(params, dev.as_raw(), 0)? };
        assert_eq!(COUNTERS.init.load(Relaxed), init + 1);
        let mut held = KVec::<PoolNetmem>::new();
        for _ in 0..8 {
            let netmem = pool.alloc_netmem(GFP_KERNEL).ok_or(ENOMEM)?;
            let nm = netmem.netmem();
            assert!(nm.is_net_iov());
            assert_eq!(nm.pp_ref_count(), 1);
            let NetmemKind::NetIov(niov) = nm.kind() else {
                return Err(EINVAL);
            };
            assert!(COUNTERS.index_of(niov).is_some());
            held.push(netmem, GFP_KERNEL)?;
        }
        assert_eq!(COUNTERS.alloc.load(Relaxed), alloc + 8);
        assert_eq!(
            COUNTERS.free.load(Relaxed).count_ones() as usize,
            NR_NIOVS - 8
        );
        assert_eq!(pool.inflight(), 8);

        // Netmems put back are recycled by the pool, not released to the provider, and handed
        // out again without asking it.
        for _ in 0..4 {
            drop(held.pop());
        }
        for _ in 0..4 {
            held.push(pool.alloc_netmem(GFP_KERNEL).ok_or(ENOMEM)?, GFP_KERNEL)?;
        }
        assert_eq!(COUNTERS.alloc.load(Relaxed), alloc + 8);
        assert_eq!(COUNTERS.release.load(Relaxed), release);

        // Destroying the pool with netmems out does not call `destroy`, ...
        drop(pool);
        assert_eq!(COUNTERS.destroy.load(Relaxed), destroy);
        assert_eq!(COUNTERS.release.load(Relaxed), release);

        // ... returning them does, once, after every one was released to the provider, which
        // got them all back with clear page pool fields.
        held.clear();
        assert_eq!(wait_for_destroy(destroy + 1), destroy + 1);
        assert_eq!(COUNTERS.release.load(Relaxed), release + 8);
        assert_eq!(COUNTERS.free.load(Relaxed), ALL_FREE);
        for niov in &COUNTERS.niovs {
            // SAFETY: The net_iov is back with the provider: nobody else uses it.
            let pp = unsafe { (*niov.get()).desc.pp };
            assert!(pp.is_null());
        }

        // Removing the provider restarts the queue with pages: no more calls.
        // SAFETY: `dev` is locked and `Counting` installed on queue 0 with `COUNTERS`.
        unsafe { close_rx_queue::<Counting>(dev.as_raw(), 0, &COUNTERS) };
        assert!(!dev.provider_installed());
        assert_eq!(
            COUNTERS.calls(),
            [init + 1, destroy + 1, alloc + 8, release + 8]
        );
        Ok(())
    }

    #[test]
    fn optional_ops_are_null() {
        // Counting implements neither `nl_fill` nor `uninstall`: the table leaves them NULL,
        // which page pools and rx queues accept.
        // SAFETY: Reading the function pointers of a static table.
        let ops = unsafe { &*COUNTING_OPS.as_raw() };
        assert!(ops.nl_fill.is_none() && ops.uninstall.is_none());
        assert!(ops.alloc_netmems.is_some() && ops.release_netmem.is_some());
    }
}
