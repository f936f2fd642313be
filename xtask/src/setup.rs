//! `setup`: install what the pipeline needs, pinned, and check versions.

use crate::ctx::Ctx;
use crate::proc::Cmd;
use crate::sparse;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// Debian packages: LLVM 19 for the kernel and Rust, the kernel's build
/// dependencies, QEMU and udev for virtme-ng (without udev the guest cannot
/// find its virtio-serial ports), ccache, and libraries the selftests link.
/// The net selftests also need, to build: zlib (libbpf, for net/lib's XDP
/// programs) and PyYAML and jsonschema (tools/net/ynl/pyynl/ynl_gen_c.py
/// generates the YNL C library); to run, in the guest (the host's root):
/// PyYAML (the YNL python library) and iproute2 (`ip`); ethtool for the
/// devmem tests that call it. selftests/memfd builds a FUSE helper
/// (libfuse, found through pkg-config). curl, patch and libc6-dev to build
/// the sparse that `check` runs (`C=2`, see sparse.rs): Debian's own sparse
/// cannot read Linux 7.3.
pub const DEB_PACKAGES: &[&str] = &[
    "clang-19",
    "lld-19",
    "llvm-19",
    "libclang-19-dev",
    "make",
    "gcc",
    "git",
    "flex",
    "bison",
    "bc",
    "cpio",
    "rsync",
    "kmod",
    "xz-utils",
    "zstd",
    "libelf-dev",
    "libssl-dev",
    "dwarves",
    "ccache",
    "qemu-system-x86",
    "udev",
    "busybox-static",
    "libnuma-dev",
    "libcap-dev",
    "python3-venv",
    "perl",
    "zlib1g-dev",
    "python3-yaml",
    "python3-jsonschema",
    "iproute2",
    "ethtool",
    "libfuse-dev",
    "pkg-config",
    "curl",
    "patch",
    "libc6-dev",
];

pub const BINDGEN_VERSION: &str = "0.72.1";
pub const VIRTME_NG_VERSION: &str = "1.42";
pub const B4_VERSION: &str = "0.16.0";
pub const PYYAML_VERSION: &str = "6.0.3";
pub const JSONSCHEMA_VERSION: &str = "4.26.0";
/// scripts/min-tool-version.sh of the base tree.
const MIN_RUSTC: (u32, u32) = (1, 85);

