# SPDX-License-Identifier: GPL-2.0

"""
What devmem_bind.py and devmem_lifetime.py share: udmabuf dma-bufs,
netdevsim ports with queues that memory providers can use, bind-rx
requests, and the choice and check of the devmem memory provider through
the debugfs files of CONFIG_NET_DEVMEM_PROVIDER_TEST kernels.
"""

import fcntl
import os
import struct
import sys
import time

from lib.py import ksft_eq, ksft_gt, ksft_in, ksft_pr, ksft_run, ksft_exit
from lib.py import KsftSkipEx
from lib.py import EthtoolFamily, NetdevFamily, NetdevSimDev
from lib.py import defer, ip

PROVIDER_KNOB = "/sys/kernel/debug/net_devmem/rust_provider"
FREELIST_KNOB = "/sys/kernel/debug/net_devmem/freelist"
PROVIDER_CALLS = "/sys/kernel/debug/net_devmem/calls"
# The providers, as net_devmem/calls names them, and the values of
# PROVIDER_KNOB and FREELIST_KNOB that select them.
PROVIDERS = {
    "c": ("N", "N"),
    "rust": ("Y", "N"),
    "c-freelist": ("N", "Y"),
    "rust-freelist": ("Y", "Y"),
}

NQ = 4                      # RX queues of each netdevsim device
PAGE = os.sysconf("SC_PAGE_SIZE")
DMABUF_PAGES = 64

# include/uapi/linux/udmabuf.h
UDMABUF_CREATE_FMT = "=IIQQ"  # memfd, flags, offset, size
UDMABUF_CREATE = (1 << 30) | (struct.calcsize(UDMABUF_CREATE_FMT) << 16) | \
    (ord('u') << 8) | 0x42   # _IOW('u', 0x42, struct udmabuf_create)
UDMABUF_FLAGS_CLOEXEC = 0x01
F_ADD_SEALS = getattr(fcntl, "F_ADD_SEALS", 1033)
F_SEAL_SHRINK = getattr(fcntl, "F_SEAL_SHRINK", 0x0002)


class DmaBuf:
    """A dma-buf from UDMABUF_CREATE over a sealed memfd of @pages pages."""

    def __init__(self, dev, pages=DMABUF_PAGES):
        self.fd = -1
        self.memfd = os.memfd_create("devmem", os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(self.memfd, pages * PAGE)
            fcntl.fcntl(self.memfd, F_ADD_SEALS, F_SEAL_SHRINK)
            devfd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
            try:
                arg = bytearray(struct.pack(UDMABUF_CREATE_FMT, self.memfd,
                                            UDMABUF_FLAGS_CLOEXEC, 0,
                                            pages * PAGE))
                # A mutable buffer: ioctl() returns the syscall's result,
                # here the new dma-buf fd.
                self.fd = fcntl.ioctl(devfd, UDMABUF_CREATE, arg, True)
            finally:
                os.close(devfd)
            # Names the dma-buf in debugfs, after its fd is gone too.
            self.ino = os.fstat(self.fd).st_ino
        except BaseException:
            self.close()
            raise

    def close_fd(self):
        """Closes the dma-buf fd only, keeping the memfd."""
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self):
        self.close_fd()
        if self.memfd >= 0:
            os.close(self.memfd)
            self.memfd = -1


def new_nsim(cfg, up=True, hds="enabled", hds_thresh=None):
    """A netdevsim port with NQ queues, removed at the end of the case."""
    nsimdev = NetdevSimDev(queue_count=NQ)
    defer(nsimdev.remove)
    nsim = nsimdev.nsims[0]
    rings = {}
    if hds is not None:
        rings["tcp-data-split"] = hds
    if hds_thresh is not None:
        rings["hds-thresh"] = hds_thresh
    if rings:
        cfg.ethnl.rings_set({"header": {"dev-index": nsim.ifindex}, **rings})
    if up:
        ip(f"link set dev {nsim.ifname} up")
    return nsim


def new_dmabuf(cfg, pages=DMABUF_PAGES):
    buf = DmaBuf(cfg.udmabuf, pages)
    defer(buf.close)
    return buf


def bind_req(ifindex, fd, queues, qtype="rx"):
    return {"ifindex": ifindex, "fd": fd,
            "queues": [{"id": q, "type": qtype} for q in queues]}


def bind(nl, nsim, buf, queues):
    """Binds @buf to @queues of @nsim on socket @nl; returns the dmabuf id."""
    rsp = nl.bind_rx(bind_req(nsim.ifindex, buf.fd, queues))
    ksft_in("id", rsp)
    return rsp["id"]


def rxq(cfg, nsim, qid):
    return cfg.nf.queue_get({"ifindex": nsim.ifindex, "id": qid,
                             "type": "rx"})


def mp_pools(cfg, ids=None):
    """Every pool of a binding (of one of @ids), detached or orphaned too."""
    return [p for p in cfg.nf.page_pool_get({}, dump=True)
            if "dmabuf" in p and (ids is None or p["dmabuf"] in ids)]


