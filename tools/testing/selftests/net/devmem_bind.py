#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0

"""
Binds udmabuf dma-bufs to netdevsim RX queues with netdev bind-rx and checks
what the kernel reports and refuses: the queue's and the page pool's dmabuf
attributes, the provider pool's allocations (netdevsim's pp_hold), the
cleanup when the binding netlink socket closes (also with a buffer still in
flight), and the errors and extack of bad requests.

Needs no hardware and no remote end. Environment:

  DEVMEM_PROVIDER  "c" or "rust" (default: whichever the kernel uses) the
                   devmem memory provider to bind with, selected through
                   /sys/kernel/debug/net_devmem/rust_provider (Y or N), a
                   SKIP without that file (CONFIG_NET_DEVMEM_PROVIDER_TEST
                   kernels have it); "c-freelist" or "rust-freelist" for
                   their free-list variants (net_devmem/freelist). The last case, provider_served,
                   checks in net_devmem/calls that this provider, and
                   only it, served the pools.
  UDMABUF_DEV      the udmabuf device making the dma-bufs (default
                   /dev/udmabuf), e.g. /dev/udmabuf_rs.
"""

import errno
import os

from lib.py import ksft_pr
from lib.py import ksft_eq, ksft_ge, ksft_in, ksft_not_in, ksft_raises, \
    ksft_true
from lib.py import NetdevFamily, NlError
from lib.py import defer, ip
from devmem_lib import NQ, PAGE, bind, bind_req, mp_pools, \
    new_dmabuf, new_nsim, provider_served, run_cases, rxq, wait_for


# Helpers

def one_binding_at_a_time(cfg):
    """The free-list providers serve the pools of one binding at a time:
    the pools of another fail with EBUSY."""
    return cfg.provider is not None and cfg.provider.endswith("-freelist")


def dev_pools(cfg, nsim):
    """The page pools of @nsim's queues (the filtered dump)."""
    return cfg.nf.page_pool_get({"ifindex": nsim.ifindex}, dump=True)


def attached_pools(cfg, nsim):
    return [p for p in dev_pools(cfg, nsim) if "detach-time" not in p]


def pool_stats(cfg, nsim, pool_id):
    stats = cfg.nf.page_pool_stats_get({"info": {"ifindex": nsim.ifindex}},
                                       dump=True)
    for s in stats:
        if s["info"]["id"] == pool_id:
            return s
    return None


def unused_fd():
    """An fd number this process does not have open."""
    fd = 1000
    while True:
        try:
            os.fstat(fd)
        except OSError as e:
            if e.errno == errno.EBADF:
                return fd
            raise
        fd += 1


def check_nl_error(cm, err, msg=None, bad_attr=None, miss_type=None):
    """Checks the NlError ksft_raises() caught, if it caught one."""
    if cm.exception is None:
        return
    nl_msg = cm.exception.nl_msg
    extack = nl_msg.extack or {}
    ksft_eq(nl_msg.error, -err, comment=str(cm.exception))
    if msg is not None:
        ksft_eq(extack.get("msg"), msg)
    if bad_attr is not None:
        ksft_eq(extack.get("bad-attr"), bad_attr)
    if miss_type is not None:
        ksft_eq(extack.get("miss-type"), miss_type)


def check_unbound(cfg, nsim, dmabuf_id=None):
    """No queue of @nsim reports a dmabuf and no provider pool is left."""
    for q in range(NQ):
        ksft_not_in("dmabuf", rxq(cfg, nsim, q), comment=f"queue {q}")
    gone = wait_for(lambda: not [p for p in dev_pools(cfg, nsim)
                                 if "dmabuf" in p])
    ksft_true(gone, f"provider pools left: {dev_pools(cfg, nsim)}")
    if dmabuf_id is not None:
        gone = wait_for(lambda: not mp_pools(cfg, {dmabuf_id}))
        ksft_true(gone, f"pools of dmabuf {dmabuf_id} left: "
                  f"{mp_pools(cfg, {dmabuf_id})}")


