// SPDX-License-Identifier: GPL-2.0

//! The devmem dma-buf memory provider, in Rust.
//!
//! It hands out the net_iovs of a dma-buf bound to rx queues with the netdev netlink family's
//! `bind-rx`, as the C provider in `devmem.c` does. The binding (the dma-buf's mapping, the
//! genpool of its chunks, its sockets and ids) stays in C, where TCP and the socket code read
//! it, so both providers behave the same for user space.

use kernel::{
    alloc::Flags,
    bindings,
    net::page_pool::provider::{
        CacheRefill, DmaSync, MemoryProvider, MemoryProviderOps, NlReply, NotTaken, ProviderNetIov,
        ProviderPool, ReleasedNetmem, RxQueue,
    },
    page::PAGE_SHIFT,
    prelude::*,
    sync::atomic::{Atomic, Relaxed},
    types::Opaque, //
};

use core::ptr::NonNull;

/// A dma-buf bound to rx queues (`struct net_devmem_dmabuf_binding`).
///
/// # Invariants
///
/// The binding is valid while installed on an rx queue, and while a page pool holds the
/// reference `init` took: a `&Binding` only comes from the `mp_priv` of such a queue or pool.
#[repr(transparent)]
struct Binding(Opaque<bindings::net_devmem_dmabuf_binding>);

// SAFETY: Bindings are shared by the rx queues and page pools of a device. The fields read here,
// `niov_shift` and `id`, are set before the binding is installed and never change; everything else
// goes through the C functions, which lock.
unsafe impl Sync for Binding {}

impl Binding {
    fn as_raw(&self) -> *mut bindings::net_devmem_dmabuf_binding {
        self.0.get()
    }

    /// Returns the log2 of the size of a net_iov of the binding.
    fn niov_shift(&self) -> u32 {
        // SAFETY: The binding is valid and `niov_shift` never changes once it is installed.
        unsafe { (*self.as_raw()).niov_shift }
    }

    /// Returns the id user space knows the binding by.
    fn id(&self) -> u32 {
        // SAFETY: The binding is valid and `id` never changes once it is installed.
        unsafe { (*self.as_raw()).id }
    }
}

/// The owner `#[vtable]` gives the provider (`OwnerModule`), for want of `module!`: none, the
/// provider is built into the kernel.
struct LocalModule;

impl kernel::ModuleMetadata for LocalModule {
    const NAME: &'static CStr = c"devmem_rs";

    const THIS_MODULE: kernel::ThisModule = {
        // SAFETY: A null module is the kernel itself, as `THIS_MODULE` in built-in C code.
        unsafe { kernel::ThisModule::from_ptr(core::ptr::null_mut()) }
    };
}

struct Devmem;

/// What [`Devmem`] counts its calls as.
const PROVIDER: bindings::net_devmem_provider =
    bindings::net_devmem_provider_NET_DEVMEM_PROVIDER_RUST;

kernel::memory_provider_ops! {
    /// The provider's ops table, which `devmem.c` installs on rx queues.
    #[no_mangle]
    static net_devmem_rust_ops: Devmem;
}

/// Warns once per `warned` flag, as `WARN_ON_ONCE()`.
fn warn_once(warned: &Atomic<bool>) {
    if !warned.xchg(true, Relaxed) {
        kernel::warn_on!(true);
    }
}

/// Counts a call of `provider` in debugfs, in kernels that compare the providers.
#[inline]
fn count_call(provider: bindings::net_devmem_provider, call: bindings::net_devmem_call) {
    #[cfg(CONFIG_NET_DEVMEM_PROVIDER_TEST)]
    // SAFETY: Only increments a counter.
    unsafe {
        bindings::net_devmem_count_call(provider, call)
    };
    #[cfg(not(CONFIG_NET_DEVMEM_PROVIDER_TEST))]
    let _ = (provider, call);
}

