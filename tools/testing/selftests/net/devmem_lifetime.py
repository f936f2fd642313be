#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0

"""
Lifetime of devmem rx bindings and of their memory provider on netdevsim,
and bind-rx under allocation failures. Cases:

  release_order      the binding's socket is closed while netdevsim's
                     pp_hold holds a netmem of the provider pool, then the
                     netmem is returned; and the other way round. The pool
                     waits for the netmem, and the udmabuf's pages stay
                     pinned until the socket, the netmem and the dma-buf fd
                     are all gone.
  device_unregister  the netdevsim device is deleted while bound, idle or
                     with a pp_hold netmem, then the socket is closed.
  process_exit       a child process holding a binding is SIGKILLed, or
                     exits without unbinding; the queue can be bound again.
  rebind_churn       bind/unbind cycles on one queue, with the link going
                     down and up while bound.
  bind_fail_nth      fails the 1st, 2nd, ... fault point (allocation, user
                     copy) of bind-rx with /proc/thread-self/fail-nth, and
                     checks the error and that nothing is left behind.
                     Needs CONFIG_FAILSLAB.
  provider_served    the provider selected, and only it, served the cases
                     above (debugfs net_devmem/calls).

Sockets holding netmems are not covered: netdevsim never receives payload
into provider memory, so no netmem ever reaches a socket.

Needs no hardware and no remote end. Environment, as devmem_bind.py:
DEVMEM_PROVIDER ("c", "rust", or their "-freelist" variants) and
UDMABUF_DEV (default /dev/udmabuf).
"""

import errno
import mmap
import os
import select
import signal
import socket
import struct
import sys
from collections import Counter

from lib.py import ksft_pr, ksft_variants
from lib.py import ksft_eq, ksft_gt, ksft_in, ksft_not_in, ksft_true
from lib.py import KsftSkipEx
from lib.py import NetdevFamily, Netlink
from lib.py import defer, ip
from devmem_lib import NQ, PAGE, DmaBuf, bind, bind_req, mp_pools, \
    new_dmabuf, new_nsim, provider_served, run_cases, rxq, wait_for

BUFINFO = "/sys/kernel/debug/dma_buf/bufinfo"
DEBUGFS = "/sys/kernel/debug"
FAIL_NTH = "/proc/thread-self/fail-nth"

CHURN = 50
FAIL_NTH_MAX = 20000


# Helpers

def check_bound(cfg, nsim, dmabuf_id, qid):
    """Queue @qid reports @dmabuf_id and has an attached pool of it."""
    q = rxq(cfg, nsim, qid)
    ksft_eq(q.get("dmabuf"), dmabuf_id, comment=f"queue {qid}")
    pools = [p for p in mp_pools(cfg, {dmabuf_id})
             if p.get("napi-id") == q.get("napi-id")
             and "detach-time" not in p]
    ksft_eq(len(pools), 1, comment=f"provider pool of queue {qid}")


def check_unbound(cfg, nsim, ids=None):
    """No queue of @nsim reports a dmabuf, and no pool of the bindings @ids
    (None: of any binding) is left."""
    for q in range(NQ):
        ksft_not_in("dmabuf", rxq(cfg, nsim, q), comment=f"queue {q}")
    ksft_true(wait_for(lambda: not mp_pools(cfg, ids)),
              f"provider pools left: {mp_pools(cfg, ids)}")


def pins_held():
    """Pages pinned (FOLL_PIN) system-wide, per-CPU deltas folded."""
    fd = os.open("/proc/sys/vm/stat_refresh", os.O_WRONLY)
    try:
        os.write(fd, b"1")
    except OSError as e:
        # A negative counter: the counters are folded all the same.
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
    stat = {}
    with open("/proc/vmstat", encoding="ascii") as f:
        for line in f:
            key, val = line.split()
            stat[key] = int(val)
    return stat["nr_foll_pin_acquired"] - stat["nr_foll_pin_released"]


