// SPDX-License-Identifier: GPL-2.0

//! udmabuf_rs: dma-bufs made of memfd pages, in Rust.
//!
//! `/dev/udmabuf_rs` has the uAPI of `/dev/udmabuf` ([`include/uapi/linux/udmabuf.h`]) and the
//! same checks and errors as the C driver (drivers/dma-buf/udmabuf.c), but pins the pages with
//! `pin_user_pages_fd()`: one long-term pin per page, taken per folio, so that the pages leave
//! `ZONE_MOVABLE` and CMA, and released dirty (`unpin_user_pages_dirty_lock()`), as pages that a
//! device or a mapping of the buffer may have written must be.
//!
//! Unlike the C driver, it can charge the pinned pages to the creator's `RLIMIT_MEMLOCK`
//! (`udmabuf_rs.account_memlock=1`), so that the total a user pins is bounded and not only the
//! size of each buffer. The whole buffer is charged before anything is allocated or pinned, so a
//! request over the limit fails at once with `ENOMEM`, also where the C driver would have refused
//! one of its items first for another reason. The charge is returned when the buffer is released.
//!
//! [`include/uapi/linux/udmabuf.h`]: srctree/include/uapi/linux/udmabuf.h

use core::mem::size_of;
use kernel::{
    device::{
        Bound,
        Device, //
    },
    dma::{
        DataDirection,
        DmaMask, //
    },
    dma_buf::{
        Attachment,
        BufferVma,
        DmaBuf,
        Exporter,
        KernelMapping,
        PinnedBuffer,
        ResvLocked, //
    },
    faux,
    fs::{
        file::flags::{
            O_ACCMODE,
            O_CLOEXEC,
            O_RDWR, //
        },
        File,
        LocalFile, //
    },
    ioctl::_IOW,
    miscdevice::{
        MiscDevice,
        MiscDeviceOptions,
        MiscDeviceRegistration, //
    },
    mm::gup::{
        Accounting,
        PinFlags,
        PinnedPages, //
    },
    page::{
        PAGE_SHIFT,
        PAGE_SIZE, //
    },
    prelude::*,
    scatterlist::MappedSGTable,
    sizes::SZ_1M,
    sync::{
        aref::ARef,
        SetOnce, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    uapi,
};
use pin_init::pin_init_scope;

module! {
    type: UdmabufModule,
    name: "udmabuf_rs",
    authors: ["pinfd dev"],
    description: "userspace dmabuf misc driver, in Rust",
    license: "GPL",
    imports_ns: ["DMA_BUF"],
    params: {
        list_limit: i32 {
            default: 1024,
            description: "udmabuf_create_list->count limit. Default is 1024.",
        },
        size_limit_mb: i32 {
            default: i32::MAX,
            description: "Max size of a dmabuf, in megabytes. Default is INT_MAX.",
        },
        account_memlock: u8 {
            default: 0,
            description: "Charge buffers to their creator's RLIMIT_MEMLOCK. Default is 0, off.",
        },
    },
}

kernel::from_bytes_struct! {
    /// `struct udmabuf_create`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Create {
        memfd: u32,
        flags: u32,
        offset: u64,
        size: u64,
    }

    /// `struct udmabuf_create_list`, without its items.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CreateList {
        flags: u32,
        count: u32,
    }

    /// `struct udmabuf_create_item`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct CreateItem {
        memfd: u32,
        pad: u32,
        offset: u64,
        size: u64,
    }
}

const _: () = {
    assert!(size_of::<Create>() == size_of::<uapi::udmabuf_create>());
    assert!(size_of::<CreateList>() == size_of::<uapi::udmabuf_create_list>());
    assert!(size_of::<CreateItem>() == size_of::<uapi::udmabuf_create_item>());
};

const UDMABUF_CREATE: u32 = _IOW::<uapi::udmabuf_create>('u' as u32, 0x42);
const UDMABUF_CREATE_LIST: u32 = _IOW::<uapi::udmabuf_create_list>('u' as u32, 0x43);

