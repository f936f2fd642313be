// SPDX-License-Identifier: GPL-2.0

//! Exporting buffers as dma-bufs.
//!
//! A dma-buf shares a buffer between drivers and with user space through a file descriptor: the
//! exporter owns the memory and implements [`Exporter`]; importers attach their devices and map the
//! buffer for DMA. See [`Documentation/driver-api/dma-buf.rst`].
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! [`Documentation/driver-api/dma-buf.rst`]: srctree/Documentation/driver-api/dma-buf.rst

use crate::{
    bindings,
    device::{
        Bound,
        Device, //
    },
    dma::DataDirection,
    error::{
        from_err_ptr,
        from_result,
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    mm::virt::VmaNew,
    module::this_module,
    prelude::*,
    scatterlist::{
        MappedSGTable,
        SGTable, //
    },
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    types::{
        ForeignOwnable,
        Opaque, //
    },
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

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
}

/// The operations of a dma-buf exporter (`struct dma_buf_ops`).
///
/// The buffer's data is a [`Exporter::Ptr`], owned by the dma-buf and dropped when the last
/// reference to the dma-buf goes away (`release`), which happens after every importer detached and
/// every user space mapping is gone.
#[vtable]
pub trait Exporter: Sized {
    /// The pointer to the buffer's data that the dma-buf owns.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Maps the buffer for the device of `attachment` (`map_dma_buf`).
    ///
    /// Called with the reservation lock of the dma-buf held. The importer owns the table until it
    /// gives it back, when it is dropped (`unmap_dma_buf`).
    fn map(
        buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        attachment: &Attachment,
        dir: DataDirection,
    ) -> Result<KBox<MappedSGTable>>;

    /// Maps the buffer into a user address space (`mmap`).
    fn mmap(_buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>, _vma: &VmaNew) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Maps the buffer into the kernel address space (`vmap`).
    ///
    /// Called with the reservation lock of the dma-buf held; the core counts the users of the
    /// mapping, so the exporter sees one `vmap` and one `vunmap`.
    fn vmap(_buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>) -> Result<NonNull<c_void>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Undoes [`Exporter::vmap`] (`vunmap`).
    fn vunmap(_buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>, _vaddr: NonNull<c_void>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Prepares the buffer for access by the CPU in direction `dir` (`begin_cpu_access`).
    fn begin_cpu_access(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _dir: DataDirection,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Ends an access by the CPU in direction `dir` (`end_cpu_access`).
    fn end_cpu_access(
        _buf: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _dir: DataDirection,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// A dma-buf (`struct dma_buf`).
///
/// # Invariants
///
/// The dma-buf is valid; an `ARef<DmaBuf>` holds a reference to its file.
#[repr(transparent)]
pub struct DmaBuf(Opaque<bindings::dma_buf>);

// SAFETY: The reference to a dma-buf's file can be dropped from any thread.
unsafe impl Send for DmaBuf {}

// SAFETY: `DmaBuf` only offers operations that the dma-buf core serialises itself.
unsafe impl Sync for DmaBuf {}

// SAFETY: The reference count of a dma-buf is the one of its file, and keeps it alive.
unsafe impl AlwaysRefCounted for DmaBuf {
    fn inc_ref(&self) {
        // SAFETY: The dma-buf is valid, so is its file (`get_dma_buf()`).
        unsafe { bindings::get_file((*self.0.get()).file) };
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives up a reference.
        unsafe { bindings::dma_buf_put(obj.cast().as_ptr()) };
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

    /// Returns a raw pointer to the dma-buf, for the importer functions of the C API.
    #[inline]
    pub fn as_raw(&self) -> *mut bindings::dma_buf {
        self.0.get()
    }

    /// Installs the dma-buf in a new file descriptor of the current task, and returns it
    /// (`dma_buf_fd()`). `flags` may be `O_CLOEXEC`.
    ///
    /// The reference of `this` moves to the file descriptor table.
    pub fn into_fd(this: ARef<Self>, flags: u32) -> Result<u32> {
        // SAFETY: `this` is a valid dma-buf.
        let fd = unsafe { bindings::dma_buf_fd(this.as_raw(), flags as c_int) };
        to_result(fd)?;
        // The reference now belongs to the file descriptor table.
        core::mem::forget(this);
        Ok(fd as u32)
    }
}

impl DmaBuf {
    /// Attaches `dev` to the dma-buf and maps the buffer for it (`dma_buf_attach()`,
    /// `dma_buf_map_attachment_unlocked()`), as an importer does.
    pub fn import<'a>(&'a self, dev: &'a Device<Bound>, dir: DataDirection) -> Result<Import<'a>> {
        if dir == DataDirection::None {
            return Err(EINVAL);
        }
        // SAFETY: The dma-buf is valid, and `dev` is a bound device that outlives the attachment,
        // which `Import` detaches before `'a` ends.
        let attach =
            from_err_ptr(unsafe { bindings::dma_buf_attach(self.as_raw(), dev.as_raw()) })?;
        // SAFETY: `attach` is an attachment of this dma-buf.
        let sgt =
            from_err_ptr(unsafe { bindings::dma_buf_map_attachment_unlocked(attach, dir.into()) });
        let sgt = match sgt {
            Ok(sgt) => sgt,
            Err(e) => {
                // SAFETY: `attach` is an attachment of this dma-buf, with no mapping.
                unsafe { bindings::dma_buf_detach(self.as_raw(), attach) };
                return Err(e);
            }
        };
        // INVARIANT: `attach` is an attachment of `self` for `dev`, and `sgt` its mapping with
        // `dir`; neither function returns NULL.
        Ok(Import {
            buf: self,
            // SAFETY: `dma_buf_attach()` returns a valid pointer or an error.
            attach: unsafe { NonNull::new_unchecked(attach) },
            // SAFETY: `dma_buf_map_attachment_unlocked()` returns a valid pointer or an error.
            sgt: unsafe { NonNull::new_unchecked(sgt) },
            dir,
        })
    }
}

/// A dma-buf mapped for DMA by an importing device, unmapped and detached when dropped.
///
/// # Invariants
///
/// `attach` is an attachment of `buf` for a device that outlives `'a`, and `sgt` is its mapping
/// with `dir`.
pub struct Import<'a> {
    buf: &'a DmaBuf,
    attach: NonNull<bindings::dma_buf_attachment>,
    sgt: NonNull<bindings::sg_table>,
    dir: DataDirection,
}

impl Import<'_> {
    /// Returns the table the exporter mapped for the device.
    pub fn table(&self) -> &SGTable {
        // SAFETY: By the type invariants, `sgt` is the mapping of the attachment, which the
        // importer owns and nothing modifies until `self` is dropped.
        unsafe { SGTable::from_raw(self.sgt.as_ptr()) }
    }
}

impl Drop for Import<'_> {
    fn drop(&mut self) {
        // SAFETY: By the type invariants, `sgt` is the mapping of `attach` with `dir`, and
        // `attach` an attachment of `buf`.
        unsafe {
            bindings::dma_buf_unmap_attachment_unlocked(
                self.attach.as_ptr(),
                self.sgt.as_ptr(),
                self.dir.into(),
            );
            bindings::dma_buf_detach(self.buf.as_raw(), self.attach.as_ptr());
        }
    }
}

/// The `struct dma_buf_ops` of an [`Exporter`].
struct ExporterVTable<T: Exporter>(PhantomData<T>);

impl<T: Exporter> ExporterVTable<T> {
    const VTABLE: bindings::dma_buf_ops = bindings::dma_buf_ops {
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

    /// # Safety
    ///
    /// Called by the dma-buf core, with a valid attachment of a dma-buf of this exporter.
    unsafe extern "C" fn map_dma_buf(
        attach: *mut bindings::dma_buf_attachment,
        dir: bindings::dma_data_direction,
    ) -> *mut bindings::sg_table {
        let result = (|| {
            let dir = Self::direction(dir)?;
            // SAFETY: The attachment is valid during the call, and keeps its dma-buf alive.
            let data = unsafe { Self::data((*attach).dmabuf) };
            // SAFETY: The attachment and its device stay valid during the call.
            let attachment = unsafe { Attachment::from_raw(attach) };
            T::map(data, attachment, dir)
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
        _attach: *mut bindings::dma_buf_attachment,
        sgt: *mut bindings::sg_table,
        _dir: bindings::dma_data_direction,
    ) {
        // SAFETY: `sgt` comes from `MappedSGTable::into_raw` in `map_dma_buf`, and the importer
        // gives it back.
        drop(unsafe { MappedSGTable::from_raw(sgt) });
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
            // SAFETY: The VMA is being set up by `mmap`, with the mmap write lock held.
            let vma = unsafe { VmaNew::from_raw(vma) };
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
            let vaddr = T::vmap(data)?;
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
        if let Some(vaddr) = NonNull::new(vaddr) {
            T::vunmap(data, vaddr);
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
