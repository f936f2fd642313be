// SPDX-License-Identifier: GPL-2.0

//! The buffer of an exporter whose memory is pinned pages.

use super::exporter::{
    Attachment,
    BufferVma,
    KernelMapping,
    ResvLocked, //
};
use crate::{
    bindings,
    device::{
        Bound,
        Device, //
    },
    dma::{
        attrs::DMA_ATTR_SKIP_CPU_SYNC,
        DataDirection, //
    },
    mm::{
        gup::{
            FolioRuns,
            LongTerm,
            PinnedPages, //
        },
        virt::flags as vm_flags,
    },
    new_mutex,
    prelude::*,
    scatterlist::MappedSGTable,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Mutex,
    },
};
use core::ptr::NonNull;
use pin_init::pin_init_scope;

/// The pinned pages of a dma-buf, with what an [`Exporter`] keeps of them between calls.
///
/// It implements what the callbacks of an exporter whose memory is long-term [`PinnedPages`],
/// pinned for writing (udmabuf's), do: map the pages for an attachment ([`PinnedBuffer::map`])
/// and into user space ([`PinnedBuffer::mmap`]), map them into the kernel and unmap them
/// ([`PinnedBuffer::vmap`], [`PinnedBuffer::vunmap`]), and sync them for the CPU
/// ([`PinnedBuffer::begin_cpu_access`], [`PinnedBuffer::end_cpu_access`]) with a table mapped
/// for a device of the exporter's own, `D`, on the first `begin_cpu_access` and kept until the
/// buffer is dropped. The pages are mapped for
/// importers without syncing, as udmabuf maps them. The CPU-access calls serialise on a mutex of
/// the buffer, which they hold while they sync; udmabuf takes the reservation lock instead.
///
/// [`Exporter`]: super::Exporter
///
/// # Invariants
///
/// - `pages` were pinned for writing, and `dev` has a DMA mask.
/// - `pages` and `dev` are neither moved nor changed while `self` lives: nothing but the
///   destructor has mutable access to them.
/// - `cpu_table`, if set, is a table of the pages of `pages`, mapped for `dev`.
/// - `vaddr`, if not zero, is the address of a `vm_map_ram()` mapping of all the pages of
///   `pages`, which nothing else unmaps.
#[pin_data(PinnedDrop)]
pub struct PinnedBuffer<D: AsRef<Device<Bound>>> {
    // Declared first, so that the table is dropped (unmapped) before the pins and `dev`.
    #[pin]
    cpu_table: Mutex<Option<KBox<MappedSGTable<'static>>>>,
    vaddr: Atomic<usize>,
    dev: D,
    pages: PinnedPages<LongTerm>,
}

impl<D: AsRef<Device<Bound>>> PinnedBuffer<D> {
    /// Makes the buffer of `pages`, whose CPU access syncs through `dev`.
    ///
    /// Fails with [`EPERM`] if the pages were not pinned for writing (importers and user space
    /// may write to a dma-buf), and with [`EINVAL`] if `dev` has no DMA mask (see
    /// [`faux::Registration::new_with_dma_mask`]).
    ///
    /// [`faux::Registration::new_with_dma_mask`]: crate::faux::Registration::new_with_dma_mask
    pub fn new(pages: PinnedPages<LongTerm>, dev: D) -> impl PinInit<Self, Error> {
        pin_init_scope(move || {
            if !pages.writable() {
                return Err(EPERM);
            }
            // SAFETY: `dev` is a valid device, whose `dma_mask` pointer is set before it is used
            // for DMA and stays put.
            if unsafe { (*dev.as_ref().as_raw()).dma_mask }.is_null() {
                return Err(EINVAL);
            }
            // INVARIANT: The pages were pinned for writing and `dev` has a DMA mask; no table and
            // no kernel mapping yet.
            Ok(try_pin_init!(Self {
                cpu_table <- new_mutex!(None),
                vaddr: Atomic::new(0),
                dev,
                pages,
            }))
        })
    }

