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
    dma::DataDirection,
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
///
/// # Safety
///
/// A page pool, the rx path of its queue's device and the sockets that receive into its netmems
/// use the net_iovs a provider lends as the memory their type says they are. Implementers
/// promise, for every net_iov [`MemoryProvider::alloc`] returns:
///
/// - its `type` and `owner` describe it truly: a net_iov of type `NET_IOV_DMABUF` belongs to the
///   chunk of a bound dma-buf that `owner` names, one of type `NET_IOV_IOURING` to an io_uring
///   zero-copy area. A net_iov of neither is `NET_IOV_NONE`, the type of zeroed memory, which the
///   stack never takes for one of theirs; its `dma_addr` is still used: a provider of such
///   net_iovs (a test's, with no memory behind them) relies on [`open_rx_queue`]'s caller to
///   install it only on queues of devices that never receive into them;
/// - its `dma_addr` is a mapping, for the DMA device of the pool's rx queue, of memory the device
///   may write `PAGE_SIZE << order` bytes to, `order` being the pool's
///   ([`ProviderPool::order`]), as `init` must check; if `init` returned [`DmaSync::Keep`], a
///   streaming mapping that the pool may sync. The one exception is the `NET_IOV_NONE` net_iov
///   above, on a queue its device never receives into;
/// - its memory stays valid until the provider took it back from every pool it was lent to
///   ([`ReleasedNetmem::into_net_iov`]), and at least until `destroy` for each such pool;
/// - it is lent to one pool at a time, and not used by the provider while lent.
#[vtable]
pub unsafe trait MemoryProvider: Sized + 'static {
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
    ///
    /// The provider may also lend more net_iovs at once, for the pool's next allocations, by
    /// placing them in `refill`.
    fn alloc(
        pool: &ProviderPool<Self>,
        gfp: Flags,
        refill: &mut CacheRefill<'_>,
    ) -> Option<ProviderNetIov>;

    /// Takes back a netmem the page pool releases: a net_iov it lent, as a provider's pool holds
    /// nothing else. The pool forgets the netmem.
    fn release(pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>);

    /// Describes the provider in a netlink reply about the page pool, or about `rxq` if given.
    ///
    /// Every provider has it: user space sees which queues and pools a provider took.
    fn nl_fill(priv_data: &Self::Priv, reply: &NlReply, rxq: Option<&RxQueue>) -> Result;

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
                nl_fill: Some(Self::nl_fill),
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
                // reads or writes its bitfields. No reference to the pool is made.
                unsafe {
                    bindings::page_pool::set_dma_sync_raw(pool, false);
                    bindings::page_pool::set_dma_sync_for_cpu_raw(pool, false);
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
        // SAFETY: By the safety requirements, this is the pool's allocating context.
        let mut refill = unsafe { CacheRefill::new(pool) };
        match T::alloc(pp, Flags::from_raw(gfp), &mut refill) {
            Some(niov) => refill.lend(niov),
            None => refill.take_back(),
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
        T::release(pp, ReleasedNetmem(netmem));
        // The pool does not put the netmem: it is the provider's.
        false
    }

    /// # Safety
    ///
    /// `mp_priv` is NULL or points to a `T::Priv` valid for the call, `rsp` is a netlink message
    /// being built and nobody else's during the call, and `rxq` is NULL or a valid rx queue.
    unsafe extern "C" fn nl_fill(
        mp_priv: *mut c_void,
        rsp: *mut bindings::sk_buff,
        rxq: *mut bindings::netdev_rx_queue,
    ) -> c_int {
        // Providers are installed with their private data: a NULL one adds nothing, rather than
        // failing the whole dump.
        if crate::warn_on!(mp_priv.is_null()) {
            return 0;
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
    /// `mp_priv` is NULL or points to a `T::Priv` valid for the call, and `rxq` is a valid rx
    /// queue.
    unsafe extern "C" fn uninstall(mp_priv: *mut c_void, rxq: *mut bindings::netdev_rx_queue) {
        if mp_priv.is_null() {
            return;
        }
        // SAFETY: By the safety requirements, `mp_priv` points to a `T::Priv`.
        let priv_ = unsafe { &*mp_priv.cast::<T::Priv>() };
        // SAFETY: By the safety requirements, `rxq` is valid for the call.
        let rxq = unsafe { RxQueue::from_raw(rxq) };
        T::uninstall(priv_, rxq)
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

    /// Returns the order of the blocks the pool hands out (`1 << order` pages each): for a pool
    /// of an rx queue, what the queue's `rx-page-size` asks for.
    pub fn order(&self) -> u32 {
        // SAFETY: The pool is valid and its parameters never change after creation.
        unsafe { (*self.as_raw()).p.order }
    }

    /// Returns the direction of the pool's DMA mappings, in which a provider that keeps syncing
    /// ([`DmaSync::Keep`]) syncs what it lends.
    pub fn dma_dir(&self) -> Result<DataDirection> {
        // SAFETY: The pool is valid and its parameters never change after creation.
        DataDirection::try_from(unsafe { (*self.as_raw()).p.dma_dir })
    }
}

/// Room in a page pool's allocation cache for the net_iovs a provider's `alloc` lends at once,
/// ahead of the pool's next allocations (`net_mp_netmem_place_in_cache()`), as io_uring's
/// zero-copy receive does. With the one `alloc` returns, a call lends at most
/// `PP_ALLOC_CACHE_REFILL` net_iovs, as a pool refills its cache from its ring.
///
/// A provider whose pool keeps syncing ([`DmaSync::Keep`]) syncs what it places for the device:
/// the pool does not sync what it takes from its cache.
///
/// # Invariants
///
/// `pool` is a valid page pool, in its allocating context while the object lives: only this
/// object and the pool's own recycling in that context use its allocation cache.
pub struct CacheRefill<'a> {
    pool: NonNull<bindings::page_pool>,
    room: u32,
    _pool: PhantomData<&'a mut bindings::page_pool>,
}

impl CacheRefill<'_> {
    /// # Safety
    ///
    /// `pool` is a valid page pool, in its allocating context while the object lives.
    unsafe fn new(pool: *mut bindings::page_pool) -> Self {
        // INVARIANT: By the safety requirements.
        Self {
            // SAFETY: By the safety requirements, `pool` is valid, so not NULL.
            pool: unsafe { NonNull::new_unchecked(pool) },
            room: bindings::PP_ALLOC_CACHE_REFILL - 1,
            _pool: PhantomData,
        }
    }

    /// Returns the allocation cache's entry count.
    fn count(&self) -> *mut u32 {
        // SAFETY: The pool is valid by the type invariants; no reference is made.
        unsafe { &raw mut (*self.pool.as_ptr()).alloc.count }
    }

    /// Returns how many more net_iovs [`CacheRefill::place`] takes at most.
    #[inline]
    pub fn room(&self) -> u32 {
        self.room
    }

    /// Lends `niov` to the pool and returns its netmem.
    fn lend(&self, niov: ProviderNetIov) -> bindings::netmem_ref {
        let niov = niov.into_raw();
        // SAFETY: `niov` is a net_iov the provider lends and nobody else uses, by the invariants
        // of `ProviderNetIov`, and this is the pool's allocating context, which the hold count
        // needs, by the type invariants.
        unsafe { bindings::net_mp_niov_set_page_pool(self.pool.as_ptr(), niov) };
        super::netmem::net_iov_to_netmem(niov)
    }

    /// Lends `niov` to the pool for one of its next allocations, placing it in the pool's cache,
    /// or gives it back when the refill or the cache is full.
    pub fn place(&mut self, niov: ProviderNetIov) -> Result<(), ProviderNetIov> {
        // SAFETY: The cache is only used in the pool's allocating context, this one, by the type
        // invariants.
        let count = unsafe { *self.count() };
        if self.room == 0 || count >= bindings::PP_ALLOC_CACHE_SIZE {
            return Err(niov);
        }
        let netmem = self.lend(niov);
        // SAFETY: The pool is in its allocating context and its cache has room, checked above.
        unsafe { bindings::net_mp_netmem_place_in_cache(self.pool.as_ptr(), netmem) };
        self.room -= 1;
        Ok(())
    }

    /// Takes a netmem out of the pool's cache for the allocation under way, as the pool would
    /// for its next one, or returns 0 if the cache is empty: for a provider that placed net_iovs
    /// but returned none.
    fn take_back(&mut self) -> bindings::netmem_ref {
        let count = self.count();
        // SAFETY: The cache is only used in the pool's allocating context, this one, by the type
        // invariants, and its first `count` entries are netmems the pool accounted for.
        unsafe {
            if *count == 0 {
                return 0;
            }
            *count -= 1;
            (*self.pool.as_ptr()).alloc.cache[*count as usize]
        }
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
        let len = core::mem::size_of::<u32>() as c_int;
        // SAFETY: The message is valid and ours during the call, by the type invariants, and
        // `value` is readable for `len` bytes.
        to_result(unsafe {
            bindings::nla_put(self.0.get(), attr, len, core::ptr::from_ref(&value).cast())
        })
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
/// `T`'s `nl_fill` with it meanwhile. If `T` lends net_iovs that are neither devmem's nor
/// io_uring's (a test provider's), the device never receives into the queue.
///
/// A non-zero `rx_page_size` asks the queue for buffers of that many bytes, a power of two of at
/// least `PAGE_SIZE` ([`EINVAL`] otherwise), as devmem does for an `rx-page-size` other than
/// `PAGE_SIZE`: its page pools then have the matching order ([`ProviderPool::order`]). A device
/// whose queues cannot change it refuses with [`EOPNOTSUPP`], even for `PAGE_SIZE`: pass zero to
/// keep the device's size.
#[inline]
pub unsafe fn open_rx_queue<T: MemoryProvider>(
    netdev: *mut bindings::net_device,
    queue: u32,
    priv_data: &T::Priv,
    rx_page_size: u32,
) -> Result {
    if rx_page_size != 0
        && (!rx_page_size.is_power_of_two() || (rx_page_size as usize) < crate::page::PAGE_SIZE)
    {
        return Err(EINVAL);
    }
    let params = bindings::pp_memory_provider_params {
        mp_priv: core::ptr::from_ref(priv_data).cast_mut().cast(),
        mp_ops: T::OPS.as_raw(),
        rx_page_size,
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

    // The net_iovs are zeroed: type NET_IOV_NONE, no owner, `dma_addr` 0. Only page pool code sees
    // them: the device is never registered, so it never receives into them.
    const NR_NIOVS: usize = 32;
    // What `nl_fill` reports.
    const NL_MARK: u32 = 0x7e57;
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
        nl_fill: Atomic<u32>,
        uninstall: Atomic<u32>,
        /// How many net_iovs `alloc` lends per call.
        bulk: Atomic<u32>,
        /// The order of the last pool `init` was called for.
        order: Atomic<u32>,
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

        /// Takes a free net_iov, if there is one.
        fn take(&self) -> Option<ProviderNetIov> {
            let mut free = self.free.load(Relaxed);
            loop {
                if free == 0 {
                    return None;
                }
                let i = free.trailing_zeros() as usize;
                match self.free.cmpxchg(free, free & !(1 << i), Relaxed) {
                    Ok(_) => {
                        let niov = NonNull::new(self.niovs[i].get())?;
                        // SAFETY: Clearing bit `i` handed `niovs[i]`, static, to this caller
                        // alone; it is either new (zeroed) or came back through `into_net_iov()`,
                        // which cleared its page pool fields.
                        return Some(unsafe { ProviderNetIov::from_raw(niov) });
                    }
                    Err(now) => free = now,
                }
            }
        }

        /// Makes a net_iov `take` handed out free again.
        fn give_back(&self, niov: ProviderNetIov) {
            if let Some(i) = self.index_of(niov.net_iov()) {
                // Bit `i` is clear while the net_iov is out: adding sets it.
                self.free.fetch_add(1 << i, Relaxed);
            }
        }
    }

    static COUNTERS: Counters = Counters {
        niovs: [const { Opaque::zeroed() }; NR_NIOVS],
        free: Atomic::new(ALL_FREE),
        init: Atomic::new(0),
        destroy: Atomic::new(0),
        alloc: Atomic::new(0),
        release: Atomic::new(0),
        nl_fill: Atomic::new(0),
        uninstall: Atomic::new(0),
        bulk: Atomic::new(1),
        order: Atomic::new(0),
    };

    struct Counting;

    crate::memory_provider_ops! {
        static COUNTING_OPS: Counting;
    }

    // SAFETY: The net_iovs lent are static, so valid for ever, and `free` lends each to one pool at
    // a time and only once it came back. They are zeroed: their type is `NET_IOV_NONE`, true, as
    // there is no memory behind them, and their `dma_addr` 0, which the trait allows for a
    // provider that is only installed on queues of devices that never receive: the tests install
    // it on a device that is never registered. `init` returns `DmaSync::Disable`, so the pool
    // never syncs them either.
    #[vtable]
    unsafe impl MemoryProvider for Counting {
        type Priv = Counters;
        const OPS: &'static MemoryProviderOps<Self> = &COUNTING_OPS;

        fn init(pool: &ProviderPool<Self>) -> Result<DmaSync> {
            let counters = pool.priv_data().ok_or(EINVAL)?;
            // The tests' pools are all rx pools.
            if pool.dma_dir()? != DataDirection::FromDevice {
                return Err(EINVAL);
            }
            counters.order.store(pool.order(), Relaxed);
            counters.init.add(1, Relaxed);
            Ok(DmaSync::Disable)
        }

        fn destroy(pool: &ProviderPool<Self>) {
            if let Some(counters) = pool.priv_data() {
                // Release: the test reads what the releases wrote once it sees this.
                counters.destroy.fetch_add(1, ordering::Release);
            }
        }

        fn alloc(
            pool: &ProviderPool<Self>,
            _gfp: Flags,
            refill: &mut CacheRefill<'_>,
        ) -> Option<ProviderNetIov> {
            let counters = pool.priv_data()?;
            counters.alloc.add(1, Relaxed);
            let niov = counters.take()?;
            for _ in 1..counters.bulk.load(Relaxed) {
                let Some(more) = counters.take() else {
                    break;
                };
                if let Err(more) = refill.place(more) {
                    counters.give_back(more);
                    break;
                }
            }
            Some(niov)
        }

        fn release(pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>) {
            let Some(counters) = pool.priv_data() else {
                return;
            };
            counters.release.add(1, Relaxed);
            if let Ok(niov) = netmem.into_net_iov() {
                counters.give_back(niov);
            }
        }

        fn nl_fill(counters: &Counters, reply: &NlReply, rxq: Option<&RxQueue>) -> Result {
            counters.nl_fill.add(1, Relaxed);
            let attr = if rxq.is_some() {
                bindings::NETDEV_A_QUEUE_DMABUF
            } else {
                bindings::NETDEV_A_PAGE_POOL_DMABUF
            };
            reply.put_u32(attr, NL_MARK)
        }

        fn uninstall(counters: &Counters, _rxq: &RxQueue) {
            counters.uninstall.add(1, Relaxed);
        }
    }

    /// Queue memory: the page pool of the queue (NULL, `None`, in zeroed memory).
    type QueueMem = Option<KBox<PagePool>>;

    /// # Safety
    ///
    /// Called by the rx queue code with `dev` locked and `mem` zeroed room for a `QueueMem`.
    unsafe extern "C" fn mem_alloc(
        dev: *mut bindings::net_device,
        qcfg: *mut bindings::netdev_queue_config,
        mem: *mut c_void,
        idx: c_int,
    ) -> c_int {
        // SAFETY: The test set the device's parent to a faux device, bound while the netdev
        // exists.
        let parent = unsafe { Device::<Normal>::from_raw((*dev).dev.parent).as_bound() };
        // SAFETY: The rx queue code passes the queue's valid configuration. Its page size is zero
        // unless the device's ops support it (`QUEUE_OPS_PAGE_SIZE`) and a provider asked for it.
        let page_size = unsafe { (*qcfg).rx_page_size } as usize;
        // `open_rx_queue` took only a power of two of at least `PAGE_SIZE`.
        let order = (page_size / PAGE_SIZE).checked_ilog2().unwrap_or(0);
        let params = Params::new().order(order).dma(
            parent,
            DataDirection::FromDevice,
            (PAGE_SIZE << order) as u32,
        );
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

    /// The queue ops of a device whose queues take a provider's `rx_page_size`.
    static QUEUE_OPS_PAGE_SIZE: bindings::netdev_queue_mgmt_ops = bindings::netdev_queue_mgmt_ops {
        supported_params: bindings::QCFG_RX_PAGE_SIZE,
        ..QUEUE_OPS
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
        fn new(
            parent: &Device,
            queue_ops: &'static bindings::netdev_queue_mgmt_ops,
        ) -> Result<Self> {
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
                (*raw).queue_mgmt_ops = queue_ops;
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

    /// A test device whose queue has `Counting` installed, removed when the fixture is dropped,
    /// also when a test fails half-way.
    struct Fixture {
        // Dropped first: the device's parent outlives it.
        dev: TestNetdev,
        parent: faux::Registration,
        /// The provider calls before the install.
        calls0: [u32; 4],
    }

    impl Fixture {
        fn new() -> Result<Self> {
            Self::with(&QUEUE_OPS, 0)
        }

        /// A fixture whose device has `queue_ops`, and whose provider asks for `rx_page_size`.
        fn with(
            queue_ops: &'static bindings::netdev_queue_mgmt_ops,
            rx_page_size: u32,
        ) -> Result<Self> {
            let parent = faux::Registration::new(c"rust_pp_mp_kunit", None)?;
            let dev = TestNetdev::new(parent.as_ref().as_ref(), queue_ops)?;
            let calls0 = COUNTERS.calls();
            // SAFETY: `dev` has queue management ops and is locked; `COUNTERS` is static.
            unsafe { open_rx_queue::<Counting>(dev.as_raw(), 0, &COUNTERS, rx_page_size)? };
            Ok(Self {
                dev,
                parent,
                calls0,
            })
        }

        fn bound(&self) -> &Device<Bound> {
            self.parent.as_ref().as_ref()
        }

        /// Creates a pool of the queue, which takes the provider.
        fn pool(&self) -> Result<PagePool> {
            let params =
                Params::new().dma(self.bound(), DataDirection::FromDevice, PAGE_SIZE as u32);
            // SAFETY: The device is locked, has queue 0 and outlives the pool: the tests wait for
            // the pool's `destroy`.
            unsafe { PagePool::new_for_rx_queue(params, self.dev.as_raw(), 0) }
        }

        /// Removes the provider from the queue.
        fn uninstall(&self) {
            if self.dev.provider_installed() {
                // SAFETY: The device is locked and `Counting` installed on queue 0 with
                // `COUNTERS`.
                unsafe { close_rx_queue::<Counting>(self.dev.as_raw(), 0, &COUNTERS) };
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            self.uninstall();
        }
    }

    #[test]
    fn provider_pool_lifecycle() -> Result {
        // Installing restarts the queue: its new pool gets `init`, and, as the device is down,
        // is destroyed at once.
        let fx = Fixture::new()?;
        let (dev, calls0) = (&fx.dev, fx.calls0);
        assert!(dev.provider_installed());
        let [init, destroy, alloc, release] = COUNTERS.calls();
        assert_eq!(
            [init, destroy, alloc, release],
            [calls0[0] + 1, calls0[1] + 1, calls0[2], calls0[3]]
        );

        // A second install on the same queue is refused.
        // SAFETY: `dev` has queue management ops and is locked; `COUNTERS` is static.
        let again = unsafe { open_rx_queue::<Counting>(dev.as_raw(), 0, &COUNTERS, 0) };
        assert_eq!(again, Err(EEXIST));

        // A pool of the queue takes the provider: every netmem is one of its net_iovs.
        let mut pool = fx.pool()?;
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
            // Zeroed, it is not taken for a devmem net_iov, whose owner the stack would follow.
            // SAFETY: The net_iov is valid while the pool holds it.
            let kind = unsafe { (*niov.as_raw()).type_ };
            assert_ne!(kind, bindings::net_iov_type_NET_IOV_DMABUF);
            assert_ne!(kind, bindings::net_iov_type_NET_IOV_IOURING);
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
        fx.uninstall();
        assert!(!dev.provider_installed());
        assert_eq!(
            COUNTERS.calls(),
            [init + 1, destroy + 1, alloc + 8, release + 8]
        );
        Ok(())
    }

    #[test]
    fn rx_page_size_sets_the_pool_order() -> Result {
        const FOUR_PAGES: u32 = 4 * PAGE_SIZE as u32;

        // A device whose queues keep their buffer size refuses, and nothing is installed.
        let calls0 = COUNTERS.calls();
        let refused = Fixture::with(&QUEUE_OPS, FOUR_PAGES);
        assert_eq!(refused.err(), Some(EOPNOTSUPP));
        assert_eq!(COUNTERS.calls(), calls0);

        // Sizes that are not a power of two of at least a page are refused before the device
        // sees them.
        for size in [3 * PAGE_SIZE as u32, PAGE_SIZE as u32 / 2] {
            let refused = Fixture::with(&QUEUE_OPS_PAGE_SIZE, size);
            assert_eq!(refused.err(), Some(EINVAL));
        }
        assert_eq!(COUNTERS.calls(), calls0);

        // One whose queues take it restarts the queue with a pool of four-page buffers, which
        // the provider is initialized for.
        let fx = Fixture::with(&QUEUE_OPS_PAGE_SIZE, FOUR_PAGES)?;
        assert!(fx.dev.provider_installed());
        assert_eq!(COUNTERS.init.load(Relaxed), fx.calls0[0] + 1);
        assert_eq!(COUNTERS.order.load(Relaxed), 2);

        // Without the request, the same device keeps single pages.
        drop(fx);
        let fx = Fixture::with(&QUEUE_OPS_PAGE_SIZE, 0)?;
        assert_eq!(COUNTERS.init.load(Relaxed), fx.calls0[0] + 1);
        assert_eq!(COUNTERS.order.load(Relaxed), 0);
        Ok(())
    }

    #[test]
    fn provider_running_dry() -> Result {
        let fx = Fixture::new()?;
        let [_, destroy, alloc, _] = COUNTERS.calls();

        // Every net_iov is handed out once; then the provider has none and the pool none to give,
        // which the pool reports as a failed allocation, having asked the provider once more.
        let mut pool = fx.pool()?;
        let mut held = KVec::new();
        while let Some(netmem) = pool.alloc_netmem(GFP_KERNEL) {
            held.push(netmem, GFP_KERNEL)?;
            if held.len() > NR_NIOVS {
                break;
            }
        }
        assert_eq!(held.len(), NR_NIOVS);
        assert_eq!(COUNTERS.free.load(Relaxed), 0);
        assert_eq!(COUNTERS.alloc.load(Relaxed), alloc + NR_NIOVS as u32 + 1);

        drop(pool);
        drop(held);
        assert_eq!(wait_for_destroy(destroy + 1), destroy + 1);
        assert_eq!(COUNTERS.free.load(Relaxed), ALL_FREE);
        Ok(())
    }

    #[test]
    fn provider_bulk_refill() -> Result {
        let fx = Fixture::new()?;
        let [_, destroy, alloc, _] = COUNTERS.calls();
        COUNTERS.bulk.store(4, Relaxed);

        // Each provider call lends four net_iovs: one for the allocation, three placed in the
        // pool's cache for the next allocations, which do not call the provider.
        let mut pool = fx.pool()?;
        let mut held = KVec::<PoolNetmem>::new();
        let allocated = (|| -> Result {
            for _ in 0..10 {
                let netmem = pool.alloc_netmem(GFP_KERNEL).ok_or(ENOMEM)?;
                let NetmemKind::NetIov(niov) = netmem.netmem().kind() else {
                    return Err(EINVAL);
                };
                assert!(COUNTERS.index_of(niov).is_some());
                assert_eq!(netmem.netmem().pp_ref_count(), 1);
                held.push(netmem, GFP_KERNEL)?;
            }
            Ok(())
        })();
        // Whatever happened, the other tests get single net_iovs again.
        COUNTERS.bulk.store(1, Relaxed);
        allocated?;
        assert_eq!(COUNTERS.alloc.load(Relaxed), alloc + 3);
        assert_eq!(
            COUNTERS.free.load(Relaxed).count_ones() as usize,
            NR_NIOVS - 12
        );
        // The two net_iovs still in the cache count as allocated.
        assert_eq!(pool.inflight(), 12);

        drop(pool);
        drop(held);
        assert_eq!(wait_for_destroy(destroy + 1), destroy + 1);
        assert_eq!(COUNTERS.free.load(Relaxed), ALL_FREE);
        Ok(())
    }

    /// Returns the type and the `u32` of the netlink attribute at the start of `data`.
    fn read_u32_attr(data: &[u8]) -> Option<(u16, u32)> {
        let len = u16::from_ne_bytes(data.get(0..2)?.try_into().ok()?);
        let kind = u16::from_ne_bytes(data.get(2..4)?.try_into().ok()?);
        let value = u32::from_ne_bytes(data.get(4..8)?.try_into().ok()?);
        (len == 8).then_some((kind, value))
    }

    #[test]
    fn ops_table_and_netlink() -> Result {
        // The table is in rodata, as `page_pool_init()` requires, and has every op.
        let ops = COUNTING_OPS.as_raw();
        // SAFETY: Only compares an address with the kernel's sections.
        assert!(unsafe { bindings::is_kernel_rodata(ops as usize) });
        // SAFETY: Reading the function pointers of a static table.
        let ops = unsafe { &*ops };
        let (Some(nl_fill), Some(uninstall)) = (ops.nl_fill, ops.uninstall) else {
            return Err(EINVAL);
        };
        assert!(ops.alloc_netmems.is_some() && ops.release_netmem.is_some());

        let fx = Fixture::new()?;
        // SAFETY: The device has one rx queue, `_rx[0]`.
        let rxq = unsafe { (*fx.dev.as_raw())._rx };
        let mp_priv = core::ptr::from_ref(&COUNTERS).cast_mut().cast();
        let calls = (
            COUNTERS.nl_fill.load(Relaxed),
            COUNTERS.uninstall.load(Relaxed),
        );

        for (rxq, attr) in [
            (core::ptr::null_mut(), bindings::NETDEV_A_PAGE_POOL_DMABUF),
            (rxq, bindings::NETDEV_A_QUEUE_DMABUF),
        ] {
            // SAFETY: Allocating a message has no requirements.
            let skb = unsafe { bindings::genlmsg_new(PAGE_SIZE, bindings::GFP_KERNEL) };
            if skb.is_null() {
                return Err(ENOMEM);
            }
            // SAFETY: `mp_priv` points to a static `Counters`, `skb` is a new message of ours, and
            // `rxq` is NULL or the device's queue.
            let ret = unsafe { nl_fill(mp_priv, skb, rxq) };
            let attr_read = {
                // SAFETY: The message holds `len` bytes at `data`, which `nl_fill` wrote.
                let data = unsafe { core::slice::from_raw_parts((*skb).data, (*skb).len as usize) };
                read_u32_attr(data)
            };
            // SAFETY: The message is ours and no longer used.
            unsafe { bindings::nlmsg_free(skb) };
            assert_eq!(ret, 0);
            assert_eq!(attr_read, Some((attr as u16, NL_MARK)));
        }

        // SAFETY: `mp_priv` points to a static `Counters`, and `rxq` is the device's queue.
        unsafe { uninstall(mp_priv, rxq) };
        assert_eq!(
            (
                COUNTERS.nl_fill.load(Relaxed),
                COUNTERS.uninstall.load(Relaxed)
            ),
            (calls.0 + 2, calls.1 + 1)
        );
        Ok(())
    }
}