def check_provider_pool(cfg, nsim, dmabuf_id, qid, before_ids):
    """Queue @qid's pool is a new provider pool of @dmabuf_id."""
    q = rxq(cfg, nsim, qid)
    ksft_eq(q.get("dmabuf"), dmabuf_id, comment=f"queue {qid}")
    ksft_in("napi-id", q)
    pools = [p for p in mp_pools(cfg, {dmabuf_id})
             if p.get("napi-id") == q.get("napi-id")]
    ksft_eq(len(pools), 1, comment=f"provider pool of queue {qid}")
    if len(pools) != 1:
        return None
    pool = pools[0]
    ksft_eq(pool.get("ifindex"), nsim.ifindex)
    ksft_not_in("detach-time", pool)
    ksft_eq(pool.get("inflight"), 0)
    ksft_not_in(pool["id"], before_ids, comment="queue restart made a new pool")
    return pool


# Cases

def bind_one_queue(cfg):
    """bind-rx on queue 1 of an up device, then close the socket."""
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    before = {p["id"] for p in attached_pools(cfg, nsim)}
    ksft_ge(len(before), 1, comment="netdevsim has page pools when up")

    with NetdevFamily() as nl:
        dmabuf_id = bind(nl, nsim, buf, [1])
        ksft_ge(dmabuf_id, 1)
        check_provider_pool(cfg, nsim, dmabuf_id, 1, before)
        for q in (0, 2, 3):
            ksft_not_in("dmabuf", rxq(cfg, nsim, q), comment=f"queue {q}")
        ksft_eq(len(mp_pools(cfg, {dmabuf_id})), 1)
        # The provider pool replaced queue 1's pool, it did not add one.
        ksft_eq(len(attached_pools(cfg, nsim)), len(before))

    # Closing the socket unbinds: the queue restarts on a plain pool.
    check_unbound(cfg, nsim, dmabuf_id)
    ksft_eq(len(attached_pools(cfg, nsim)), len(before))


def bind_two_queues(cfg):
    """One binding on queues 0 and 2: a provider pool each."""
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    before = {p["id"] for p in attached_pools(cfg, nsim)}

    with NetdevFamily() as nl:
        dmabuf_id = bind(nl, nsim, buf, [0, 2])
        p0 = check_provider_pool(cfg, nsim, dmabuf_id, 0, before)
        p2 = check_provider_pool(cfg, nsim, dmabuf_id, 2, before)
        ksft_eq(len(mp_pools(cfg, {dmabuf_id})), 2)
        if p0 and p2:
            ksft_true(p0["id"] != p2["id"])
        for q in (1, 3):
            ksft_not_in("dmabuf", rxq(cfg, nsim, q), comment=f"queue {q}")

    check_unbound(cfg, nsim, dmabuf_id)


def two_bindings_one_socket(cfg):
    """Two dma-bufs bound on one socket; closing it unbinds both. The
    free-list providers serve one binding at a time: the second fails."""
    nsim = new_nsim(cfg)
    buf1 = new_dmabuf(cfg)
    buf2 = new_dmabuf(cfg)
    before = {p["id"] for p in attached_pools(cfg, nsim)}

    if one_binding_at_a_time(cfg):
        with NetdevFamily() as nl:
            id1 = bind(nl, nsim, buf1, [1])
            with ksft_raises(NlError) as cm:
                bind(nl, nsim, buf2, [3])
            check_nl_error(cm, errno.EBUSY)
            check_provider_pool(cfg, nsim, id1, 1, before)
            ksft_not_in("dmabuf", rxq(cfg, nsim, 3), comment="queue 3")
        check_unbound(cfg, nsim, id1)
        return

    with NetdevFamily() as nl:
        id1 = bind(nl, nsim, buf1, [1])
        id2 = bind(nl, nsim, buf2, [3])
        ksft_true(id1 != id2, f"dmabuf ids {id1} and {id2}")
        check_provider_pool(cfg, nsim, id1, 1, before)
        check_provider_pool(cfg, nsim, id2, 3, before)

    check_unbound(cfg, nsim, id1)
    check_unbound(cfg, nsim, id2)