#[pin_data]
struct UdmabufModule {
    #[pin]
    miscdev: MiscDeviceRegistration<UdmabufFile>,
}

/// The device that CPU access maps buffers for (`DMA_BUF_IOCTL_SYNC`), registered before the misc
/// device and never unregistered: the driver is built in.
static CPU_DEVICE: SetOnce<faux::Registration> = SetOnce::new();

/// Returns the device that CPU access maps buffers for.
fn cpu_device() -> Result<&'static Device<Bound>> {
    let faux: &faux::Device<Bound> = CPU_DEVICE.as_ref().ok_or(ENODEV)?.as_ref();
    Ok(faux.as_ref())
}

impl kernel::InPlaceModule for UdmabufModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        pin_init_scope(|| {
            let cpu_device =
                faux::Registration::new_with_dma_mask(c"udmabuf_rs", None, DmaMask::new::<64>())?;
            // The only call: the static is empty, and takes the registration.
            CPU_DEVICE.populate(cpu_device);
            let options = MiscDeviceOptions {
                name: c"udmabuf_rs",
            };
            Ok(try_pin_init!(Self {
                miscdev <- MiscDeviceRegistration::register(options),
            }))
        })
    }
}

/// An open `/dev/udmabuf_rs`.
struct UdmabufFile {
    /// The device that CPU access of its buffers maps for, looked up once.
    cpu_dev: &'static Device<Bound>,
}

#[vtable]
impl MiscDevice for UdmabufFile {
    type Ptr = KBox<Self>;

    fn open(_file: &File, _misc: &MiscDeviceRegistration<Self>) -> Result<KBox<Self>> {
        Ok(KBox::new(
            Self {
                cpu_dev: cpu_device()?,
            },
            GFP_KERNEL,
        )?)
    }

    fn ioctl(me: &Self, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            UDMABUF_CREATE => {
                let create: Create = UserSlice::new(UserPtr::from_addr(arg), size_of::<Create>())
                    .reader()
                    .read()?;
                let item = CreateItem {
                    memfd: create.memfd,
                    pad: 0,
                    offset: create.offset,
                    size: create.size,
                };
                me.create(create.flags, &[item])
            }
            UDMABUF_CREATE_LIST => {
                let head: CreateList =
                    UserSlice::new(UserPtr::from_addr(arg), size_of::<CreateList>())
                        .reader()
                        .read()?;
                // A negative limit means none, as in C.
                let limit = module_parameters::list_limit.value();
                if u32::try_from(limit).is_ok_and(|limit| head.count > limit) {
                    return Err(EINVAL);
                }
                let count = head.count as usize;
                let len = count
                    .checked_mul(size_of::<CreateItem>())
                    .ok_or(EOVERFLOW)?;
                // One kmalloc() as memdup_user() makes: a list too long for it fails with
                // ENOMEM, and without a warning, however high the limit.
                let items: KVec<CreateItem> =
                    UserSlice::new(UserPtr::from_addr(arg + size_of::<CreateList>()), len)
                        .reader()
                        .read_vec(count, GFP_KERNEL | __GFP_NOWARN)?;
                me.create(head.flags, &items)
            }
            _ => Err(ENOTTY),
        }
    }
}

impl UdmabufFile {
    /// Pins the memfd ranges of `items` and returns a new dma-buf file descriptor for them.
    fn create(&self, flags: u32, items: &[CreateItem]) -> Result<isize> {
        let dmabuf = export(self.cpu_dev, items, |item| {
            LocalFile::fget(item.memfd).map_err(|_| EBADFD)
        })?;
        let fd_flags = if flags & uapi::UDMABUF_FLAGS_CLOEXEC != 0 {
            O_CLOEXEC
        } else {
            0
        };
        Ok(DmaBuf::into_fd(dmabuf, fd_flags)? as isize)
    }
}

