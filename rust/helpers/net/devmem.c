// SPDX-License-Identifier: GPL-2.0

#if IS_ENABLED(CONFIG_NET_DEVMEM_RUST)

#include "../../../net/core/devmem.h"

__rust_helper bool
rust_helper_net_devmem_dmabuf_binding_get(struct net_devmem_dmabuf_binding *binding)
{
	return net_devmem_dmabuf_binding_get(binding);
}

__rust_helper void
rust_helper_net_devmem_dmabuf_binding_put(struct net_devmem_dmabuf_binding *binding)
{
	net_devmem_dmabuf_binding_put(binding);
}

#endif