/// Prepares a pool of `binding`'s rx queue for a provider: checks its order and takes the pool's
/// reference to the binding, which [`put_binding`] drops.
fn init_pool(binding: Option<&Binding>, order: u32) -> Result<DmaSync> {
    let binding = binding.ok_or(EINVAL)?;
    if binding.niov_shift().checked_sub(PAGE_SHIFT as u32) != Some(order) {
        return Err(E2BIG);
    }
    // It is a `percpu_ref_tryget()`, which only fails once the count reached zero, and the
    // binding holds its own reference while it is installed on a queue.
    // SAFETY: The binding is valid while installed on the pool's rx queue.
    if !unsafe { bindings::net_devmem_dmabuf_binding_get(binding.as_raw()) } {
        return Err(ENODEV);
    }
    // dma-buf addresses are the importer's mapping: they are not synced like pages.
    Ok(DmaSync::Disable)
}

/// Drops the reference [`init_pool`] took for a pool that is now gone.
///
/// # Safety
///
/// `init_pool` took a reference to `binding` for a pool that is gone, and nothing else drops it.
unsafe fn put_binding(binding: Option<&Binding>) {
    if let Some(binding) = binding {
        // SAFETY: By the safety requirements, this reference is the pool's, which is gone.
        unsafe { bindings::net_devmem_dmabuf_binding_put(binding.as_raw()) };
    }
}

/// Takes a net_iov of `binding` from its genpool, for a pool that holds a reference to `binding`.
fn alloc_from_genpool(binding: &Binding) -> Option<ProviderNetIov> {
    // SAFETY: `&Binding` is a valid binding.
    let niov = NonNull::new(unsafe { bindings::net_devmem_alloc_dmabuf(binding.as_raw()) })?;
    // SAFETY: The genpool gave this net_iov to us alone, with its page pool fields cleared. The
    // binding, which owns its memory, lives while a pool holds a reference to it, and the
    // providers here keep the object only until they lend it or give it back to the genpool, or,
    // on a free list, until the last pool of the binding is destroyed: that empties the list
    // before it drops its reference.
    Some(unsafe { ProviderNetIov::from_raw(niov) })
}

/// Gives a net_iov back to its binding's genpool.
///
/// # Safety
///
/// `niov` came from [`alloc_from_genpool`], and its binding has not been freed.
unsafe fn free_to_genpool(niov: ProviderNetIov) {
    // SAFETY: By the safety requirements, the net_iov is one of the genpool of a valid binding,
    // and the `ProviderNetIov` says that nobody holds it.
    unsafe { bindings::net_devmem_free_dmabuf(niov.into_raw()) }
}

/// Takes `netmem` back from its pool if it is a net_iov with no holder left; anything else is
/// kept away from the genpool, with a warning, as in C.
fn take_back(netmem: ReleasedNetmem<'_>) -> Option<ProviderNetIov> {
    static NOT_NET_IOV: Atomic<bool> = Atomic::new(false);
    static STILL_HELD: Atomic<bool> = Atomic::new(false);

    match netmem.into_net_iov() {
        Ok(niov) => return Some(niov),
        Err(NotTaken::Page) => warn_once(&NOT_NET_IOV),
        Err(NotTaken::Held) => warn_once(&STILL_HELD),
    }
    None
}

// SAFETY: The net_iovs lent are those of the binding's genpool, which `net_devmem_bind_dmabuf()`
// initialized as `NET_IOV_DMABUF` net_iovs of the binding's chunks, each `1 << niov_shift` bytes
// of the binding's mapping for the queue's DMA device; `init` refuses pools of another order, and
// the DMA addresses are never synced (`DmaSync::Disable`). The binding, and with it its chunks,
// lives until the `destroy` of every pool `init` took a reference for. The genpool hands each
// net_iov out once, and `release` gives it back only once no pool or socket holds it.
#[vtable]
unsafe impl MemoryProvider for Devmem {
    type Priv = Binding;
    const OPS: &'static MemoryProviderOps<Self> = &net_devmem_rust_ops;

    fn init(pool: &ProviderPool<Self>) -> Result<DmaSync> {
        let sync = init_pool(pool.priv_data(), pool.order())?;
        count_call(PROVIDER, bindings::net_devmem_call_NET_DEVMEM_CALL_INIT);
        Ok(sync)
    }