/// Pins the memfd ranges of `items`, whose files `open` looks up, and exports them as a dma-buf
/// whose CPU access maps for `cpu_dev`. The checks and their errors are those of the C driver, in
/// its order, but for the `RLIMIT_MEMLOCK` charge (`account_memlock`), made before the items are
/// looked at.
fn export(
    cpu_dev: &'static Device<Bound>,
    items: &[CreateItem],
    open: impl Fn(&CreateItem) -> Result<ARef<LocalFile>>,
) -> Result<ARef<DmaBuf>> {
    // `size_limit_mb` in pages; negative means no limit, as the C cast to u64 does.
    let pglimit = (i64::from(module_parameters::size_limit_mb.value()) as u64)
        .wrapping_mul(SZ_1M as u64)
        >> PAGE_SHIFT;
    let mut pgcnt: u64 = 0;
    for item in items {
        if item.offset % PAGE_SIZE as u64 != 0 || item.size % PAGE_SIZE as u64 != 0 {
            return Err(EINVAL);
        }
        pgcnt = pgcnt.checked_add(item.size >> PAGE_SHIFT).ok_or(EINVAL)?;
        if pgcnt > pglimit {
            return Err(EINVAL);
        }
    }
    if pgcnt == 0 {
        return Err(EINVAL);
    }

    // Pinned pages count against the creator's locked memory if the administrator asks for it.
    let accounting = if module_parameters::account_memlock.value() != 0 {
        Accounting::Memlock
    } else {
        Accounting::None
    };
    // One array for all the ranges, allocated and charged before the first is pinned.
    let total = usize::try_from(pgcnt).map_err(|_| EINVAL)?;
    let mut pins = PinnedPages::pin_fd_ranges(total, PinFlags::WRITE, accounting)?;
    for item in items {
        let file = open(item)?;
        check_memfd(&file)?;
        // A range must end within i_size, not just within the file's last page, which
        // pin_user_pages_fd() would pin whole: as C udmabuf refuses it.
        let end = item.offset.checked_add(item.size).ok_or(EINVAL)?;
        if end > file.size() {
            return Err(EINVAL);
        }
        let start = usize::try_from(item.offset >> PAGE_SHIFT).map_err(|_| EINVAL)?;
        let nr = usize::try_from(item.size >> PAGE_SHIFT).map_err(|_| EINVAL)?;
        // A write seal added since the check makes the pin fail with EPERM, refused with EINVAL
        // as the check refuses it, as C udmabuf does.
        pins.pin(&file, start, nr)
            .map_err(|e| if e == EPERM { EINVAL } else { e })?;
    }
    let pages = pins.finish()?;
    let size = pages.len().checked_mul(PAGE_SIZE).ok_or(EINVAL)?;

    let buffer = KBox::pin_init(
        try_pin_init!(Udmabuf {
            buf <- PinnedBuffer::new(pages, cpu_dev),
        }),
        GFP_KERNEL,
    )?;
    DmaBuf::export::<Udmabuf>(buffer, size, O_RDWR)
}

/// Checks that `file` is a memfd that cannot shrink and takes writes, and that it is open for
/// reading and writing, as the C driver does.
fn check_memfd(file: &LocalFile) -> Result {
    // Neither shmem nor hugetlbfs.
    let seals = file.memfd_seals().ok_or(EBADFD)?;
    if seals & uapi::F_SEAL_SHRINK == 0
        || seals & (uapi::F_SEAL_WRITE | uapi::F_SEAL_FUTURE_WRITE) != 0
    {
        return Err(EINVAL);
    }
    // The buffer is exported O_RDWR and can be mapped writable: the memfd must allow what a
    // shared writable mmap() of it needs. (The pin checks it again, in `f_mode`.)
    if file.flags() & O_ACCMODE != O_RDWR {
        return Err(EACCES);
    }
    Ok(())
}

