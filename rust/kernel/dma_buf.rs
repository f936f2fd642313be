// SPDX-License-Identifier: GPL-2.0

//! DMA buffers shared between drivers and with user space (dma-buf).
//!
//! A dma-buf shares a buffer through a file descriptor: its exporter owns the memory (see
//! [`exporter`]); importers attach their devices and map the buffer for DMA. See
//! [`Documentation/driver-api/dma-buf.rst`].
//!
//! C header: [`include/linux/dma-buf.h`](srctree/include/linux/dma-buf.h)
//!
//! [`Documentation/driver-api/dma-buf.rst`]: srctree/Documentation/driver-api/dma-buf.rst

use crate::{
    bindings,
    error::to_result,
    prelude::*,
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    types::Opaque, //
};
#[cfg(CONFIG_KUNIT)]
use crate::{
    device::{
        Bound,
        Device, //
    },
    dma::DataDirection,
    error::from_err_ptr,
    scatterlist::SGTable, //
};
use core::ptr::NonNull;

pub mod exporter;
mod pinned;

pub use exporter::{
    Attachment,
    AttachmentData,
    BufferVma,
    Exporter,
    KernelMapping,
    ResvLocked, //
};
pub use pinned::PinnedBuffer;

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

#[cfg(CONFIG_KUNIT)]
impl DmaBuf {
    /// Attaches `dev` to the dma-buf and maps the buffer for it (`dma_buf_attach()`,
    /// `dma_buf_map_attachment_unlocked()`), as an importer does.
    ///
    /// For the KUnit tests of exporters: Rust importers have no abstraction yet.
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
            _dev: dev.into(),
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
#[cfg(CONFIG_KUNIT)]
pub struct Import<'a> {
    buf: &'a DmaBuf,
    /// Keeps the attached device allocated if the `Import` is leaked: the attachment, which
    /// the dma-buf keeps then, points to it.
    _dev: ARef<Device>,
    attach: NonNull<bindings::dma_buf_attachment>,
    sgt: NonNull<bindings::sg_table>,
    dir: DataDirection,
}

#[cfg(CONFIG_KUNIT)]
impl Import<'_> {
    /// Returns the table the exporter mapped for the device.
    pub fn table(&self) -> &SGTable {
        // SAFETY: By the type invariants, `sgt` is the mapping of the attachment, which the
        // importer owns and nothing modifies until `self` is dropped.
        unsafe { SGTable::from_raw(self.sgt.as_ptr()) }
    }
}

#[cfg(CONFIG_KUNIT)]
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
