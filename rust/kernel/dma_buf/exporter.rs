// SPDX-License-Identifier: GPL-2.0

//! Exporting buffers as dma-bufs.
//!
//! An exporter owns the memory of a dma-buf and implements [`Exporter`], whose callbacks the
//! dma-buf core calls when importers map the buffer for their devices, when user space maps it,
//! and around CPU access; [`DmaBuf::export`] makes a dma-buf of a buffer.
//!
//! # Locking
//!
//! The core serialises the callbacks that map the buffer for devices and for the kernel with the
//! dma-buf's reservation lock (`dma_resv_lock()`): [`Exporter::map`], [`Exporter::unmap`],
//! [`Exporter::vmap`] and [`Exporter::vunmap`] run with it held and receive a [`ResvLocked`] as
//! proof, which their trampolines check with lockdep; the table [`Exporter::map`] returned is
//! dropped under the lock too (`unmap_dma_buf`).
//!
//! The others take no lock of the dma-buf. [`AttachmentData::attach`] runs before its attachment is
//! mapped, possibly at the same time as the attach of another device and as the map and unmap of
//! other attachments; the attachment's data is dropped after its last unmap, when the device
//! detaches, possibly on another thread (data shared by every attachment,
//! [`AttachmentData::SHARED`], needs neither). [`Exporter::mmap`] runs with the mmap lock of the
//! mapping process held for writing, and [`Exporter::begin_cpu_access`] and
//! [`Exporter::end_cpu_access`] may run at the same time as any callback, in several threads at
//! once.
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)

use super::DmaBuf;
use crate::{
    bindings,
    device::Device,
    dma::{
        Attrs,
        DataDirection, //
    },
    error::{
        from_err_ptr,
        from_result,
        VTABLE_DEFAULT_ERROR, //
    },
    mm::{
        gup::FolioRuns,
        virt::{
            flags as vm_flags,
            VmaNew, //
        },
    },
    module::this_module,
    page::PAGE_SIZE,
    prelude::*,
    scatterlist::{
        MappedSGTable,
        Stretches, //
    },
    sync::aref::ARef,
    types::{
        ForeignOwnable,
        NotThreadSafe,
        Opaque, //
    },
};
use core::{
    marker::PhantomData,
    ops::Deref,
    ptr::NonNull, //
};

/// Proof that the reservation lock of a dma-buf is held (`dma_resv_lock()`).
///
/// The trampolines of the callbacks that the dma-buf core calls under the lock check that it is
/// held (`dma_resv_assert_held()`) and lend one of these to the callback, for as long as the call
/// lasts. An exporter can ask for it in its own functions that rely on the lock; state that the
/// lock guards must also check that the proof is for the right dma-buf
/// ([`ResvLocked::resv`]), as a proof for one dma-buf says nothing of another's lock.
///
/// # Invariants
///
/// The current task holds the reservation lock `resv` for `'a`.
pub struct ResvLocked<'a> {
    resv: NonNull<bindings::dma_resv>,
    _lock: PhantomData<&'a bindings::dma_resv>,
    _not_send: NotThreadSafe,
}

impl ResvLocked<'_> {
    /// Checks with lockdep that the reservation lock of `buf` is held, and returns the proof.
    ///
    /// # Safety
    ///
    /// `buf` must be a valid dma-buf whose reservation lock the current task holds for the
    /// lifetime of the returned value.
    #[inline]
    unsafe fn new(buf: *mut bindings::dma_buf) -> Self {
        // SAFETY: `buf` is a valid dma-buf, so its reservation object is valid and not NULL.
        let resv = unsafe { NonNull::new_unchecked((*buf).resv) };
        // Without lockdep the assertion is empty: save the call to its helper.
        #[cfg(CONFIG_LOCKDEP)]
        {
            // SAFETY: As above.
            unsafe { bindings::dma_resv_assert_held(resv.as_ptr()) };
        }
        // INVARIANT: The caller holds the lock for the lifetime of the proof.
        Self {
            resv,
            _lock: PhantomData,
            _not_send: NotThreadSafe,
        }
    }

    /// Returns the reservation object whose lock is held, to compare with the one of the
    /// dma-buf whose state the lock guards.
    #[inline]
    pub fn resv(&self) -> *mut bindings::dma_resv {
        self.resv.as_ptr()
    }
}