/// A buffer: the pinned pages of its memfd ranges, in order.
#[pin_data]
struct Udmabuf {
    #[pin]
    buf: PinnedBuffer<&'static Device<Bound>>,
}

#[vtable]
impl Exporter for Udmabuf {
    type Ptr = Pin<KBox<Self>>;
    type AttachData = ();

    fn map<'a>(
        this: Pin<&'a Self>,
        attachment: &'a Attachment,
        _data: &(),
        dir: DataDirection,
        _locked: &ResvLocked<'_>,
    ) -> Result<KBox<MappedSGTable<'a>>> {
        this.get_ref().buf.map(attachment, dir)
    }

    fn mmap<'a>(this: Pin<&'a Self>, vma: &BufferVma<'a>) -> Result {
        this.get_ref().buf.mmap(vma)
    }

    fn vmap(this: Pin<&Self>, locked: &ResvLocked<'_>) -> Result<KernelMapping> {
        this.buf.vmap(locked)
    }

    fn vunmap(this: Pin<&Self>, mapping: KernelMapping, locked: &ResvLocked<'_>) {
        this.buf.vunmap(mapping, locked)
    }

    fn begin_cpu_access(this: Pin<&Self>, dir: DataDirection) -> Result {
        this.buf.begin_cpu_access(dir)
    }

    fn end_cpu_access(this: Pin<&Self>, dir: DataDirection) -> Result {
        this.buf.end_cpu_access(dir)
    }
}

#[cfg(CONFIG_UDMABUF_RUST_KUNIT_TEST)]
#[kunit_tests(udmabuf_rs)]
mod tests {
    use super::*;
    use core::ptr::NonNull;
    use kernel::{
        alloc::flags::__GFP_ZERO,
        bindings,
        dma::attrs::DMA_ATTR_SKIP_CPU_SYNC,
        dma_buf::{
            AttachmentData,
            Import, //
        },
        error::{
            from_err_ptr,
            to_result, //
        },
        mm::gup::{
            FolioRuns,
            LongTerm, //
        },
        page::Page,
        scatterlist::SGTable,
        sizes::SZ_2M,
        sync::{
            atomic::{
                Atomic,
                Relaxed, //
            },
            Arc,
            ArcBorrow, //
        }, //
    };

    const NR: usize = 64;

    /// Writes `NR` pages to `file`, page `i` filled with the byte `i + seed`.
    fn write_pages(file: &File, seed: u8) -> Result {
        let mut data = KVVec::with_capacity(NR * PAGE_SIZE, GFP_KERNEL)?;
        for i in 0..NR {
            data.extend_with(PAGE_SIZE, (i as u8).wrapping_add(seed), GFP_KERNEL)?;
        }
        let mut pos = 0;
        // SAFETY: `file` is valid, `data` holds `data.len()` bytes, and `pos` is a valid offset.
        let written = unsafe {
            bindings::kernel_write(file.as_ptr(), data.as_ptr().cast(), data.len(), &mut pos)
        };
        if usize::try_from(written) != Ok(data.len()) {
            return Err(EIO);
        }
        Ok(())
    }

    /// Creates a memfd of `NR` pages, written with `seed` and sealed against shrinking.
    fn memfd(seed: u8) -> Result<ARef<File>> {
        // SAFETY: The name is a NUL-terminated string, and any `MFD_*` flags are accepted.
        let file = from_err_ptr(unsafe {
            bindings::memfd_alloc_file(c"udmabuf_rs".as_char_ptr(), uapi::MFD_ALLOW_SEALING)
        })?;
        // SAFETY: `memfd_alloc_file()` returned a new file and its reference, which the `ARef`
        // takes over; `File` is a transparent wrapper of `struct file`.
        let file: ARef<File> = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
        write_pages(&file, seed)?;
        // SAFETY: `file` is a valid memfd.
        let ret =
            unsafe { bindings::memfd_fcntl(file.as_ptr(), uapi::F_ADD_SEALS, uapi::F_SEAL_SHRINK) };
        to_result(ret as c_int)?;
        Ok(file)
    }

