// SPDX-License-Identifier: GPL-2.0

#include <asm/sections.h>
#include <net/netdev_lock.h>
#include <net/netmem.h>
#include <net/page_pool/helpers.h>
#include <net/page_pool/memory_provider.h>

#ifdef CONFIG_RUST_PAGE_POOL_ABSTRACTIONS

__rust_helper struct page *rust_helper_netmem_to_page(netmem_ref netmem)
{
	return netmem_to_page(netmem);
}

__rust_helper struct page_pool *rust_helper_netmem_get_pp(netmem_ref netmem)
{
	return netmem_get_pp(netmem);
}

__rust_helper long rust_helper_netmem_pp_ref_count(netmem_ref netmem)
{
	return atomic_long_read(netmem_get_pp_ref_count_ref(netmem));
}

__rust_helper void rust_helper_page_pool_put_full_netmem(struct page_pool *pool,
							 netmem_ref netmem,
							 bool allow_direct)
{
	/*
	 * A PoolNetmem may be put after its Rust PagePool was dropped, which
	 * does not keep the pool's device: page_pool_destroy() must have
	 * unmapped it, which page_pool only does when it can index its pages.
	 */
	BUILD_BUG_ON(!PP_DMA_INDEX_BITS);
	page_pool_put_full_netmem(pool, netmem, allow_direct);
}

__rust_helper void
rust_helper_page_pool_recycle_direct_netmem(struct page_pool *pool,
					    netmem_ref netmem)
{
	page_pool_recycle_direct_netmem(pool, netmem);
}

__rust_helper void rust_helper_netdev_lock(struct net_device *dev)
{
	netdev_lock(dev);
}

__rust_helper void rust_helper_netdev_unlock(struct net_device *dev)
{
	netdev_unlock(dev);
}

__rust_helper void
rust_helper_net_mp_netmem_place_in_cache(struct page_pool *pool,
					 netmem_ref netmem)
{
	net_mp_netmem_place_in_cache(pool, netmem);
}

#ifdef CONFIG_RUST_PAGE_POOL_KUNIT_TEST
/* The KUnit test checks that memory_provider_ops! tables are in rodata. */
__rust_helper bool rust_helper_is_kernel_rodata(unsigned long addr)
{
	return is_kernel_rodata(addr);
}
#endif

#endif