/// A mapping of a dma-buf into the kernel address space, returned by [`Exporter::vmap`] and given
/// back to [`Exporter::vunmap`]. It is not `Clone`: an exporter cannot keep one it returned.
///
/// # Invariants
///
/// `vaddr` is the start of a mapping of the whole buffer into the kernel address space, which
/// stays valid until [`Exporter::vunmap`] is called with it.
pub struct KernelMapping(NonNull<c_void>);

impl KernelMapping {
    /// Declares `vaddr` the kernel mapping of a dma-buf.
    ///
    /// # Safety
    ///
    /// `vaddr` must be the start of a mapping of the whole buffer (the size given to
    /// [`DmaBuf::export`]) into the kernel address space, in system memory, that the exporter
    /// keeps until [`Exporter::vunmap`] is called with it: importers read and write through it.
    #[inline]
    pub unsafe fn from_raw(vaddr: NonNull<c_void>) -> Self {
        // INVARIANT: By the safety requirements.
        Self(vaddr)
    }

    /// Returns the start of the mapping.
    #[inline]
    pub fn as_ptr(&self) -> *mut c_void {
        self.0.as_ptr()
    }
}

/// A device's attachment to a dma-buf (`struct dma_buf_attachment`).
///
/// # Invariants
///
/// For the lifetime of a `&Attachment`, the attachment is valid, and so is its device.
#[repr(transparent)]
pub struct Attachment(Opaque<bindings::dma_buf_attachment>);

impl Attachment {
    /// # Safety
    ///
    /// `ptr` must point to an attachment that stays valid, with its device, for `'a`.
    unsafe fn from_raw<'a>(ptr: *mut bindings::dma_buf_attachment) -> &'a Self {
        // SAFETY: `Attachment` is a transparent wrapper of `struct dma_buf_attachment`, which the
        // caller guarantees to be valid for `'a`.
        unsafe { &*ptr.cast() }
    }

    /// Returns the attached device, the one the buffer is mapped for.
    pub fn device(&self) -> &Device {
        // SAFETY: By the type invariants, the attachment and its device are valid.
        unsafe { Device::from_raw((*self.0.get()).dev) }
    }

    /// Maps the pages of `runs` for the attached device with `dir` and `attrs`, for
    /// [`Exporter::map`] to return.
    ///
    /// The table borrows the pages for `'a`, as long as the attachment: [`Exporter::map`] can
    /// only return a table of pages that the buffer's data keeps pinned or owns. Pages not pinned
    /// for writing can only be mapped [`DataDirection::ToDevice`] ([`EPERM`] otherwise).
    pub fn map_pages<'a>(
        &'a self,
        runs: FolioRuns<'a>,
        dir: DataDirection,
        attrs: Attrs,
    ) -> Result<KBox<MappedSGTable<'a>>> {
        // SAFETY: `runs` borrows the pins of its pages for `'a`. The device stays usable for DMA
        // while it is attached, which it is for `'a` by the type invariants: the importer gives
        // back a table `map` returned (`unmap_dma_buf`) before it detaches.
        unsafe { MappedSGTable::new(self.device(), runs, dir, attrs, GFP_KERNEL) }
    }
}

/// A new user space mapping of a dma-buf, lent to [`Exporter::mmap`].
///
/// The mapping holds a reference to the dma-buf's file, so the buffer's data outlives it. `'buf`
/// is the lifetime of [`Exporter::mmap`]'s borrow of that data: pages pinned or owned for `'buf`
/// are pinned or owned by the data (or forever), and [`BufferVma::map_pages`] can map them by page
/// frame. The lifetime is invariant, so that pages borrowed for less cannot be passed.
///
/// # Invariants
///
/// The vma is a new mapping of a dma-buf, being set up in its `mmap` callback, and memory borrowed
/// for `'buf` stays valid until the dma-buf is released, after the mapping is gone.
#[repr(transparent)]
pub struct BufferVma<'buf> {
    vma: VmaNew,
    _buf: PhantomData<fn(&'buf ()) -> &'buf ()>,
}