def check_pinned(base, pinned, what):
    """The pages of the dma-buf are still pinned."""
    ksft_true(pins_held() - base >= pinned, f"{what}: pages unpinned")


def check_unpinned(base, what):
    """Pins are back where they were before the dma-buf was made."""
    ok = wait_for(lambda: pins_held() == base)
    ksft_true(ok, f"{what}: {pins_held() - base} pins left")
    return ok


def dmabuf_state(ino):
    """(file references, attached devices) of the dma-buf with inode @ino,
    from debugfs; None once it is freed."""
    with open(BUFINFO, encoding="utf-8") as f:
        refs = None
        for line in f:
            fields = line.split("\t")
            # size flags mode count exp_name ino name
            if len(fields) >= 7 and fields[3].isdigit() and \
               fields[5].isdigit():
                refs = int(fields[3]) if int(fields[5]) == ino else None
            elif refs is not None and line.startswith("Total "):
                return refs, int(line.split()[1])
    return None


def check_attached(ino, ndev, what):
    """The dma-buf has @ndev attachments (bindings); @ndev None: it is
    freed."""
    if not os.path.exists(BUFINFO):
        return

    def attached():
        state = dmabuf_state(ino)
        return state[1] if state else None
    ksft_true(wait_for(lambda: attached() == ndev),
              f"{what}: dma-buf {ino} {dmabuf_state(ino)}, want {ndev} "
              "attached devices")


def check_usable(buf, tag):
    """A write through the dma-buf lands in the memfd's pages."""
    with mmap.mmap(buf.fd, PAGE, mmap.MAP_SHARED,
                   mmap.PROT_READ | mmap.PROT_WRITE) as m:
        m[:len(tag)] = tag
    ksft_eq(os.pread(buf.memfd, len(tag), 0), tag, comment="dma-buf usable")


def new_pinned_dmabuf(cfg):
    """A new dma-buf; returns it, the pin count before it and its pins."""
    base = pins_held()
    buf = new_dmabuf(cfg)
    pinned = pins_held() - base
    ksft_gt(pinned, 0, comment="udmabuf pins its pages")
    return buf, base, pinned


# Provider lifetime

@ksft_variants(["socket_first", "hold_first"])
def release_order(cfg, order):
    """Unbind (close the socket) and return pp_hold's netmem, in @order."""
    nsim = new_nsim(cfg)
    buf, base, pinned = new_pinned_dmabuf(cfg)
    ino = buf.ino
    nl = NetdevFamily()
    defer(nl.close)
    dmabuf_id = bind(nl, nsim, buf, [0])
    check_bound(cfg, nsim, dmabuf_id, 0)
    nsim.dfs_write("pp_hold", "y")
    put = defer(nsim.dfs_write, "pp_hold", "n")

    if order == "socket_first":
        nl.close()
        ksft_not_in("dmabuf", rxq(cfg, nsim, 0))
        left = mp_pools(cfg, {dmabuf_id})
        ksft_eq(len(left), 1, comment="the pool waits for the held netmem")
        if left:
            ksft_in("detach-time", left[0])
            ksft_eq(left[0].get("inflight"), 1)
        # The pool's reference keeps the binding, so the dma-buf mapped.
        check_attached(ino, 1, "unbound, netmem held")
        check_usable(buf, b"socket_first")
        buf.close_fd()
        check_attached(ino, 1, "dma-buf fd closed, netmem held")
        check_pinned(base, pinned, "dma-buf fd closed, netmem held")
        put.exec()
    else:
        put.exec()
        # Back in the pool's ring: the pool and the binding are intact.
        check_bound(cfg, nsim, dmabuf_id, 0)
        nl.close()
        check_attached(ino, 0, "netmem returned, unbound")
        check_usable(buf, b"hold_first")
        check_pinned(base, pinned, "unbound, dma-buf fd open")
        buf.close_fd()

    ksft_true(wait_for(lambda: not mp_pools(cfg, {dmabuf_id})),
              "provider pool freed")
    check_attached(ino, None, "all released")
    check_unpinned(base, "all released")
    check_unbound(cfg, nsim, {dmabuf_id})