def bind_down_then_up(cfg):
    """A binding made while down is installed at open, kept across close."""
    nsim = new_nsim(cfg, up=False)
    buf = new_dmabuf(cfg)

    with NetdevFamily() as nl:
        dmabuf_id = bind(nl, nsim, buf, [1])
        # The queues of a device that is down are not reported.
        with ksft_raises(NlError) as cm:
            rxq(cfg, nsim, 1)
        check_nl_error(cm, errno.ENOENT)
        ksft_eq(dev_pools(cfg, nsim), [], comment="no pools while down")

        ip(f"link set dev {nsim.ifname} up")
        ksft_eq(rxq(cfg, nsim, 1).get("dmabuf"), dmabuf_id)
        check_provider_pool(cfg, nsim, dmabuf_id, 1, set())

        ip(f"link set dev {nsim.ifname} down")
        ksft_true(wait_for(lambda: not mp_pools(cfg, {dmabuf_id})),
                  "provider pool destroyed at close")

        ip(f"link set dev {nsim.ifname} up")
        ksft_eq(rxq(cfg, nsim, 1).get("dmabuf"), dmabuf_id,
                comment="binding survives close")
        check_provider_pool(cfg, nsim, dmabuf_id, 1, set())

    check_unbound(cfg, nsim, dmabuf_id)


def alloc_from_provider(cfg):
    """netdevsim's pp_hold takes a buffer from queue 0's provider pool.

    "inflight" counts the buffers the pool got from the provider and has not
    given back, those waiting in its ring included. The first hold finds
    the pool empty and asks the provider (page_pool_alloc_netmems(): the
    provider path counts no alloc-slow); the put recycles the buffer into
    the ring; the second hold takes it from there again.
    """
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    before = {p["id"] for p in attached_pools(cfg, nsim)}

    def stats(pool_id):
        s = pool_stats(cfg, nsim, pool_id)
        ksft_true(s is not None, f"no stats for pool {pool_id}")
        return s or {}

    def delta(new, old, *keys):
        return sum(new.get(k, 0) - old.get(k, 0) for k in keys)

    def inflight(pool_id):
        p = [p for p in mp_pools(cfg, {dmabuf_id}) if p["id"] == pool_id]
        ksft_eq(len(p), 1, comment=f"pool {pool_id} listed")
        return p[0] if p else {}

    with NetdevFamily() as nl:
        dmabuf_id = bind(nl, nsim, buf, [0])
        # The binding holds its own reference on the dma-buf.
        buf.close()
        pool = check_provider_pool(cfg, nsim, dmabuf_id, 0, before)
        if pool is None:
            return
        pid = pool["id"]
        s = stats(pid)
        ksft_pr(f"stats at bind: {s}")

        given_back = 1
        for i in range(2):
            nsim.dfs_write("pp_hold", "y")
            put = defer(nsim.dfs_write, "pp_hold", "n")
            p = inflight(pid)
            ksft_eq(p.get("inflight"), 1, comment=f"hold {i}")
            ksft_eq(p.get("inflight-mem"), PAGE, comment=f"hold {i}")
            s_held = stats(pid)
            ksft_pr(f"stats after hold {i}: {s_held}")
            if not given_back:
                # Served from the pool's ring, not by the provider.
                ksft_eq(delta(s_held, s, "alloc-fast", "alloc-refill"), 1)

            put.exec()
            s = stats(pid)
            ksft_pr(f"stats after put {i}: {s}")
            # Put outside NAPI: into the ring, or back to the provider
            # if the ring is full.
            ksft_eq(delta(s, s_held, "recycle-ring", "recycle-ring-full"), 1)
            given_back = delta(s, s_held, "recycle-ring-full")
            ksft_eq(inflight(pid).get("inflight"), 1 - given_back,
                    comment=f"put {i}")

    # Unbinding destroys the pool: the buffer in its ring goes back to the
    # provider and the pool disappears at once.
    check_unbound(cfg, nsim, dmabuf_id)