impl<'buf> BufferVma<'buf> {
    /// # Safety
    ///
    /// `vma` must be a new mapping of a dma-buf in its `mmap` callback, valid for `'a`, and memory
    /// borrowed for `'buf` must stay valid until the dma-buf is released.
    unsafe fn from_raw<'a>(vma: *mut bindings::vm_area_struct) -> &'a Self {
        // SAFETY: By the safety requirements, the vma is being set up for `'a`.
        let vma = unsafe { VmaNew::from_raw(vma) };
        // SAFETY: `BufferVma` is a transparent wrapper of `VmaNew`, and its invariants hold by the
        // safety requirements.
        unsafe { &*core::ptr::from_ref(vma).cast::<Self>() }
    }

    /// Maps the pages of `runs` from the start of the vma on, in order, by page frame
    /// (`remap_pfn_range()`), which makes it a `VM_PFNMAP` mapping: one call per physically
    /// contiguous stretch of pages. Fails if they do not fit in the vma.
    ///
    /// A vma is mapped once: a vma that is already a `VM_PFNMAP` mapping fails with [`EBUSY`].
    /// Pages not pinned for writing ([`FolioRuns::writable`]) cannot be mapped writable: a
    /// writable vma fails with [`EACCES`], as `mmap()` of a file not open for writing does, and
    /// others cannot be made writable later.
    pub fn map_pages(&self, runs: FolioRuns<'buf>) -> Result {
        // A second `remap_pfn_range()` of the same range is a `BUG()`.
        if self.vma.flags() & vm_flags::PFNMAP != 0 {
            return Err(EBUSY);
        }
        if !runs.writable() {
            if self.vma.writable() {
                return Err(EACCES);
            }
            self.vma.try_clear_maywrite()?;
        }
        let vma = self.vma.set_pfnmap()?;
        let mut addr = vma.start();
        for (_, pfn, nr) in Stretches::new(runs, usize::MAX) {
            let size = nr.checked_mul(PAGE_SIZE).ok_or(EINVAL)?;
            // SAFETY: The stretch is `nr` pages pinned or owned for `'buf`, which by the type
            // invariants stay so until the dma-buf is released, after the vma, which holds a
            // reference to its file, is gone.
            unsafe { vma.remap_pfn_range(addr, pfn, size) }?;
            addr += size;
        }
        Ok(())
    }
}

impl Deref for BufferVma<'_> {
    type Target = VmaNew;

    #[inline]
    fn deref(&self) -> &VmaNew {
        &self.vma
    }
}

/// The operations of a dma-buf exporter (`struct dma_buf_ops`).
///
/// The buffer's data is a [`Exporter::Ptr`], owned by the dma-buf and dropped when the last
/// reference to the dma-buf goes away (`release`), which happens after every importer detached and
/// every user space mapping is gone.
#[vtable]
pub trait Exporter: Sized {
    /// The pointer to the buffer's data that the dma-buf owns.
    type Ptr: ForeignOwnable + Send + Sync + 'static;

    /// The data of an attachment: made by [`AttachmentData::attach`], lent to
    /// [`Exporter::map`] and [`Exporter::unmap`], and dropped when the device detaches; or one
    /// value every attachment shares ([`AttachmentData::SHARED`]), such as `()` for none.
    type AttachData: AttachmentData<Self>;