@ksft_variants(["idle", "held"])
def device_unregister(cfg, state):
    """Delete the netdevsim device while bound, then close the socket."""
    nsim = new_nsim(cfg)
    buf, base, pinned = new_pinned_dmabuf(cfg)
    nl = NetdevFamily()
    defer(nl.close)
    dmabuf_id = bind(nl, nsim, buf, [0])
    check_bound(cfg, nsim, dmabuf_id, 0)
    if state == "held":
        # nsim_destroy() returns it, after unregistering the netdev.
        nsim.dfs_write("pp_hold", "y")

    nsim.nsimdev.remove()
    ksft_true(wait_for(lambda: not mp_pools(cfg, {dmabuf_id})),
              f"pools left: {mp_pools(cfg, {dmabuf_id})}")
    # The binding detached from the device as it went away: the device
    # may be freed before the binding is.
    check_attached(buf.ino, 0, "device gone, socket open")
    check_pinned(base, pinned, "device gone, socket open")

    nl.close()
    check_usable(buf, b"unregistered")
    check_pinned(base, pinned, "unbound, dma-buf fd open")
    ino = buf.ino
    buf.close()
    # The pins go with the dma-buf, which the binding held.
    check_unpinned(base, "dma-buf fd closed")
    check_attached(ino, None, "dma-buf fd closed")


def _child_bind(udmabuf, ifindex, qid, r_cmd, w_rep):
    """Child: binds a dma-buf of its own, reports "<id> <ino>", then waits
    for SIGKILL or for the parent's go to exit without unbinding."""
    status = 1
    try:
        buf = DmaBuf(udmabuf)
        nl = NetdevFamily()
        rsp = nl.bind_rx(bind_req(ifindex, buf.fd, [qid]))
        os.write(w_rep, f"{rsp['id']} {buf.ino}\n".encode())
        os.read(r_cmd, 1)
        status = 0
    except BaseException as e:  # pylint: disable=broad-exception-caught
        try:
            os.write(w_rep, f"error {e!r}\n".encode())
        except OSError:
            pass
    os._exit(status)  # no cleanup of the parent's: no unbind either


def _reap(pid):
    """Kills and reaps child @pid, unless it was reaped already."""
    try:
        if os.waitpid(pid, os.WNOHANG) == (0, 0):
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def spawn_binder(cfg, nsim, qid):
    """Forks a _child_bind(); returns its pid, its report (dmabuf id,
    dma-buf inode) and the pipe to tell it to exit; None if it failed."""
    r_rep, w_rep = os.pipe()
    r_cmd, w_cmd = os.pipe()
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        os.close(r_rep)
        os.close(w_cmd)
        _child_bind(cfg.udmabuf, nsim.ifindex, qid, r_cmd, w_rep)
    os.close(w_rep)
    os.close(r_cmd)
    defer(_reap, pid)
    defer(os.close, w_cmd)

    rep = b""
    if select.select([r_rep], [], [], 10)[0]:
        rep = os.read(r_rep, 4096)
    os.close(r_rep)
    words = rep.decode().split()
    if len(words) != 2 or not all(w.isdigit() for w in words):
        ksft_true(False, f"child did not bind: {rep!r}")
        return None
    return pid, (int(words[0]), int(words[1])), w_cmd