    /// Returns whether the kernel mapping of `buf` (`dma_buf_vmap()`) shows page `i` of each of
    /// `ranges` memfds filled with `i + seed`.
    fn vmap_shows(buf: &DmaBuf, ranges: usize, seed: u8) -> Result<bool> {
        let mut map = bindings::iosys_map {
            is_iomem: false,
            __bindgen_anon_1: bindings::iosys_map__bindgen_ty_1 {
                vaddr: core::ptr::null_mut(),
            },
        };
        // SAFETY: `buf` is a valid dma-buf and `map` is valid for writing.
        to_result(unsafe { bindings::dma_buf_vmap_unlocked(buf.as_raw(), &mut map) })?;
        // SAFETY: Our exporter maps system memory: `vaddr` is the address of the whole buffer.
        let vaddr = unsafe { map.__bindgen_anon_1.vaddr }.cast::<u8>();
        let mut ok = true;
        for page in 0..ranges * NR {
            let expected = ((page % NR) as u8).wrapping_add(seed);
            for offset in [0, PAGE_SIZE - 1] {
                // SAFETY: The mapping covers `ranges * NR` pages, and nothing writes to them.
                ok &= unsafe { vaddr.add(page * PAGE_SIZE + offset).read_volatile() } == expected;
            }
        }
        // SAFETY: `map` is the mapping made above.
        unsafe { bindings::dma_buf_vunmap_unlocked(buf.as_raw(), &mut map) };
        Ok(ok)
    }

    /// Registers a faux device named `name` for a test's importer, with a 64-bit DMA mask.
    fn new_importer(name: &'static CStr) -> Result<faux::Registration> {
        faux::Registration::new_with_dma_mask(name, None, DmaMask::new::<64>())
    }

    #[test]
    fn importers_see_memfd_data() -> Result {
        let importer = new_importer(c"udmabuf_rs_kunit")?;
        let bound: &Device<Bound> = importer.as_ref().as_ref();
        let files = [memfd(1)?, memfd(1)?];
        let items = [0, 1].map(|memfd| CreateItem {
            memfd,
            pad: 0,
            offset: 0,
            size: (NR * PAGE_SIZE) as u64,
        });
        // Data written before the pins, which may have migrated the pages out of ZONE_MOVABLE.
        let buf = export(cpu_device()?, &items, |item| {
            let file: &LocalFile = files.get(item.memfd as usize).ok_or(EBADF)?;
            Ok(ARef::from(file))
        })?;
        assert!(vmap_shows(&buf, 2, 1)?);
        // Data written after the pins reaches the pinned pages.
        for file in &files {
            write_pages(file, 7)?;
        }
        assert!(vmap_shows(&buf, 2, 7)?);

        // The table has one entry per physically contiguous stretch of the buffer's pages.
        let pin = |file: &File| {
            PinnedPages::pin_user_pages_fd(file, 0, NR, PinFlags::empty(), Accounting::None)
        };
        let pins = [pin(&files[0])?, pin(&files[1])?];
        let import = buf.import(bound, DataDirection::Bidirectional)?;
        assert!(table_maps(
            import.table(),
            pins.iter().flat_map(|p| p.iter()).map(|page| page.pfn())
        )?);
        Ok(())
    }

    /// Returns whether `table`, mapped for a device that sees physical addresses (no IOMMU),
    /// has one entry per physically contiguous stretch of `pages`, in order, as
    /// `sg_alloc_table_from_pages()` would make them, found here page by page.
    fn table_maps(table: &SGTable, pfns: impl Iterator<Item = usize>) -> Result<bool> {
        let mut expected: KVec<(u64, u64)> = KVec::new();
        for pfn in pfns {
            let addr = (pfn << PAGE_SHIFT) as u64;
            match expected.last_mut() {
                Some((start, len)) if *start + *len == addr => *len += PAGE_SIZE as u64,
                _ => expected.push((addr, PAGE_SIZE as u64), GFP_KERNEL)?,
            }
        }
        let mut entries = table.iter();
        for (start, len) in expected.iter() {
            let Some(entry) = entries.next() else {
                return Ok(false);
            };
            if entry.dma_address() != *start || entry.dma_len() != *len {
                return Ok(false);
            }
        }
        Ok(entries.next().is_none())
    }