    fn runs(&self) -> Result<FolioRuns<'_>> {
        self.pages.folio_runs(0..self.pages.len()).ok_or(EINVAL)
    }

    /// Maps the pages for the device of `attachment`, for [`Exporter::map`].
    ///
    /// [`Exporter::map`]: super::Exporter::map
    pub fn map<'a>(
        &'a self,
        attachment: &'a Attachment,
        dir: DataDirection,
    ) -> Result<KBox<MappedSGTable<'a>>> {
        attachment.map_pages(self.runs()?, dir, DMA_ATTR_SKIP_CPU_SYNC)
    }

    /// Maps the pages that `vma` covers, from its page offset on, for [`Exporter::mmap`]. A
    /// private mapping fails with [`EINVAL`], as in udmabuf: the pages are shared.
    ///
    /// [`Exporter::mmap`]: super::Exporter::mmap
    pub fn mmap<'a>(&'a self, vma: &BufferVma<'a>) -> Result {
        if vma.flags() & (vm_flags::SHARED | vm_flags::MAYSHARE) == 0 {
            return Err(EINVAL);
        }
        let first = vma.pgoff();
        let end = first
            .checked_add((vma.end() - vma.start()) >> crate::page::PAGE_SHIFT)
            .ok_or(EINVAL)?;
        vma.map_pages(self.pages.folio_runs(first..end).ok_or(EINVAL)?)
    }

    /// Maps all the pages into the kernel address space (`vm_map_ram()`), for [`Exporter::vmap`].
    /// Fails with `EBUSY` while an earlier mapping is in place (the dma-buf core counts the users
    /// of one).
    ///
    /// [`Exporter::vmap`]: super::Exporter::vmap
    pub fn vmap(&self, _locked: &ResvLocked<'_>) -> Result<KernelMapping> {
        let pages = self.pages.as_raw_pages();
        let count = u32::try_from(pages.len()).map_err(|_| EINVAL)?;
        // SAFETY: `pages` holds `count` pinned pages, which stay pinned while `self` lives, and
        // `self` unmaps them before it drops them.
        let vaddr = unsafe {
            bindings::vm_map_ram(
                pages.as_ptr().cast_mut().cast(),
                count,
                bindings::NUMA_NO_NODE,
            )
        };
        let vaddr = NonNull::new(vaddr).ok_or(EINVAL)?;
        // The reservation lock serialises `vmap` and `vunmap`.
        if self
            .vaddr
            .cmpxchg(0, vaddr.as_ptr() as usize, Relaxed)
            .is_err()
        {
            // SAFETY: `vaddr` was mapped above, for `count` pages, and is not handed out.
            unsafe { bindings::vm_unmap_ram(vaddr.as_ptr(), count) };
            return Err(EBUSY);
        }
        // INVARIANT: `vaddr` maps all the pages, and stays until `vunmap` or the drop.
        // SAFETY: `vaddr` maps the whole buffer, in system memory, until `vunmap` unmaps it.
        Ok(unsafe { KernelMapping::from_raw(vaddr) })
    }

    /// Unmaps the mapping [`PinnedBuffer::vmap`] returned, for [`Exporter::vunmap`]; does nothing
    /// if `mapping` is not that mapping (one of another buffer).
    ///
    /// [`Exporter::vunmap`]: super::Exporter::vunmap
    pub fn vunmap(&self, mapping: KernelMapping, _locked: &ResvLocked<'_>) {
        let vaddr = mapping.as_ptr() as usize;
        if self.vaddr.cmpxchg(vaddr, 0, Relaxed).is_ok() {
            // SAFETY: By the type invariants, `vaddr` maps all the pages; it is unmapped once, as
            // it was taken out of `self.vaddr`.
            unsafe { bindings::vm_unmap_ram(vaddr as *const c_void, self.pages.len() as u32) };
        }
    }

    /// Makes what devices wrote to the pages visible to the CPU, in direction `dir`, for
    /// [`Exporter::begin_cpu_access`]. The first call maps the table it syncs.
    ///
    /// [`Exporter::begin_cpu_access`]: super::Exporter::begin_cpu_access
    pub fn begin_cpu_access(&self, dir: DataDirection) -> Result {
        let mut cpu_table = self.cpu_table.lock();
        let table = match &mut *cpu_table {
            Some(table) => table,
            none => {
                // Bidirectional, as every later call syncs it in its own direction.
                // SAFETY: The pages stay pinned and `dev` bound, by the type invariants, until
                // `PinnedDrop::drop` drops the table, first; the table is never leaked.
                let table = unsafe {
                    MappedSGTable::new(
                        self.dev.as_ref(),
                        self.runs()?,
                        DataDirection::Bidirectional,
                        DMA_ATTR_SKIP_CPU_SYNC,
                        GFP_KERNEL,
                    )
                }?;
                // INVARIANT: The table maps the pages of `pages` for `dev`.
                none.insert(table)
            }
        };
        table.sync_for_cpu(dir);
        Ok(())
    }

    /// Makes what the CPU wrote to the pages visible to devices, in direction `dir`, for
    /// [`Exporter::end_cpu_access`]. Fails with `EINVAL` before the first
    /// [`PinnedBuffer::begin_cpu_access`], as udmabuf does.
    ///
    /// [`Exporter::end_cpu_access`]: super::Exporter::end_cpu_access
    pub fn end_cpu_access(&self, dir: DataDirection) -> Result {
        self.cpu_table
            .lock()
            .as_ref()
            .ok_or(EINVAL)?
            .sync_for_device(dir);
        Ok(())
    }
}

#[pinned_drop]
impl<D: AsRef<Device<Bound>>> PinnedDrop for PinnedBuffer<D> {
    fn drop(self: Pin<&mut Self>) {
        // The kernel mapping goes here, and the table with the first field: both before the pins
        // and `dev`, dropped after them. Nothing else can use the buffer, so neither needs a
        // lock or an atomic operation.
        let this = self.project();
        let vaddr = *this.vaddr.get_mut();
        if vaddr != 0 {
            // SAFETY: By the type invariants, `vaddr` maps all the pages, and nothing else
            // unmaps it.
            unsafe { bindings::vm_unmap_ram(vaddr as *const c_void, this.pages.len() as u32) };
        }
    }
}
