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

/// Counts a call in debugfs, in kernels that compare the two providers.
#[inline]
fn count_call(call: bindings::net_devmem_call) {
    #[cfg(CONFIG_NET_DEVMEM_PROVIDER_TEST)]
    // SAFETY: Only increments a counter.
    unsafe {
        bindings::net_devmem_count_call(
            bindings::net_devmem_provider_NET_DEVMEM_PROVIDER_RUST,
            call,
        )
    };
    #[cfg(not(CONFIG_NET_DEVMEM_PROVIDER_TEST))]
    let _ = call;
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
        let binding = pool.priv_data().ok_or(EINVAL)?;
        if binding.niov_shift().checked_sub(PAGE_SHIFT as u32) != Some(pool.order()) {
            return Err(E2BIG);
        }
        // The pool's reference, dropped by `destroy`. It is a `percpu_ref_tryget()`, which only
        // fails once the count reached zero, and the binding holds its own reference while it is
        // installed on a queue.
        // SAFETY: The binding is valid while installed on the pool's rx queue.
        if !unsafe { bindings::net_devmem_dmabuf_binding_get(binding.as_raw()) } {
            return Err(ENODEV);
        }
        count_call(bindings::net_devmem_call_NET_DEVMEM_CALL_INIT);
        // dma-buf addresses are the importer's mapping: they are not synced like pages.
        Ok(DmaSync::Disable)
    }

    fn destroy(pool: &ProviderPool<Self>) {
        if let Some(binding) = pool.priv_data() {
            // SAFETY: `init` took this reference for the pool, which is now gone.
            unsafe { bindings::net_devmem_dmabuf_binding_put(binding.as_raw()) };
        }
    }

    fn alloc(
        pool: &ProviderPool<Self>,
        _gfp: Flags,
        _refill: &mut CacheRefill<'_>,
    ) -> Option<ProviderNetIov> {
        let binding = pool.priv_data()?;
        // SAFETY: The binding is valid while the pool holds its reference.
        let niov = NonNull::new(unsafe { bindings::net_devmem_alloc_dmabuf(binding.as_raw()) })?;
        count_call(bindings::net_devmem_call_NET_DEVMEM_CALL_ALLOC);
        // SAFETY: The genpool gave this net_iov to us alone, with its page pool fields cleared,
        // and the binding, which owns it, lives as long as the pool holds its reference.
        Some(unsafe { ProviderNetIov::from_raw(niov) })
    }

    fn release(_pool: &ProviderPool<Self>, netmem: ReleasedNetmem<'_>) {
        static NOT_NET_IOV: Atomic<bool> = Atomic::new(false);
        static STILL_HELD: Atomic<bool> = Atomic::new(false);

        // Only net_iovs with no holder left go back to the genpool; anything else is kept away
        // from it, with a warning, as in C.
        match netmem.into_net_iov() {
            // SAFETY: The net_iov came from this binding's genpool and nobody holds it.
            Ok(niov) => unsafe { bindings::net_devmem_free_dmabuf(niov.into_raw()) },
            Err(NotTaken::Page) => warn_once(&NOT_NET_IOV),
            Err(NotTaken::Held) => warn_once(&STILL_HELD),
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
