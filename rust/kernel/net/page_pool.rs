// SPDX-License-Identifier: GPL-2.0

//! Page pools and their memory providers.
//!
//! A page pool hands out netmems: pages, or net_iovs that a memory provider installed on an rx
//! queue (a dma-buf bound with devmem, io_uring's zero-copy area) owns and lends to the pool.
//!
//! C headers: [`include/net/page_pool/types.h`](srctree/include/net/page_pool/types.h),
//! [`include/net/page_pool/helpers.h`](srctree/include/net/page_pool/helpers.h),
//! [`include/net/page_pool/memory_provider.h`](srctree/include/net/page_pool/memory_provider.h)
//! and [`include/net/netmem.h`](srctree/include/net/netmem.h).

pub mod netmem;
mod pool;
pub mod provider;

pub use pool::{PagePool, Params, PoolNetmem};