    fn destroy(pool: &ProviderPool<Self>) {
        // SAFETY: `init` took the pool's reference, and the pool is gone.
        unsafe { put_binding(pool.priv_data()) };
    }

    fn alloc(
        pool: &ProviderPool<Self>,
        _gfp: Flags,
        _refill: &mut CacheRefill<'_>,
    ) -> Option<ProviderNetIov> {
        let niov = alloc_from_genpool(pool.priv_data()?)?;
        count_call(PROVIDER, bindings::net_devmem_call_NET_DEVMEM_CALL_ALLOC);
        Some(niov)
    }

    fn release(_pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>) {
        if let Some(niov) = take_back(netmem) {
            // SAFETY: `alloc` took the net_iov from the genpool, and the pool releasing it holds
            // a reference to its binding.
            unsafe { free_to_genpool(niov) };
        }
    }

    fn nl_fill(binding: &Binding, reply: &NlReply, rxq: Option<&RxQueue>) -> Result {
        let attr = if rxq.is_some() {
            bindings::NETDEV_A_QUEUE_DMABUF
        } else {
            bindings::NETDEV_A_PAGE_POOL_DMABUF
        };
        reply.put_u32(attr, binding.id())
    }

    fn uninstall(binding: &Binding, rxq: &RxQueue) {
        // SAFETY: The binding is installed on `rxq`, which is going away.
        unsafe { bindings::net_devmem_forget_rxq(binding.as_raw(), rxq.as_raw()) };
    }
}

/// The free-list variant of [`Devmem`], for benchmarks: a free list in front of the genpool, as
/// `devmem.c` has for the C provider, with its own list. Their alloc and release do the same few
/// steps, so that a benchmark comparing the two measures the provider calls themselves (the ops
/// table, the netmem conversions) rather than the genpool. A list serves the pools of one binding
/// at a time: the pools of another binding fail with `EBUSY` until the last of them is destroyed.
///
/// The lock disables interrupts, as the C one: page pools release netmems in process context and
/// in softirq, and there is no BH-disabling spinlock in Rust.
#[cfg(CONFIG_NET_DEVMEM_PROVIDER_TEST)]
mod freelist {
    use super::*;
    use kernel::sync::global_lock;

    /// How many net_iovs the list keeps; more go back to the genpool.
    const SIZE: usize = 256;

    /// What [`DevmemFreeList`] counts its calls as.
    const PROVIDER: bindings::net_devmem_provider =
        bindings::net_devmem_provider_NET_DEVMEM_PROVIDER_RUST_FREELIST;

    /// The free list.
    ///
    /// # Invariants
    ///
    /// - `niovs[..nr]` are `Some`, the rest `None`.
    /// - `pools` pools of the binding at address `binding` use the list, each holding a reference
    ///   to the binding, and the net_iovs on the list are of that binding's genpool.
    /// - With no pool, `binding` is 0 and the list is empty.
    struct FreeList {
        /// The address of the binding whose pools use the list, only compared; 0 for none.
        binding: usize,
        pools: u32,
        nr: usize,
        niovs: [Option<ProviderNetIov>; SIZE],
    }

    global_lock! {
        // SAFETY: `net_devmem_rust_freelist_init()` initializes it, from the initcall that creates
        // the debugfs knob that selects this provider, before the knob exists.
        unsafe(uninit) static FREELIST: SpinLockIrq<FreeList> = FreeList {
            binding: 0,
            pools: 0,
            nr: 0,
            niovs: [const { None }; SIZE],
        };
    }

    /// Initializes the free list's lock.
    ///
    /// # Safety
    ///
    /// Called once, before a pool uses the free-list provider.
    #[export]
    unsafe extern "C" fn net_devmem_rust_freelist_init() {
        // SAFETY: The caller calls this once, before any other use of the lock.
        unsafe { FREELIST.init() };
    }

    impl FreeList {
        fn pop(&mut self) -> Option<ProviderNetIov> {
            // INVARIANT: The last `Some` becomes `None`, and `nr` counts one less.
            self.nr = self.nr.checked_sub(1)?;
            self.niovs[self.nr].take()
        }