    #[test]
    fn hugetlb_table_has_an_entry_per_stretch() -> Result {
        const FOLIOS: usize = 2;
        let importer = new_importer(c"udmabuf_rs_kunit_huge")?;
        let bound: &Device<Bound> = importer.as_ref().as_ref();
        let len = FOLIOS * SZ_2M;
        // SAFETY: The name is a NUL-terminated string, and the `MFD_*` flags are valid.
        let file = from_err_ptr(unsafe {
            bindings::memfd_alloc_file(
                c"udmabuf_rs".as_char_ptr(),
                uapi::MFD_ALLOW_SEALING | uapi::MFD_HUGETLB | uapi::MFD_HUGE_2MB,
            )
        })?;
        // SAFETY: `memfd_alloc_file()` returned a new file and its reference, which the `ARef`
        // takes over; `File` is a transparent wrapper of `struct file`.
        let file: ARef<File> = unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast())) };
        // SAFETY: `file` is valid; mode 0 allocates the range, whole huge pages, and extends the
        // file to cover it.
        to_result(unsafe { bindings::vfs_fallocate(file.as_ptr(), 0, 0, len as i64) } as c_int)?;
        // SAFETY: `file` is a valid memfd.
        let ret =
            unsafe { bindings::memfd_fcntl(file.as_ptr(), uapi::F_ADD_SEALS, uapi::F_SEAL_SHRINK) };
        to_result(ret as c_int)?;
        // Pages 1 to the end, then page 0: a run of 511 pages, one of 512, and one page.
        let items =
            [(PAGE_SIZE, len - PAGE_SIZE), (0, PAGE_SIZE)].map(|(offset, size)| CreateItem {
                memfd: 0,
                pad: 0,
                offset: offset as u64,
                size: size as u64,
            });
        let memfd: &LocalFile = &file;
        let buf = export(cpu_device()?, &items, |_| Ok(ARef::from(memfd)))?;
        let pins = PinnedPages::pin_user_pages_fd(
            &file,
            0,
            len / PAGE_SIZE,
            PinFlags::empty(),
            Accounting::None,
        )?;
        let order = Iterator::chain(1..len / PAGE_SIZE, 0..1);
        let import = buf.import(bound, DataDirection::Bidirectional)?;
        assert!(table_maps(
            import.table(),
            order.filter_map(|i| pins.page(i)).map(|page| page.pfn())
        )?);
        Ok(())
    }

    /// A second exporter, not shaped like udmabuf: each attachment maps a window of the buffer of
    /// its own, handed out in order as attachments are made (a refused one uses none up), and the
    /// buffer counts the maps, unmaps and detaches of each window.
    struct Windows {
        pages: PinnedPages<LongTerm>,
        next: Atomic<usize>,
        maps: [Atomic<usize>; WINDOWS],
        unmaps: [Atomic<usize>; WINDOWS],
        detaches: [Atomic<usize>; WINDOWS],
    }

    const WINDOWS: usize = 2;

    /// The data of an attachment of [`Windows`]: its window, and the buffer's counters.
    struct Window {
        index: usize,
        buf: Arc<Windows>,
    }

    impl Drop for Window {
        fn drop(&mut self) {
            self.buf.detaches[self.index].fetch_add(1, Relaxed);
        }
    }

    impl Windows {
        /// The pages of window `index`.
        fn window(&self, index: usize) -> core::ops::Range<usize> {
            let len = self.pages.len() / WINDOWS;
            index * len..(index + 1) * len
        }
    }

    impl AttachmentData<Windows> for Window {
        fn attach(buf: ArcBorrow<'_, Windows>, _attachment: &Attachment) -> Result<Window> {
            let index = buf.next.load(Relaxed);
            if index >= WINDOWS {
                return Err(ENOSPC);
            }
            // The test attaches from one thread.
            buf.next.store(index + 1, Relaxed);
            Ok(Window {
                index,
                buf: buf.into(),
            })
        }
    }

    #[vtable]
    impl Exporter for Windows {
        type Ptr = Arc<Self>;
        type AttachData = Window;

        fn map<'a>(
            buf: ArcBorrow<'a, Self>,
            attachment: &'a Attachment,
            data: &Window,
            dir: DataDirection,
            _locked: &ResvLocked<'_>,
        ) -> Result<KBox<MappedSGTable<'a>>> {
            let buf = buf.get();
            let runs = buf.pages.folio_runs(buf.window(data.index)).ok_or(EINVAL)?;
            let table = attachment.map_pages(runs, dir, DMA_ATTR_SKIP_CPU_SYNC)?;
            buf.maps[data.index].fetch_add(1, Relaxed);
            Ok(table)
        }

        fn unmap(
            buf: ArcBorrow<'_, Self>,
            _attachment: &Attachment,
            data: &Window,
            _table: &MappedSGTable<'_>,
            _locked: &ResvLocked<'_>,
        ) {
            buf.unmaps[data.index].fetch_add(1, Relaxed);
        }
    }

    /// Pins the `NR` pages of `file` with `flags` into a new [`Windows`] buffer.
    fn new_windows(file: &File, flags: PinFlags) -> Result<Arc<Windows>> {
        let pages = PinnedPages::pin_user_pages_fd(file, 0, NR, flags, Accounting::None)?;
        Ok(Arc::new(
            Windows {
                pages,
                next: Atomic::new(0),
                maps: core::array::from_fn(|_| Atomic::new(0)),
                unmaps: core::array::from_fn(|_| Atomic::new(0)),
                detaches: core::array::from_fn(|_| Atomic::new(0)),
            },
            GFP_KERNEL,
        )?)
    }

    /// Returns the maps, unmaps and detaches of each window of `buf`.
    fn window_counts(buf: &Windows) -> [[usize; WINDOWS]; 3] {
        [&buf.maps, &buf.unmaps, &buf.detaches].map(|c| c.each_ref().map(|n| n.load(Relaxed)))
    }

    #[test]
    fn attachments_have_their_own_windows() -> Result {
        let importer = new_importer(c"udmabuf_rs_kunit_windows")?;
        let bound: &Device<Bound> = importer.as_ref().as_ref();
        let file = memfd(3)?;
        let windows = new_windows(&file, PinFlags::WRITE)?;
        let buf = DmaBuf::export::<Windows>(windows.clone(), NR * PAGE_SIZE, O_RDWR)?;

        // Two attachments at once, each mapped for its own window.
        let imports: [Import<'_>; WINDOWS] = [
            buf.import(bound, DataDirection::ToDevice)?,
            buf.import(bound, DataDirection::FromDevice)?,
        ];
        for (index, import) in imports.iter().enumerate() {
            let pages = windows.window(index).filter_map(|i| windows.pages.page(i));
            assert!(table_maps(import.table(), pages.map(|page| page.pfn()))?);
        }
        assert_eq!(window_counts(&windows), [[1, 1], [0, 0], [0, 0]]);
        // The exporter refuses a third attachment, and keeps no data for it.
        assert_eq!(
            buf.import(bound, DataDirection::ToDevice).err(),
            Some(ENOSPC)
        );
        assert_eq!(window_counts(&windows), [[1, 1], [0, 0], [0, 0]]);

        // Each attachment is unmapped and detached on its own.
        let [first, second] = imports;
        drop(second);
        assert_eq!(window_counts(&windows), [[1, 1], [0, 1], [0, 1]]);
        drop(first);
        assert_eq!(window_counts(&windows), [[1, 1], [1, 1], [1, 1]]);
        Ok(())
    }
    /// Pages pinned without [`PinFlags::WRITE`] are lent to a device to read only, and do not
    /// make a [`PinnedBuffer`], whose importers and users may write.
    #[test]
    fn read_pins_are_not_lent_for_writing() -> Result {
        let importer = new_importer(c"udmabuf_rs_kunit_read_pins")?;
        let bound: &Device<Bound> = importer.as_ref().as_ref();
        let file = memfd(5)?;
        let windows = new_windows(&file, PinFlags::empty())?;
        let buf = DmaBuf::export::<Windows>(windows.clone(), NR * PAGE_SIZE, O_RDWR)?;
        // The refused map leaves window 0 used: the read-only import gets window 1.
        assert_eq!(
            buf.import(bound, DataDirection::FromDevice).err(),
            Some(EPERM)
        );
        let import = buf.import(bound, DataDirection::ToDevice)?;
        let pages = windows.window(1).filter_map(|i| windows.pages.page(i));
        assert!(table_maps(import.table(), pages.map(|page| page.pfn()))?);
        drop(import);

        let pages =
            PinnedPages::pin_user_pages_fd(&file, 0, NR, PinFlags::empty(), Accounting::None)?;
        let made = KBox::pin_init(PinnedBuffer::new(pages, cpu_device()?), GFP_KERNEL);
        assert_eq!(made.err(), Some(EPERM));
        let pages =
            PinnedPages::pin_user_pages_fd(&file, 0, NR, PinFlags::WRITE, Accounting::None)?;
        assert!(KBox::pin_init(PinnedBuffer::new(pages, cpu_device()?), GFP_KERNEL).is_ok());
        Ok(())
    }

    /// A third exporter, of pages it allocates itself rather than pins: each attachment maps all
    /// of them, in its own direction.
    struct OwnPages {
        pages: KVec<Page>,
    }

    #[vtable]
    impl Exporter for OwnPages {
        type Ptr = Pin<KBox<Self>>;
        type AttachData = ();

        fn map<'a>(
            buf: Pin<&'a Self>,
            attachment: &'a Attachment,
            _data: &(),
            dir: DataDirection,
            _locked: &ResvLocked<'_>,
        ) -> Result<KBox<MappedSGTable<'a>>> {
            let runs = FolioRuns::of_pages(&buf.get_ref().pages);
            attachment.map_pages(runs, dir, DMA_ATTR_SKIP_CPU_SYNC)
        }
    }

    #[test]
    fn exporter_of_its_own_pages() -> Result {
        let importer = new_importer(c"udmabuf_rs_kunit_own_pages")?;
        let bound: &Device<Bound> = importer.as_ref().as_ref();
        let mut pages = KVec::with_capacity(NR, GFP_KERNEL)?;
        let mut pfns = KVec::with_capacity(NR, GFP_KERNEL)?;
        for _ in 0..NR {
            let page = Page::alloc_page(GFP_KERNEL | __GFP_ZERO)?;
            pfns.push(page.pfn(), GFP_KERNEL)?;
            pages.push(page, GFP_KERNEL)?;
        }
        let own = KBox::pin(OwnPages { pages }, GFP_KERNEL)?;
        let buf = DmaBuf::export::<OwnPages>(own, NR * PAGE_SIZE, O_RDWR)?;
        // Two attachments at once, in both directions: owned pages are writable.
        let imports = [
            buf.import(bound, DataDirection::ToDevice)?,
            buf.import(bound, DataDirection::FromDevice)?,
        ];
        for import in &imports {
            assert!(table_maps(import.table(), pfns.iter().copied())?);
        }
        Ok(())
    }
}
