#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""The page_pool pair of `cargo xtask bench`, run in the guest.

Runs one round: loads bench_page_pool.ko (tools/testing/selftests/net/bench/
page_pool, with its memory provider arms) REPEAT times per arm, the arms
taking turns, their order rotated by the round's number:

  none  mp03/mp04: a page pool without provider;
  c     mp01/mp02: the pool of a netdevsim rx queue bound to a udmabuf
        dma-buf of hugetlb pages with the C devmem provider;
  rs    the same with the Rust provider (net_devmem/rust_provider=Y);
  c-fl, rs-fl  the same with the free-list variants of the two providers
        (net_devmem/freelist=Y): the provider calls without the genpool;
        for every arm but none, net_devmem/calls must show that the arm's
        provider, and only it, initialized the module's pool and handed
        out net_iovs;
  X-aa  the A/A control of arm X: X again, under another name.

and prints one line per sample: PP <fast-path|provider-path> <arm> <ns>.

Usage: page_pool_mp.py <kselftest dir> <bench_page_pool.ko> <round> <loops> <arm>...
"""

import errno
import fcntl
import os
import re
import struct
import subprocess
import sys
import time

if len(sys.argv) < 6:
    sys.exit(__doc__)
KSFT, KO, ROUND, LOOPS = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ARMS = sys.argv[5:]
sys.path.insert(0, os.path.join(KSFT, "net"))
os.chdir(os.path.join(KSFT, "net"))

# pylint: disable=wrong-import-position
from lib.py import EthtoolFamily, NetdevFamily, NetdevSimDev, NlError, ip  # noqa: E402
from devmem_lib import (  # noqa: E402
    FREELIST_KNOB, PROVIDER_KNOB, provider_calls, read_knobs, restore_provider, select_provider)

# The provider of each arm, as devmem_lib.PROVIDERS names it.
PROVIDER_OF = {"none": None, "c": "c", "rs": "rust", "c-fl": "c-freelist",
               "rs-fl": "rust-freelist"}
CONTROL = "-aa"
REPEAT = 3
# bench_page_pool_simple.c's run_flags bits.
MP01, MP02, MP03, MP04 = 4, 5, 6, 7
# Which test line is which sample, per arm.
LINES = {
    "none": {"mp03-no-provider-fast-path": "fast-path",
             "mp04-no-provider-slow-path": "provider-path"},
    "c": {"mp01-fast-path": "fast-path", "mp02-provider-path": "provider-path"},
}
for _arm in PROVIDER_OF:
    LINES.setdefault(_arm, LINES["c"])
for _arm in ARMS:
    if _arm.removesuffix(CONTROL) not in LINES:
        sys.exit(f"unknown arm {_arm}: one of {', '.join(LINES)}, or one of them + {CONTROL}")
UDMABUF_CREATE = (1 << 30) | (24 << 16) | (ord("u") << 8) | 0x42


def dmabuf(size):
    """A udmabuf dma-buf of @size bytes of a sealed hugetlb memfd.

    2 MiB pages give the devmem binding the same few contiguous chunks in
    every round, so the provider's genpool allocations cost the same: on
    4 KiB pages their number, and the cost, follow where the pages landed.
    """
    try:
        memfd = os.memfd_create("pp_bench", os.MFD_ALLOW_SEALING | os.MFD_HUGETLB)
        os.ftruncate(memfd, size)
        os.posix_fallocate(memfd, 0, size)
    except OSError as e:
        sys.exit(f"page_pool_mp.py: a {size >> 20} MiB hugetlb memfd: {e} (boot with hugepages=)")
    fcntl.fcntl(memfd, 1033, 0x2)  # F_ADD_SEALS, F_SEAL_SHRINK
    # A mutable buffer: ioctl() then returns the new dma-buf fd.
    arg = bytearray(struct.pack("=IIQQ", memfd, 1, 0, size))
    with open("/dev/udmabuf", "rb") as dev:
        fd = fcntl.ioctl(dev.fileno(), UDMABUF_CREATE, arg, True)
    os.close(memfd)
    return fd


def served(arm, before, after):
    """Checks that the provider of @arm, and only it, served the module's
    pools and allocations (debugfs net_devmem/calls)."""
    want = PROVIDER_OF[arm]
    if before is None or after is None:
        sys.exit("no net_devmem/calls: CONFIG_NET_DEVMEM_PROVIDER_TEST is off")
    if want not in after:
        sys.exit(f"arm {arm}: net_devmem/calls has no line for {want}: {after}")
    others = [p for p in after if p != want]
    if (after[want][0] <= before[want][0] or after[want][1] <= before[want][1]
            or any(after[p] != before.get(p) for p in others)):
        sys.exit(f"arm {arm}: provider calls went from {before} to {after}")


def bind(ifindex, buf):
    """Binds @buf to queue 0 of @ifindex; returns the binding's socket.

    A free-list provider serves one binding at a time: until the pools of
    the previous arm's binding are gone (page_pool may hold a pool a little
    longer while netmems are in flight), binding fails with EBUSY.
    """
    for _ in range(50):
        nl = NetdevFamily()
        try:
            nl.bind_rx({"ifindex": ifindex, "fd": buf,
                        "queues": [{"id": 0, "type": "rx"}]})
            return nl
        except NlError as e:
            nl.close()
            if e.error != errno.EBUSY:
                raise
        time.sleep(0.1)
    sys.exit("bind-rx: EBUSY for 5 s: the previous binding's pools are not gone "
             "(see dmesg for page_pool_release_retry)")


def run_module(flags, ifindex):
    """Loads the module with the arms in @flags; returns {test: ns}."""
    subprocess.run(["dmesg", "-C"], check=True)
    args = [f"run_flags={sum(1 << b for b in flags)}", f"loops={LOOPS}"]
    if ifindex:
        args += [f"mp_ifindex={ifindex}", "mp_queue=0"]
    subprocess.run(["insmod", KO] + args, check=True)
    subprocess.run(["rmmod", "bench_page_pool"], check=True)
    log = subprocess.run(["dmesg"], check=True, capture_output=True, text=True).stdout
    if ifindex and "memory provider" not in log:
        sys.exit(f"no memory provider on the queue, module log:\n{log}")
    return {m[1]: float(m[2]) for m in
            re.finditer(r"Type:(\S+) Per elem: \d+ cycles\(tsc\) ([0-9.]+) ns", log)}


def check_knobs():
    """Exits, saying why, unless the kernel can select every provider arm
    asked for; select_provider() would print a TAP skip instead, which the
    host cannot tell from missing samples."""
    want = {PROVIDER_OF[a.removesuffix(CONTROL)] for a in ARMS} - {None}
    knobs = [PROVIDER_KNOB] + ([FREELIST_KNOB] if any(p.endswith("-freelist") for p in want)
                               else [])
    for knob in knobs:
        if want and not os.path.exists(knob):
            sys.exit(f"page_pool_mp.py: no {knob} for the arms {ARMS}: "
                     "build with CONFIG_NET_DEVMEM_PROVIDER_TEST")


def main():
    check_knobs()
    nsim = NetdevSimDev(queue_count=1)
    dev = nsim.nsims[0].dev
    ip(f"link set dev {dev['ifname']} up")
    EthtoolFamily().rings_set({"header": {"dev-index": dev["ifindex"]},
                               "tcp-data-split": "enabled"})
    buf = dmabuf(4 << 20)  # 1024 net_iovs of 4 KiB
    old = read_knobs()
    try:
        shift = ROUND % len(ARMS)
        for name in (ARMS[shift:] + ARMS[:shift]) * REPEAT:
            arm = name.removesuffix(CONTROL)
            if arm == "none":
                times = run_module([MP03, MP04], 0)
            else:
                select_provider(PROVIDER_OF[arm])
                # The binding lives as long as its netlink socket.
                with bind(dev["ifindex"], buf):
                    before = provider_calls()
                    times = run_module([MP01, MP02], dev["ifindex"])
                    served(arm, before, provider_calls())
            for test, what in LINES[arm].items():
                print(f"PP {what} {name} {times[test]}", flush=True)
    finally:
        restore_provider(old)
        os.close(buf)
        nsim.remove()


if __name__ == "__main__":
    main()