def wait_for(cond, deadline=5.0):
    """Waits for @cond: pools with netmems out are retried once a second,
    bindings and dma-bufs are freed from work items."""
    end = time.monotonic() + deadline
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


# Provider selection and check

def skip_all(reason):
    print("TAP version 13")
    print(f"1..0 # SKIP {reason}")
    sys.exit(4)


def write_knob(path, value):
    """Writes @value to a debugfs knob and checks that it took."""
    with open(path, "w", encoding="ascii") as f:
        f.write(value)
    with open(path, encoding="ascii") as f:
        now = f.read().strip()
    if now != value:
        print(f"# {path} reads {now!r} after writing {value!r}")
        sys.exit(1)


def read_knobs():
    """The values of PROVIDER_KNOB and FREELIST_KNOB (N for a missing one)."""
    values = []
    for path in (PROVIDER_KNOB, FREELIST_KNOB):
        try:
            with open(path, encoding="ascii") as f:
                values.append(f.read().strip())
        except FileNotFoundError:
            values.append("N")
    return tuple(values)


def select_provider(want):
    """Selects the provider named @want (a key of PROVIDERS) for new
    bindings; returns what to restore."""
    if not os.path.exists(PROVIDER_KNOB):
        # The kernel has one provider, chosen in Kconfig, and no way to
        # tell which.
        skip_all(f"provider {want!r}: no {PROVIDER_KNOB} to select it "
                 "(CONFIG_NET_DEVMEM_PROVIDER_TEST)")
    values = PROVIDERS.get(want)
    if values is None:
        skip_all(f"unknown provider {want!r}: one of {', '.join(PROVIDERS)}")
    if values[1] == "Y" and not os.path.exists(FREELIST_KNOB):
        skip_all(f"provider {want!r}: no {FREELIST_KNOB}")
    old = read_knobs()
    write_knob(PROVIDER_KNOB, values[0])
    if os.path.exists(FREELIST_KNOB):
        write_knob(FREELIST_KNOB, values[1])
    return old


def restore_provider(old):
    """Writes back what select_provider() returned."""
    if old is not None:
        for path, value in zip((PROVIDER_KNOB, FREELIST_KNOB), old):
            if os.path.exists(path):
                write_knob(path, value)


def provider_calls():
    """Returns {provider: [pools initialized, net_iovs allocated]} from the
    provider call counters, or None without them."""
    try:
        with open(PROVIDER_CALLS, encoding="ascii") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    calls = {}
    for line in lines:
        # "<provider> init <n> alloc <n>"
        name, _, inits, _, allocs = line.split()
        calls[name] = [int(inits), int(allocs)]
    return calls


def provider_served(cfg) -> None:
    """The provider selected, and only it, served the pools made since
    @cfg.calls was read, and handed out net_iovs; no other provider was
    called. The counters are global: nothing else may bind dma-bufs
    meanwhile."""
    after = provider_calls()
    if cfg.calls is None or after is None:
        raise KsftSkipEx(f"no {PROVIDER_CALLS}: which provider served is "
                         "not known")
    want = cfg.provider
    if want is None:
        knobs = read_knobs()
        want = next(p for p, v in PROVIDERS.items() if v == knobs)
    ksft_pr(f"calls before {cfg.calls}, after {after}")
    ksft_gt(after[want][0], cfg.calls[want][0],
            f"pools initialized by the {want} provider")
    ksft_gt(after[want][1], cfg.calls[want][1],
            f"net_iovs handed out by the {want} provider")
    for other in after:
        if other != want:
            ksft_eq(after[other], cfg.calls.get(other),
                    f"calls to the {other} provider")


class Cfg:
    """What every case needs: the devices to use and a query socket."""

    def __init__(self, udmabuf, provider):
        self.udmabuf = udmabuf
        self.provider = provider
        self.calls = provider_calls()
        # Only for queries: bindings are made on sockets of their own, so
        # that closing one unbinds.
        self.nf = NetdevFamily()
        self.ethnl = EthtoolFamily()


def run_cases(cases, prepare=None):
    """Runs @cases with the provider DEVMEM_PROVIDER names (none: the
    kernel's) and dma-bufs of UDMABUF_DEV (default /dev/udmabuf), and puts
    the provider back; @prepare runs once the provider is chosen. With -l,
    the cases are only listed."""
    provider = os.environ.get("DEVMEM_PROVIDER")
    udmabuf = os.environ.get("UDMABUF_DEV", "/dev/udmabuf")
    old = None
    if "-l" not in sys.argv[1:]:
        if not os.path.exists(udmabuf):
            skip_all(f"no {udmabuf}")
        if provider is not None:
            old = select_provider(provider)
        if prepare is not None:
            prepare()
    try:
        print(f"# provider {provider or 'default'}, dma-bufs from {udmabuf}")
        ksft_run(cases, args=(Cfg(udmabuf, provider), ))
    finally:
        restore_provider(old)
    ksft_exit()