@ksft_variants(["kill", "exit"])
def process_exit(cfg, how):
    """A process holding a binding dies; its binding goes with it."""
    nsim = new_nsim(cfg)
    qid = 2
    base = pins_held()
    child = spawn_binder(cfg, nsim, qid)
    if child is None:
        return
    pid, (dmabuf_id, ino), w_cmd = child
    check_bound(cfg, nsim, dmabuf_id, qid)

    if how == "kill":
        os.kill(pid, signal.SIGKILL)
    else:
        os.write(w_cmd, b"x")
    _, status = os.waitpid(pid, 0)
    if how == "kill":
        ksft_true(os.WIFSIGNALED(status) and
                  os.WTERMSIG(status) == signal.SIGKILL, f"status {status}")
    else:
        ksft_true(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
                  f"status {status}")

    # Exit closed the socket, which unbound: the old provider is gone.
    check_unbound(cfg, nsim, {dmabuf_id})
    check_attached(ino, None, "child's dma-buf")
    check_unpinned(base, "child's dma-buf")

    buf = new_dmabuf(cfg)
    with NetdevFamily() as nl:
        new_id = bind(nl, nsim, buf, [qid])
        check_bound(cfg, nsim, new_id, qid)
    check_unbound(cfg, nsim, {new_id})
    buf.close()
    check_unpinned(base, "all closed")


def rebind_churn(cfg):
    """CHURN bind/unbind cycles of one dma-buf on queue 1; binds and unbinds
    alternate between an up and a down device, which flips while bound."""
    nsim = new_nsim(cfg)
    npools = len(cfg.nf.page_pool_get({"ifindex": nsim.ifindex}, dump=True))
    buf, base, pinned = new_pinned_dmabuf(cfg)
    ids = set()
    up = True

    def bound_to(dmabuf_id):
        if not up:
            return True   # a down device reports no queues
        return rxq(cfg, nsim, 1).get("dmabuf") == dmabuf_id

    for i in range(CHURN):
        with NetdevFamily() as nl:
            dmabuf_id = bind(nl, nsim, buf, [1])
            ids.add(dmabuf_id)
            ok = bound_to(dmabuf_id)
            up = not up
            ip(f"link set dev {nsim.ifname} {'up' if up else 'down'}")
            ok = ok and bound_to(dmabuf_id)
        ok = ok and bound_to(None)
        if not ok:
            ksft_true(False, f"cycle {i}: queue 1 bound to "
                      f"{rxq(cfg, nsim, 1).get('dmabuf')}, not {dmabuf_id}")
            break
    if not up:
        ip(f"link set dev {nsim.ifname} up")

    check_unbound(cfg, nsim, ids)
    pools = cfg.nf.page_pool_get({"ifindex": nsim.ifindex}, dump=True)
    ksft_eq(len(pools), npools, comment=f"pools {pools}")
    check_attached(buf.ino, 0, "after churn")
    check_pinned(base, pinned, "after churn, dma-buf fd open")
    buf.close()
    check_unpinned(base, "after churn")


# Fault injection

# What bind-rx may fail with when one fault point fails, by where the error
# shows. send(): netlink_sendmsg() could not allocate the request's skb
# (ENOBUFS) or copy it in (EFAULT, fail_usercopy). recv(): netlink_ack()
# could not allocate the ack and set ENOBUFS on the socket, or a reply
# could not be copied out (EFAULT). The ack: every allocation of genetlink,
# netdev-genl, devmem, dma-buf, udmabuf, the queue restart and page pools
# fails with ENOMEM. (gen_pool_add_owner() would fail with EINVAL, from
# net_devmem_bind_dmabuf(), but it only allocates with vmalloc(), which the
# sweep spares.)
FAULT_ERRNOS = {
    "send": {errno.ENOBUFS, errno.EFAULT},
    "recv": {errno.ENOBUFS, errno.EFAULT},
    "ack": {errno.ENOMEM},
}


def dfs_set(saved, path, value):
    """Writes @value to debugfs file @path, saving the old value first."""
    with open(path, encoding="ascii") as f:
        old = f.read().strip()
    saved.setdefault(path, old)
    with open(path, "w", encoding="ascii") as f:
        f.write(value)