    /// Maps the buffer for the device of `attachment` (`map_dma_buf`); `data` is the
    /// attachment's data.
    ///
    /// Called with the reservation lock of the dma-buf held. The importer owns the table until it
    /// gives it back (`unmap_dma_buf`), also under the lock, when [`Exporter::unmap`] takes it.
    ///
    /// The table borrows its pages for `'a`, the call's borrow of the buffer's data and of the
    /// attachment ([`Attachment::map_pages`]).
    fn map<'a>(
        buf: <Self::Ptr as ForeignOwnable>::Borrowed<'a>,
        attachment: &'a Attachment,
        data: &Self::AttachData,
        dir: DataDirection,
        locked: &ResvLocked<'_>,
    ) -> Result<KBox<MappedSGTable<'a>>>;

    /// Takes back `table`, which [`Exporter::map`] made for `attachment` (`unmap_dma_buf`): the
    /// table is dropped, which unmaps it, when this returns. Every table [`Exporter::map`] returns
    /// comes back here, also one the core did not hand to the importer (a map that failed after
    /// `map_dma_buf`, or a table mapped for another device or direction than asked).
    ///
    /// Called with the reservation lock of the dma-buf held.
    fn unmap(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _attachment: &Attachment,
        _data: &Self::AttachData,
        _table: &MappedSGTable<'_>,
        _locked: &ResvLocked<'_>,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer into a user address space (`mmap`).
    ///
    /// Called with the mmap lock of the process held for writing, while `vma` is set up; the core
    /// has checked that `vma` lies within the buffer (its page offset and length). The vma holds a
    /// reference to the dma-buf's file until it is unmapped, so pages that the buffer's data keeps
    /// pinned can be mapped into it ([`BufferVma::map_pages`]).
    fn mmap<'a>(_buf: <Self::Ptr as ForeignOwnable>::Borrowed<'a>, _vma: &BufferVma<'a>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer into the kernel address space (`vmap`).
    ///
    /// Called with the reservation lock of the dma-buf held; the core counts the users of the
    /// mapping, so the exporter sees one `vmap` and then one `vunmap`, and warns once if `vmap`
    /// fails. An exporter that implements one of the two must implement the other: the build
    /// fails otherwise.
    fn vmap(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _locked: &ResvLocked<'_>,
    ) -> Result<KernelMapping> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Undoes [`Exporter::vmap`] (`vunmap`), with the mapping it returned.
    ///
    /// Called with the reservation lock of the dma-buf held.
    fn vunmap(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _mapping: KernelMapping,
        _locked: &ResvLocked<'_>,
    ) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Prepares the buffer for access by the CPU in direction `dir` (`begin_cpu_access`), for
    /// `DMA_BUF_IOCTL_SYNC` or an importer.
    ///
    /// Called without a lock of the dma-buf, possibly in several threads at once and at the same
    /// time as the other callbacks: state it sets up needs a lock of its own.
    fn begin_cpu_access(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _dir: DataDirection,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Ends an access by the CPU in direction `dir` (`end_cpu_access`).
    ///
    /// Called without a lock of the dma-buf, as [`Exporter::begin_cpu_access`], and possibly
    /// without an earlier `begin_cpu_access`.
    fn end_cpu_access(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _dir: DataDirection,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The data an [`Exporter`] keeps for each attachment of a buffer ([`Exporter::AttachData`]).
///
/// `()` is the data of an exporter that keeps none: every attachment shares the one `()`, and the
/// exporter has no `attach` and `detach` callbacks.
pub trait AttachmentData<E: Exporter>: Sized + Send + Sync + 'static {
    /// One value that every attachment shares, instead of one made by
    /// [`AttachmentData::attach`] for each: the exporter then has no `attach` and `detach`
    /// callbacks, and [`AttachmentData::attach`] is never called. `None` by default.
    const SHARED: Option<&'static Self> = None;

    /// Attaches the device of `attachment` to the buffer (`attach`), and returns the attachment's
    /// data; an error refuses the device.
    ///
    /// Called without a lock of the dma-buf, before the attachment is mapped.
    fn attach(
        buf: <E::Ptr as ForeignOwnable>::Borrowed<'_>,
        attachment: &Attachment,
    ) -> Result<Self>;
}

impl<E: Exporter> AttachmentData<E> for () {
    const SHARED: Option<&'static Self> = Some(&());

    #[inline]
    fn attach(_buf: <E::Ptr as ForeignOwnable>::Borrowed<'_>, _attachment: &Attachment) -> Result {
        Ok(())
    }
}

impl DmaBuf {
    /// Exports `data`, a buffer of `size` bytes, as a new dma-buf (`dma_buf_export()`).
    ///
    /// `flags` are the flags of the dma-buf's file, for example `O_RDWR`. If the export fails,
    /// `data` is dropped.
    pub fn export<T: Exporter>(data: T::Ptr, size: usize, flags: u32) -> Result<ARef<Self>> {
        let ptr = data.into_foreign();
        let info = bindings::dma_buf_export_info {
            exp_name: <T::OwnerModule as crate::ModuleMetadata>::NAME.as_char_ptr(),
            owner: this_module::<T::OwnerModule>().as_ptr(),
            ops: &ExporterVTable::<T>::VTABLE,
            size,
            flags: flags as c_int,
            priv_: ptr,
            ..pin_init::zeroed()
        };
        // SAFETY: `info` is a complete export info, with ops that stay valid (a `static` table)
        // and the buffer's data in `priv_`, which the dma-buf owns from now on.
        let buf = match from_err_ptr(unsafe { bindings::dma_buf_export(&info) }) {
            Ok(buf) => buf,
            Err(e) => {
                // SAFETY: The export failed, so `ptr` is still ours, and `release` will never run.
                drop(unsafe { T::Ptr::from_foreign(ptr) });
                return Err(e);
            }
        };
        // SAFETY: `dma_buf_export()` returned a new dma-buf (never NULL) with one reference, which
        // the `ARef` takes over.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(buf.cast())) })
    }
}

/// The `struct dma_buf_ops` of an [`Exporter`].
struct ExporterVTable<T: Exporter>(PhantomData<T>);

impl<T: Exporter> ExporterVTable<T> {
    const VTABLE: bindings::dma_buf_ops = {
        // A mapping that is never unmapped leaks, and `vunmap` alone is never called.
        assert!(
            T::HAS_VMAP == T::HAS_VUNMAP,
            "an Exporter implements vmap and vunmap, or neither"
        );
        Self::OPS
    };

    const OPS: bindings::dma_buf_ops = bindings::dma_buf_ops {
        attach: if <T::AttachData as AttachmentData<T>>::SHARED.is_none() {
            Some(Self::attach)
        } else {
            None
        },
        detach: if <T::AttachData as AttachmentData<T>>::SHARED.is_none() {
            Some(Self::detach)
        } else {
            None
        },
        map_dma_buf: Some(Self::map_dma_buf),
        unmap_dma_buf: Some(Self::unmap_dma_buf),
        release: Some(Self::release),
        mmap: if T::HAS_MMAP { Some(Self::mmap) } else { None },
        vmap: if T::HAS_VMAP { Some(Self::vmap) } else { None },
        vunmap: if T::HAS_VUNMAP {
            Some(Self::vunmap)
        } else {
            None
        },
        begin_cpu_access: if T::HAS_BEGIN_CPU_ACCESS {
            Some(Self::begin_cpu_access)
        } else {
            None
        },
        end_cpu_access: if T::HAS_END_CPU_ACCESS {
            Some(Self::end_cpu_access)
        } else {
            None
        },
        ..pin_init::zeroed()
    };

    /// Converts the direction of a callback; DMA cannot be mapped or synced with `DMA_NONE`.
    fn direction(dir: bindings::dma_data_direction) -> Result<DataDirection> {
        match DataDirection::try_from(dir)? {
            DataDirection::None => Err(EINVAL),
            dir => Ok(dir),
        }
    }

    /// Borrows the buffer's data of a dma-buf of this exporter.
    ///
    /// # Safety
    ///
    /// `buf` must be a valid dma-buf exported by [`DmaBuf::export::<T>`], that is not released
    /// for `'a`.
    unsafe fn data<'a>(buf: *mut bindings::dma_buf) -> <T::Ptr as ForeignOwnable>::Borrowed<'a> {
        // SAFETY: `priv_` holds the `T::Ptr` given to `export`, which `release` takes back only
        // once nothing else uses the dma-buf.
        unsafe { T::Ptr::borrow((*buf).priv_) }
    }

    /// Borrows the data of an attachment of a dma-buf of this exporter.
    ///
    /// # Safety
    ///
    /// `attach` is a valid attachment of a dma-buf exported by [`DmaBuf::export::<T>`], that is
    /// not detached for `'a`.
    unsafe fn attach_data<'a>(attach: *mut bindings::dma_buf_attachment) -> &'a T::AttachData {
        if let Some(shared) = <T::AttachData as AttachmentData<T>>::SHARED {
            return shared;
        }
        // SAFETY: Without `SHARED`, the table has the `attach` callback, so every attachment of
        // such a dma-buf went through it, which stored a `KBox<T::AttachData>` in `priv`: the
        // table is private and only `DmaBuf::export::<T>` installs it, and
        // `dma_buf_dynamic_attach()`, the only maker of attachments, frees the attachment if
        // `attach` fails. `detach` takes the box back, and the attachment is not detached for
        // `'a`.
        unsafe { &*(*attach).priv_.cast::<T::AttachData>() }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid dma-buf of this exporter and a new attachment.
    unsafe extern "C" fn attach(
        buf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The dma-buf is valid during the call.
            let data = unsafe { Self::data(buf) };
            // SAFETY: The attachment and its device stay valid during the call.
            let attachment = unsafe { Attachment::from_raw(attach) };
            // Allocated first: data made for a device is dropped only when the device detaches.
            let slot = KBox::<T::AttachData>::new_uninit(GFP_KERNEL)?;
            let attach_data = KBox::write(slot, T::AttachData::attach(data, attachment)?);
            // SAFETY: `priv` belongs to the exporter (`struct dma_buf_attachment`), and the new
            // attachment is not on the dma-buf's list until the call returns: nothing else reads
            // or writes it. `detach` takes the box back.
            unsafe { (*attach).priv_ = KBox::into_raw(attach_data).cast() };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the dma-buf core from `dma_buf_detach()`, with an attachment of a dma-buf of this
    /// exporter, which it frees right after.
    unsafe extern "C" fn detach(
        _buf: *mut bindings::dma_buf,
        attach: *mut bindings::dma_buf_attachment,
    ) {
        // SAFETY: The attachment went through `attach`, which stored a `KBox<T::AttachData>` in
        // `priv` (see `attach_data`). The attachment is freed after this call, so no map or unmap
        // of it can follow, and none runs now: `dma_buf_detach()`'s caller must have unmapped it.
        drop(unsafe { KBox::from_raw((*attach).priv_.cast::<T::AttachData>()) });
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid attachment of a dma-buf of this exporter.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        let result = (|| {
            let dir = Self::direction(dir)?;
            // SAFETY: The attachment keeps its dma-buf alive. The buffer's data, and the
            // attachment with its device, stay valid beyond the call, for as long as the table
            // `T::map` returns borrows them: the importer gives the table back
            // (`unmap_dma_buf`) before it detaches, and the dma-buf is released after that.
            let data = unsafe { Self::data((*attach).dmabuf) };
            // SAFETY: As above.
            let attachment = unsafe { Attachment::from_raw(attach) };
            // SAFETY: The attachment is valid during the call, so not detached: `dma_buf_detach()`
            // frees it.
            let attach_data = unsafe { Self::attach_data(attach) };
            // SAFETY: The core calls `map_dma_buf` with the reservation lock held
            // (`dma_buf_map_attachment()`), until it returns.
            let locked = unsafe { ResvLocked::new((*attach).dmabuf) };
            let table = T::map(data, attachment, attach_data, dir, &locked)?;
            // The importer gets DMA addresses for its device, in the direction it asked for.
            if !core::ptr::eq(table.device(), attachment.device()) || table.direction() != dir {
                if T::HAS_UNMAP {
                    // SAFETY: As `data` above.
                    let data = unsafe { Self::data((*attach).dmabuf) };
                    T::unmap(data, attachment, attach_data, &table, &locked);
                }
                return Err(EINVAL);
            }
            Ok(table)
        })();
        match result {
            Ok(table) => MappedSGTable::into_raw(table),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a table that `map_dma_buf` returned.
    unsafe extern "C" fn unmap_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        sgt: *mut bindings::sg_table,
        _dir: bindings::dma_data_direction,
    ) {
        // SAFETY: The attachment is valid during the call; the core calls `unmap_dma_buf` with
        // the reservation lock held (`dma_buf_unmap_attachment()`).
        let locked = unsafe { ResvLocked::new((*attach).dmabuf) };
        // SAFETY: `sgt` comes from `MappedSGTable::into_raw` in `map_dma_buf`, and the importer
        // gives it back.
        let table = unsafe { MappedSGTable::from_raw(sgt) };
        if T::HAS_UNMAP {
            // SAFETY: The attachment, its dma-buf and its device are valid during the call, so
            // the attachment is not detached: `dma_buf_detach()` frees it.
            let (data, attachment, attach_data) = unsafe {
                (
                    Self::data((*attach).dmabuf),
                    Attachment::from_raw(attach),
                    Self::attach_data(attach),
                )
            };
            T::unmap(data, attachment, attach_data, &table, &locked);
        }
        // Dropping the table unmaps it, with the lock held.
        drop(table);
    }

    /// # Safety
    ///
    /// Called by the dma-buf core once, when the last reference to the dma-buf is gone.
    unsafe extern "C" fn release(buf: *mut bindings::dma_buf) {
        // SAFETY: `priv_` holds the `T::Ptr` given to `export`, which nothing uses any more.
        drop(unsafe { T::Ptr::from_foreign((*buf).priv_) });
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid dma-buf of this exporter and a new VMA.
    unsafe extern "C" fn mmap(
        buf: *mut bindings::dma_buf,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The dma-buf is valid during the call.
            let data = unsafe { Self::data(buf) };
            // SAFETY: The VMA is a new mapping of the dma-buf, being set up by `mmap` with the mmap
            // write lock held. The buffer's data is dropped when the dma-buf is released, after
            // every mapping of it is gone, as each holds a reference to its file.
            let vma = unsafe { BufferVma::from_raw(vma) };
            T::mmap(data, vma)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid dma-buf of this exporter and a valid map.
    unsafe extern "C" fn vmap(buf: *mut bindings::dma_buf, map: *mut bindings::iosys_map) -> c_int {
        from_result(|| {
            // SAFETY: The dma-buf is valid during the call.
            let data = unsafe { Self::data(buf) };
            // SAFETY: The core calls `vmap` with the reservation lock held (`dma_buf_vmap()`).
            let locked = unsafe { ResvLocked::new(buf) };
            let vaddr = T::vmap(data, &locked)?.0;
            // SAFETY: `map` is valid for writing (`iosys_map_set_vaddr()`).
            unsafe {
                map.write(bindings::iosys_map {
                    is_iomem: false,
                    __bindgen_anon_1: bindings::iosys_map__bindgen_ty_1 {
                        vaddr: vaddr.as_ptr(),
                    },
                })
            };
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a map that `vmap` filled.
    unsafe extern "C" fn vunmap(buf: *mut bindings::dma_buf, map: *mut bindings::iosys_map) {
        // SAFETY: The dma-buf is valid during the call.
        let data = unsafe { Self::data(buf) };
        // SAFETY: `vmap` stored a system memory address in `map`.
        let vaddr = unsafe { (*map).__bindgen_anon_1.vaddr };
        // SAFETY: The core calls `vunmap` with the reservation lock held (`dma_buf_vunmap()`).
        let locked = unsafe { ResvLocked::new(buf) };
        if let Some(vaddr) = NonNull::new(vaddr) {
            // SAFETY: `vaddr` is the mapping `T::vmap` returned, which the core gives back.
            T::vunmap(data, unsafe { KernelMapping::from_raw(vaddr) }, &locked);
        }
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid dma-buf of this exporter.
    unsafe extern "C" fn begin_cpu_access(
        buf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The dma-buf is valid during the call.
            let data = unsafe { Self::data(buf) };
            T::begin_cpu_access(data, Self::direction(dir)?)?;
            Ok(0)
        })
    }

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid dma-buf of this exporter.
    unsafe extern "C" fn end_cpu_access(
        buf: *mut bindings::dma_buf,
        dir: bindings::dma_data_direction,
    ) -> c_int {
        from_result(|| {
            // SAFETY: The dma-buf is valid during the call.
            let data = unsafe { Self::data(buf) };
            T::end_cpu_access(data, Self::direction(dir)?)?;
            Ok(0)
        })
    }
}