def unbind_with_buffer_in_flight(cfg):
    """Unbinding while pp_hold holds a buffer leaves a detached pool that
    goes away once the buffer is returned."""
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    before = {p["id"] for p in attached_pools(cfg, nsim)}

    nl = NetdevFamily()
    defer(nl.close)
    dmabuf_id = bind(nl, nsim, buf, [0])
    pool = check_provider_pool(cfg, nsim, dmabuf_id, 0, before)
    nsim.dfs_write("pp_hold", "y")
    put = defer(nsim.dfs_write, "pp_hold", "n")

    nl.close()
    ksft_not_in("dmabuf", rxq(cfg, nsim, 0))
    ksft_eq(len(attached_pools(cfg, nsim)), len(before))
    left = mp_pools(cfg, {dmabuf_id})
    ksft_eq(len(left), 1, comment="the provider pool waits for its buffer")
    if left and pool:
        ksft_eq(left[0]["id"], pool["id"])
        ksft_in("detach-time", left[0])
        ksft_eq(left[0].get("inflight"), 1)

    put.exec()
    check_unbound(cfg, nsim, dmabuf_id)


def check_bind_fails(cfg, nsim, queues, err, qtype="rx", **extack):
    """bind-rx of a new dma-buf to @queues fails with @err and @extack, and
    leaves no binding behind."""
    buf = new_dmabuf(cfg)
    with NetdevFamily() as nl:
        with ksft_raises(NlError) as cm:
            nl.bind_rx(bind_req(nsim.ifindex, buf.fd, queues, qtype=qtype))
        check_nl_error(cm, err, **extack)
    check_unbound(cfg, nsim)


def bind_queue_out_of_range(cfg):
    check_bind_fails(cfg, new_nsim(cfg), [NQ], errno.EINVAL,
                     bad_attr=".queues.id")


def bind_tx_queue(cfg):
    check_bind_fails(cfg, new_nsim(cfg), [0], errno.EINVAL, qtype="tx",
                     bad_attr=".queues.type")


def bind_missing_attrs(cfg):
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    with NetdevFamily() as nl:
        req = bind_req(nsim.ifindex, buf.fd, [1])
        for attr in ("queues", "fd", "ifindex"):
            partial = {k: v for k, v in req.items() if k != attr}
            with ksft_raises(NlError) as cm:
                nl.bind_rx(partial)
            check_nl_error(cm, errno.EINVAL, miss_type=attr)
    check_unbound(cfg, nsim)


def bind_bad_device(cfg):
    buf = new_dmabuf(cfg)
    with NetdevFamily() as nl:
        # Loopback has no queue management (no instance lock).
        with ksft_raises(NlError) as cm:
            nl.bind_rx(bind_req(1, buf.fd, [0]))
        check_nl_error(cm, errno.EOPNOTSUPP, bad_attr=".ifindex")

        with ksft_raises(NlError) as cm:
            nl.bind_rx(bind_req(0x7ffffff0, buf.fd, [0]))
        check_nl_error(cm, errno.ENODEV)


def bind_rx_page_size_not_pow2(cfg):
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    with NetdevFamily() as nl:
        req = bind_req(nsim.ifindex, buf.fd, [1])
        req["rx-page-size"] = 3 * PAGE
        with ksft_raises(NlError) as cm:
            nl.bind_rx(req)
        check_nl_error(cm, errno.EINVAL,
                       msg="rx-page-size must be a power of 2",
                       bad_attr=".rx-page-size")
    check_unbound(cfg, nsim)


def bind_not_a_dmabuf(cfg):
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    defer(os.close, null)

    with NetdevFamily() as nl:
        closed = unused_fd()
        for fd, err, what in ((buf.memfd, errno.EINVAL, "the memfd"),
                              (null, errno.EINVAL, "/dev/null"),
                              (closed, errno.EBADF, "a closed fd")):
            with ksft_raises(NlError) as cm:
                nl.bind_rx(bind_req(nsim.ifindex, fd, [1]))
            ksft_pr(f"{what}: {cm.exception}")
            check_nl_error(cm, err)
    check_unbound(cfg, nsim)


def bind_without_header_split(cfg):
    """tcp-data-split is required, set explicitly off or never set."""
    for hds in ("disabled", None):
        check_bind_fails(cfg, new_nsim(cfg, hds=hds), [1], errno.EINVAL,
                         msg="tcp-data-split is disabled")