def dfs_restore(saved):
    """Undoes dfs_set()s."""
    for path, old in reversed(list(saved.items())):
        with open(path, "w", encoding="ascii") as f:
            f.write(old)


def setup_fault_injection(saved):
    """Lets every allocation of this thread be failed through fail-nth,
    quietly (verbose 0)."""
    for path in (FAIL_NTH, f"{DEBUGFS}/failslab"):
        if not os.path.exists(path):
            raise KsftSkipEx(f"no {path}")
    # A failed allocation may still dump the stack (warn_alloc() of
    # vmalloc(), percpu): those reports follow an "allocation failure"
    # header, which the harness tells from a crash.
    for attr in ("failslab", "fail_page_alloc"):
        d = f"{DEBUGFS}/{attr}"
        if os.path.isdir(d):
            dfs_set(saved, f"{d}/ignore-gfp-wait", "N")
    dfs_set(saved, f"{DEBUGFS}/failslab/cache-filter", "N")
    if os.path.isdir(f"{DEBUGFS}/fail_page_alloc"):
        dfs_set(saved, f"{DEBUGFS}/fail_page_alloc/ignore-gfp-highmem", "N")
        dfs_set(saved, f"{DEBUGFS}/fail_page_alloc/min-order", "0")
    for name in os.listdir(DEBUGFS):
        verbose = f"{DEBUGFS}/{name}/verbose"
        if name.startswith("fail") and os.path.exists(verbose):
            dfs_set(saved, verbose, "0")


def fail_nth_read(fd):
    """The fault points left to count down: 0 once the armed one failed."""
    try:
        return int(os.pread(fd, 32, 0))
    except OSError as e:
        # Copying the value out took the last fault point: it was 1.
        if e.errno != errno.EFAULT:
            raise
        return 1


def fail_nth_clear(fd):
    """Disarms fail-nth."""
    for _ in range(2):
        try:
            os.pwrite(fd, b"0", 0)
            return
        except OSError as e:
            # Copying "0" in took the last fault point; now it is 0.
            if e.errno != errno.EFAULT:
                raise
    os.pwrite(fd, b"0", 0)


def nl_acks(data):
    """[(errno, extack msg)] of the acks in netlink messages @data."""
    acks = []
    off = 0
    while off + 16 <= len(data):
        length, typ, flags = struct.unpack_from("=IHH", data, off)
        if length < 16 or off + length > len(data):
            break
        if typ == Netlink.NLMSG_ERROR:
            err = -struct.unpack_from("=i", data, off + 16)[0]
            msg = None
            # nlmsgerr: error and the request's header (NETLINK_CAP_ACK)
            tlv = off + 36
            while flags & Netlink.NLM_F_ACK_TLVS and tlv + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, tlv)
                if alen < 4:
                    break
                if atype & ~Netlink.NLA_TYPE_MASK == Netlink.NLMSGERR_ATTR_MSG:
                    msg = bytes(data[tlv + 4:tlv + alen]).rstrip(b"\0")
                    msg = msg.decode(errors="replace")
                tlv += (alen + 3) & ~3
            acks.append((err, msg))
        off += (length + 3) & ~3
    return acks