pub fn setup(ctx: &Ctx) -> Result<()> {
    let missing = missing_debs()?;
    if !missing.is_empty() {
        let install = format!(
            "apt-get install -y --no-install-recommends {}",
            missing.join(" ")
        );
        if !is_debian() || !is_root() {
            bail!(
                "missing packages: {}\nrun as root on Debian (bookworm or later):\n  apt-get update && {install}",
                missing.join(" ")
            );
        }
        eprintln!("  installing {}", missing.join(" "));
        Cmd::new("apt-get")
            .arg("update")
            .timeout(Duration::from_secs(600))
            .run(&ctx.log("setup-apt-update"))?;
        Cmd::new("sh")
            .args(["-c", &format!("DEBIAN_FRONTEND=noninteractive {install}")])
            .timeout(Duration::from_secs(1800))
            .run(&ctx.log("setup-apt-install"))?;
    }

    let rustc = Cmd::new("rustc").arg("--version").output()?;
    let (major, minor) = parse_rustc_version(&rustc)
        .ok_or_else(|| anyhow::anyhow!("cannot read the rustc version from {rustc:?}"))?;
    if (major, minor) < MIN_RUSTC {
        bail!(
            "{rustc} is older than the kernel's minimum {}.{}: run `rustup update stable`",
            MIN_RUSTC.0,
            MIN_RUSTC.1
        );
    }
    let components = Cmd::new("rustup")
        .args(["component", "list", "--installed"])
        .output()?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("  installing rust-src");
        Cmd::new("rustup")
            .args(["component", "add", "rust-src"])
            .run(&ctx.log("setup-rust-src"))?;
    }

    let bindgen = ctx.tools_bin().join("bindgen");
    let have = Cmd::new(&bindgen)
        .arg("--version")
        .output()
        .unwrap_or_default();
    if !have.ends_with(&format!(" {BINDGEN_VERSION}")) {
        eprintln!("  installing bindgen-cli {BINDGEN_VERSION} (takes a few minutes)");
        Cmd::new("cargo")
            .args(["install", "--locked", "--force", "bindgen-cli", "--version"])
            .arg(BINDGEN_VERSION)
            .arg("--root")
            .arg(ctx.cache.join("tools"))
            .timeout(Duration::from_secs(1800))
            .run(&ctx.log("setup-bindgen"))?;
    }

    let venv = ctx.cache.join("venv");
    let pip_list = Cmd::new(ctx.venv_bin().join("pip"))
        .args(["list", "--format=freeze"])
        .output()
        .unwrap_or_default();
    // PyYAML and jsonschema: the selftest build runs the YNL code generator
    // (tools/net/ynl/pyynl/ynl_gen_c.py) with the first python3 on PATH,
    // this venv's.
    let want = [
        format!("virtme-ng=={VIRTME_NG_VERSION}"),
        format!("b4=={B4_VERSION}"),
        format!("PyYAML=={PYYAML_VERSION}"),
        format!("jsonschema=={JSONSCHEMA_VERSION}"),
    ];
    if !want.iter().all(|w| pip_list.lines().any(|l| l == w)) {
        eprintln!("  installing {} into {}", want.join(" "), venv.display());
        Cmd::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .run(&ctx.log("setup-venv"))?;
        Cmd::new(ctx.venv_bin().join("pip"))
            .args(["install", "--disable-pip-version-check"])
            .args(&want)
            .timeout(Duration::from_secs(900))
            .run(&ctx.log("setup-pip"))?;
    }

    sparse::install(ctx)?;

    for (tool, arg) in [
        ("clang-19", "--version"),
        ("ld.lld-19", "--version"),
        ("qemu-system-x86_64", "--version"),
        ("vng", "--version"),
        ("b4", "--version"),
        ("bindgen", "--version"),
        ("ccache", "--version"),
    ] {
        let out = ctx.cmd(tool).arg(arg).output()?;
        eprintln!("  {:<20} {}", tool, out.lines().next().unwrap_or(""));
    }
    // `make C=2` runs the first sparse on the tool's PATH: it must be ours.
    let found = ctx.cmd("sh").args(["-c", "command -v sparse"]).output()?;
    if Path::new(&found) != sparse::binary(ctx) {
        bail!(
            "`sparse` on the tool's PATH is {found}, not {}",
            sparse::binary(ctx).display()
        );
    }
    eprintln!(
        "  {:<20} {} + typeof_unqual, __builtin_strlen: {found}",
        "sparse",
        sparse::VERSION
    );
    Ok(())
}

fn missing_debs() -> Result<Vec<String>> {
    if !is_debian() {
        // Not Debian: check the commands instead of packages.
        let missing = [
            "clang-19",
            "ld.lld-19",
            "qemu-system-x86_64",
            "flex",
            "bison",
            "curl",
            "patch",
        ]
        .iter()
        .filter(|t| {
            Cmd::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .is_err()
        })
        .map(|t| t.to_string())
        .collect();
        return Ok(missing);
    }
    let args = ["-W", "-f=${Package} ${db:Status-Status}\n"]
        .iter()
        .chain(DEB_PACKAGES);
    let out = duct::cmd("dpkg-query", args)
        .stdout_capture()
        .stderr_null()
        .unchecked()
        .run()?;
    let installed = String::from_utf8_lossy(&out.stdout);
    Ok(DEB_PACKAGES
        .iter()
        .filter(|p| !installed.lines().any(|l| l == format!("{p} installed")))
        .map(|p| p.to_string())
        .collect())
}

fn is_debian() -> bool {
    std::path::Path::new("/etc/debian_version").exists()
}

fn is_root() -> bool {
    Cmd::new("id")
        .arg("-u")
        .output()
        .map(|s| s == "0")
        .unwrap_or(false)
}

fn parse_rustc_version(s: &str) -> Option<(u32, u32)> {
    let v = s.split_whitespace().nth(1)?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rustc_version() {
        assert_eq!(
            super::parse_rustc_version("rustc 1.95.0 (59807616e 2026-04-14)"),
            Some((1, 95))
        );
        assert_eq!(super::parse_rustc_version("rustc"), None);
    }
}