        /// Keeps `niov`, a net_iov of the list's binding, or gives it back when the list is full.
        fn push(&mut self, niov: ProviderNetIov) -> Result<(), ProviderNetIov> {
            let Some(slot) = self.niovs.get_mut(self.nr) else {
                return Err(niov);
            };
            // INVARIANT: The first `None` becomes `Some`, and `nr` counts one more.
            *slot = Some(niov);
            self.nr += 1;
            Ok(())
        }

        /// Forgets a pool; the last one gives the list back to the genpool, while it still holds
        /// its reference to the binding.
        fn put(&mut self) {
            self.pools -= 1;
            if self.pools == 0 {
                while let Some(niov) = self.pop() {
                    // SAFETY: The net_iovs on the list came from the genpool of the binding, which
                    // the pool being forgotten still holds a reference to.
                    unsafe { free_to_genpool(niov) };
                }
                // INVARIANT: No pool uses the list, which is empty.
                self.binding = 0;
            }
        }
    }

    struct DevmemFreeList;

    kernel::memory_provider_ops! {
        /// The free-list provider's ops table, which `devmem.c` installs on rx queues when
        /// debugfs' `net_devmem/freelist` and `net_devmem/rust_provider` say so.
        #[no_mangle]
        static net_devmem_rust_freelist_ops: DevmemFreeList;
    }

    // SAFETY: The net_iovs lent are those [`Devmem`] lends, from the genpool of the pool's binding:
    // taken from it here or by an earlier `alloc` for a pool of the same binding (the list serves
    // one binding at a time), and held by the list until they are lent again or the last pool
    // of the binding is destroyed, which returns them to the genpool while `destroy` still holds
    // the binding. A net_iov is on the list, or lent to one pool, never both.
    #[vtable]
    unsafe impl MemoryProvider for DevmemFreeList {
        type Priv = Binding;
        const OPS: &'static MemoryProviderOps<Self> = &net_devmem_rust_freelist_ops;

        fn init(pool: &ProviderPool<Self>) -> Result<DmaSync> {
            let sync = init_pool(pool.priv_data(), pool.order())?;
            let binding = pool.priv_data().map_or(0, |b| b.as_raw().addr());
            {
                let mut list = FREELIST.lock();
                if list.binding != 0 && list.binding != binding {
                    drop(list);
                    // SAFETY: `init_pool` took the reference for this pool, which fails.
                    unsafe { put_binding(pool.priv_data()) };
                    return Err(EBUSY);
                }
                // INVARIANT: The pool holds its reference to the binding.
                list.binding = binding;
                list.pools += 1;
            }
            count_call(PROVIDER, bindings::net_devmem_call_NET_DEVMEM_CALL_INIT);
            Ok(sync)
        }

        fn destroy(pool: &ProviderPool<Self>) {
            FREELIST.lock().put();
            // SAFETY: `init` took the pool's reference, and the pool is gone.
            unsafe { put_binding(pool.priv_data()) };
        }

        fn alloc(
            pool: &ProviderPool<Self>,
            _gfp: Flags,
            _refill: &mut CacheRefill<'_>,
        ) -> Option<ProviderNetIov> {
            let popped = FREELIST.lock().pop();
            let niov = match popped {
                Some(niov) => niov,
                None => alloc_from_genpool(pool.priv_data()?)?,
            };
            count_call(PROVIDER, bindings::net_devmem_call_NET_DEVMEM_CALL_ALLOC);
            Some(niov)
        }

        fn release(_pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>) {
            let Some(niov) = take_back(netmem) else {
                return;
            };
            let full = FREELIST.lock().push(niov);
            if let Err(niov) = full {
                // SAFETY: The net_iov came from the genpool of the binding of the pool releasing
                // it, which holds a reference to the binding.
                unsafe { free_to_genpool(niov) };
            }
        }

        fn nl_fill(binding: &Binding, reply: &NlReply, rxq: Option<&RxQueue>) -> Result {
            Devmem::nl_fill(binding, reply, rxq)
        }

        fn uninstall(binding: &Binding, rxq: &RxQueue) {
            Devmem::uninstall(binding, rxq)
        }
    }
}