def bind_nth(fail_fd, nth, nl, req, rbuf):
    """Sends bind-rx @req on @nl with this thread's @nth fault point armed.

    Returns whether the fault point was reached, the errors as (errno,
    "send"/"recv"/"ack", extack message), and whether an ack of success
    came. The request is built and the reply buffer touched before
    arming, so that the send and the receives are the only kernel work in
    between: genetlink runs the handler in the sender's context.
    """
    # pylint: disable=protected-access
    msg = nl._encode_message(nl.ops["bind-rx"], req, None, 1)
    view = memoryview(rbuf)
    errs = []
    got = 0
    os.pwrite(fail_fd, b"%d" % nth, 0)
    try:
        nl.sock.send(msg)
    except OSError as e:
        errs.append((e.errno, "send", None))
    # All of the replies are queued by the time send() returns.
    for _ in range(8):
        try:
            got += nl.sock.recv_into(view[got:], 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        except OSError as e:
            # ENOBUFS: an ack was dropped; EFAULT: a reply was.
            errs.append((e.errno, "recv", None))
    left = fail_nth_read(fail_fd)
    fail_nth_clear(fail_fd)

    acks = nl_acks(view[:got])
    errs += [(err, "ack", msg) for err, msg in acks if err]
    return left == 0, errs, any(not err for err, _ in acks)


class FailNthSweep:
    """State of bind_fail_nth(): the device, the fail-nth fd, and what a
    step must leave behind."""

    def __init__(self, cfg, nsim, fail_fd):
        self.cfg = cfg
        self.nsim = nsim
        self.fail_fd = fail_fd
        self.rbuf = bytearray(b"\xa5" * 65536)
        self.stale = {p["id"] for p in mp_pools(cfg)}
        self.base = pins_held()
        self.errors = Counter()

    def lingering(self):
        return [p for p in mp_pools(self.cfg) if p["id"] not in self.stale]

    def step(self, nth):
        """Binds a new dma-buf to queues 1 and 3 on a new socket with the
        @nth fault point armed, then closes both. Returns whether the fault
        point was reached and whether the step passed its checks."""
        buf = DmaBuf(self.cfg.udmabuf)
        try:
            with NetdevFamily() as nl:
                nl.sock.bind((0, 0))    # no autobind in the window
                req = bind_req(self.nsim.ifindex, buf.fd, [1, 3])
                hit, errs, acked = bind_nth(self.fail_fd, nth, nl, req,
                                            self.rbuf)
        finally:
            buf.close()

        checks = []
        for err, where, msg in errs:
            self.errors[f"{where} {errno.errorcode.get(err, err)}"] += 1
            checks.append((hit and err in FAULT_ERRNOS[where],
                           f"{where}: {os.strerror(err)} ({msg})"))
        if hit:
            checks.append((acked or bool(errs), "neither ack nor error"))
        else:
            checks.append((acked, "not acked"))
        for q in range(NQ):
            checks.append(("dmabuf" not in rxq(self.cfg, self.nsim, q),
                           f"queue {q} still bound"))
        checks.append((wait_for(lambda: not self.lingering()),
                       f"pools left: {self.lingering()}"))
        checks.append((wait_for(lambda: pins_held() == self.base),
                       f"{pins_held() - self.base} pins left"))

        what = f"fault {nth}" if hit else f"nth {nth}, no fault"
        for good, comment in checks:
            ksft_true(good, f"{what}: {comment}")
        return hit, all(good for good, _ in checks)


def bind_fail_nth(cfg):
    """Sweeps the fault points of a bind-rx of two queues."""
    saved = {}
    defer(dfs_restore, saved)
    setup_fault_injection(saved)
    fail_fd = os.open(FAIL_NTH, os.O_RDWR | os.O_CLOEXEC)
    defer(os.close, fail_fd)

    sweep = FailNthSweep(cfg, new_nsim(cfg), fail_fd)
    if sweep.base:
        ksft_pr(f"{sweep.base} pages pinned by others")
    faults = 0
    for nth in range(1, FAIL_NTH_MAX + 1):
        hit, ok = sweep.step(nth)
        faults += hit
        if not hit or not ok:
            break
    else:
        ksft_true(False, f"more than {FAIL_NTH_MAX} fault points")
    ksft_pr(f"{faults} faults injected, errors: {dict(sweep.errors)}")


def note_bufinfo():
    if not os.path.exists(BUFINFO):
        print(f"# no {BUFINFO}: dma-buf attachments not checked")


def main() -> None:
    run_cases([release_order,
               device_unregister,
               process_exit,
               rebind_churn,
               bind_fail_nth,
               provider_served],
              prepare=note_bufinfo)


if __name__ == "__main__":
    main()
