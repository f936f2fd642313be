// SPDX-License-Identifier: GPL-2.0

#include <net/netdev_lock.h>
#include <net/netlink.h>
#include <net/netmem.h>
#include <net/page_pool/helpers.h>

#ifdef CONFIG_PAGE_POOL

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

__rust_helper int rust_helper_nla_put_u32(struct sk_buff *skb, int attrtype,
					  u32 value)
{
	return nla_put_u32(skb, attrtype, value);
}

#endif