def bind_with_hds_thresh(cfg):
    check_bind_fails(cfg, new_nsim(cfg, hds_thresh=1), [1], errno.EINVAL,
                     msg="hds-thresh is not zero")


def bind_bound_queue(cfg):
    """A bound queue refuses a second binding, from any socket, and a
    failed binding undoes the queues it had already taken."""
    nsim = new_nsim(cfg)
    buf1 = new_dmabuf(cfg)
    buf2 = new_dmabuf(cfg)
    before = {p["id"] for p in attached_pools(cfg, nsim)}

    with NetdevFamily() as nl1, NetdevFamily() as nl2:
        id1 = bind(nl1, nsim, buf1, [1])
        for nl, who in ((nl2, "another socket"), (nl1, "the same socket")):
            for queues in ([1], [0, 1]):
                with ksft_raises(NlError) as cm:
                    nl.bind_rx(bind_req(nsim.ifindex, buf2.fd, queues))
                if queues[0] == 0 and one_binding_at_a_time(cfg):
                    # Queue 0's pool fails first.
                    check_nl_error(cm, errno.EBUSY)
                else:
                    check_nl_error(
                        cm, errno.EEXIST,
                        msg="designated queue already memory provider bound")
                ksft_pr(f"{who}, queues {queues}: {cm.exception}")
        # The first binding is intact and the failed ones left nothing.
        check_provider_pool(cfg, nsim, id1, 1, before)
        for q in (0, 2, 3):
            ksft_not_in("dmabuf", rxq(cfg, nsim, q), comment=f"queue {q}")
        others = [p for p in dev_pools(cfg, nsim)
                  if "dmabuf" in p and p["dmabuf"] != id1]
        ksft_eq(others, [])
        ksft_eq(len(attached_pools(cfg, nsim)), len(before))

    check_unbound(cfg, nsim, id1)


def reconfig_while_bound(cfg):
    """ethtool refuses what would break a bound queue, until unbound."""
    nsim = new_nsim(cfg)
    buf = new_dmabuf(cfg)
    hdr = {"dev-index": nsim.ifindex}

    with NetdevFamily() as nl:
        dmabuf_id = bind(nl, nsim, buf, [1])

        with ksft_raises(NlError) as cm:
            cfg.ethnl.rings_set({"header": hdr, "tcp-data-split": "disabled"})
        check_nl_error(cm, errno.EINVAL, msg="can't disable tcp-data-split "
                       "while device has memory provider enabled")
        with ksft_raises(NlError) as cm:
            cfg.ethnl.rings_set({"header": hdr, "hds-thresh": 1})
        check_nl_error(cm, errno.EINVAL, msg="can't set non-zero hds_thresh "
                       "while device is memory provider enabled")
        with ksft_raises(NlError) as cm:
            cfg.ethnl.channels_set({"header": hdr, "combined-count": 1})
        check_nl_error(cm, errno.EINVAL, msg="requested channel counts are "
                       "too low for existing memory provider setting (2)")

        ksft_eq(rxq(cfg, nsim, 1).get("dmabuf"), dmabuf_id)
        rings = cfg.ethnl.rings_get({"header": hdr})
        ksft_eq(rings.get("tcp-data-split"), "enabled")

    check_unbound(cfg, nsim, dmabuf_id)
    # Unbound, the same requests go through.
    cfg.ethnl.channels_set({"header": hdr, "combined-count": 1})
    cfg.ethnl.rings_set({"header": hdr, "tcp-data-split": "disabled"})


# Provider and device selection

def main() -> None:
    run_cases([bind_one_queue,
               bind_two_queues,
               two_bindings_one_socket,
               bind_down_then_up,
               alloc_from_provider,
               unbind_with_buffer_in_flight,
               bind_queue_out_of_range,
               bind_tx_queue,
               bind_missing_attrs,
               bind_bad_device,
               bind_rx_page_size_not_pow2,
               bind_not_a_dmabuf,
               bind_without_header_split,
               bind_with_hds_thresh,
               bind_bound_queue,
               reconfig_while_bound,
               provider_served])


if __name__ == "__main__":
    main()
