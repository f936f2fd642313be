//! A sparse that can check Linux 7.3: Debian's sparse 0.6.4 source package
//! with the patches in xtask/sparse/: typeof-unqual.patch (the kernel's
//! headers use `__typeof_unqual__` under `__CHECKER__`, which 0.6.4 does not
//! know, and its Makefile then skips sparse) and builtin-strlen.patch
//! (MODULE_INFO()'s static_assert() on `__builtin_strlen()` is an error to
//! 0.6.4, after which it drops all of the file's warnings). `setup` builds
//! it into the cache's tools/bin, which is first on the PATH of every
//! command the tool runs, so `make C=2` in `check` finds it before
//! /usr/bin/sparse.

use crate::ctx::Ctx;
use crate::fetch::sha256_file;
use crate::proc::Cmd;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The upstream release in Debian's source package.
pub const VERSION: &str = "0.6.4";

/// A file of the source package, pinned by its sha256 (as in its .dsc).
struct Source {
    name: &'static str,
    sha256: &'static str,
}

const ORIG: Source = Source {
    name: "sparse_0.6.4.orig.tar.gz",
    sha256: "bd98fd8a122ff79d38a81feb75ec728699101e80701f33f21180912c3c9e949c",
};
const DEBIAN: Source = Source {
    name: "sparse_0.6.4-3.debian.tar.xz",
    sha256: "4d97623a2a7afaaeac43506440b24ae0a3cd4615550e342946cb03ca64d219dd",
};

/// Where the source package is, under the base's mirror.
const POOL: &str = "pool/main/s/sparse";

/// Debian's patches applied before ours: the upstream fix for "unreplaced
/// symbol" warnings from typeof() on inline functions, which the kernel's
/// headers cause. Debian's other two only make the package use gcc-12 and
/// `--as-needed`.
const DEBIAN_PATCHES: &[&str] = &["fix-unreplaced-warnings-caused-by-using-typeof-on-in.patch"];

/// One of our patches, with the validation tests it adds (run after the
/// build).
struct Patch {
    name: &'static str,
    text: &'static str,
    tests: &'static [&'static str],
}

/// Ours, applied in this order after Debian's.
const PATCHES: &[Patch] = &[
    Patch {
        name: "typeof-unqual.patch",
        text: include_str!("../sparse/typeof-unqual.patch"),
        tests: &["typeof-unqual.c", "typeof-unqual-const.c"],
    },
    Patch {
        name: "builtin-strlen.patch",
        text: include_str!("../sparse/builtin-strlen.patch"),
        tests: &["builtin-strlen.c", "builtin-strlen-nul.c"],
    },
];

/// Make variables that turn off the optional programs (and their library
/// checks): only `sparse` itself is built, with gcc and libc alone.
const MAKE_VARS: &[&str] = &[
    "HAVE_LIBXML=no",
    "HAVE_SQLITE=no",
    "HAVE_GTK=no",
    "HAVE_LLVM=no",
    "HAVE_BOOLECTOR=no",
];

/// What the installed binary was built from; written next to it once it
/// is in place. Any change to the pinned sources or the patches rebuilds.
pub fn stamp() -> String {
    let ours: Vec<String> = PATCHES
        .iter()
        .map(|p| format!("{} {}", p.name, hex::encode(Sha256::digest(p.text))))
        .collect();
    format!(
        "sparse {VERSION} {} {} {} {}\n",
        ORIG.sha256,
        DEBIAN.sha256,
        DEBIAN_PATCHES.join(" "),
        ours.join(" ")
    )
}

fn stamp_path(bin: &Path) -> PathBuf {
    bin.with_file_name("sparse.stamp")
}

/// The installed binary is there and was built from what is pinned now.
fn is_current(bin: &Path) -> bool {
    bin.is_file() && std::fs::read_to_string(stamp_path(bin)).is_ok_and(|s| s == stamp())
}

/// The sparse `check` runs.
pub fn binary(ctx: &Ctx) -> PathBuf {
    ctx.tools_bin().join("sparse")
}

fn url(mirror: &str, name: &str) -> String {
    format!("{}/{POOL}/{name}", mirror.trim_end_matches('/'))
}

/// Builds and installs the patched sparse unless the installed one is
/// current. Every command logs to work/logs/setup-sparse-*.log.
pub fn install(ctx: &Ctx) -> Result<()> {
    let bin = binary(ctx);
    if is_current(&bin) {
        return Ok(());
    }
    eprintln!(
        "  building sparse {VERSION} with xtask/sparse/*.patch (typeof_unqual, __builtin_strlen)"
    );
    let orig = download(ctx, &ORIG)?;
    let debian = download(ctx, &DEBIAN)?;

    let work = ctx.cache.join("tools/sparse-build");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("cannot remove {}", work.display()))?;
    }
    std::fs::create_dir_all(&work)?;
    Cmd::new("tar")
        .arg("-xzf")
        .arg(&orig)
        .arg("-C")
        .arg(&work)
        .run(&ctx.log("setup-sparse-untar"))?;
    let src = work.join(format!("sparse-{VERSION}"));
    if !src.join("parse.c").exists() {
        bail!("{} did not unpack to {}", orig.display(), src.display());
    }
    Cmd::new("tar")
        .arg("-xJf")
        .arg(&debian)
        .arg("-C")
        .arg(&src)
        .run(&ctx.log("setup-sparse-untar-debian"))?;
    let mut patches: Vec<PathBuf> = DEBIAN_PATCHES
        .iter()
        .map(|p| src.join("debian/patches").join(p))
        .collect();
    for p in PATCHES {
        let file = work.join(p.name);
        std::fs::write(&file, p.text)?;
        patches.push(file);
    }
    for (i, p) in patches.iter().enumerate() {
        Cmd::new("patch")
            .args(["-p1", "-N", "--no-backup-if-mismatch", "-i"])
            .arg(p)
            .dir(&src)
            .run(&ctx.log(&format!("setup-sparse-patch-{}", i + 1)))
            .with_context(|| format!("{} does not apply to sparse {VERSION}", p.display()))?;
    }
    Cmd::new("make")
        .arg(format!("-j{}", ctx.jobs))
        .arg("sparse")
        .args(MAKE_VARS)
        .dir(&src)
        .timeout(Duration::from_secs(900))
        .run(&ctx.log("setup-sparse-make"))
        .context("cannot build sparse: needs make, gcc and libc6-dev")?;
    // Our patches' own tests: the snippet of the kernel's
    // scripts/checker-valid.sh, qualifiers dropped, address spaces kept;
    // MODULE_INFO()'s assertion, and warnings still reported after it.
    let validation = src.join("validation");
    Cmd::new(validation.join("test-suite"))
        .args(PATCHES.iter().flat_map(|p| p.tests))
        .dir(&validation)
        .run(&ctx.log("setup-sparse-validation"))
        .context("the patched sparse fails the tests of xtask/sparse/*.patch")?;

    std::fs::create_dir_all(ctx.tools_bin())?;
    let tmp = bin.with_file_name("sparse.tmp");
    std::fs::copy(src.join("sparse"), &tmp)?;
    std::fs::rename(&tmp, &bin)?;
    std::fs::write(stamp_path(&bin), stamp())?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// The source package's file, downloaded once into the cache and checked.
fn download(ctx: &Ctx, src: &Source) -> Result<PathBuf> {
    let dir = ctx.cache.join("debs");
    let file = dir.join(src.name);
    if file.exists() && sha256_file(&file)? == src.sha256 {
        return Ok(file);
    }
    std::fs::create_dir_all(&dir)?;
    let part = dir.join(format!("{}.part", src.name));
    let url = url(&ctx.cfg.base.mirror, src.name);
    Cmd::new("curl")
        .args(["-fsSL", "--retry", "3", "-o"])
        .arg(&part)
        .arg(&url)
        .timeout(Duration::from_secs(600))
        .run(&ctx.log(&format!("setup-sparse-download-{}", src.name)))
        .with_context(|| format!("cannot download {url} (check base.mirror in series.toml)"))?;
    let sum = sha256_file(&part)?;
    if sum != src.sha256 {
        std::fs::remove_file(&part)?;
        bail!(
            "sha256 of the downloaded {url} is {sum}, xtask/src/sparse.rs pins {}; the download was deleted",
            src.sha256
        );
    }
    std::fs::rename(&part, &file)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_url() {
        assert_eq!(
            url("http://deb.debian.org/debian/", ORIG.name),
            "http://deb.debian.org/debian/pool/main/s/sparse/sparse_0.6.4.orig.tar.gz"
        );
    }

    /// The files a patch creates or changes.
    fn touched(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("+++ b/"))
            .collect()
    }

    #[test]
    fn the_patches_touch_what_they_say() {
        assert_eq!(
            touched(PATCHES[0].text),
            [
                "parse.c",
                "symbol.c",
                "symbol.h",
                "validation/typeof-unqual-const.c",
                "validation/typeof-unqual.c"
            ]
        );
        assert_eq!(
            touched(PATCHES[1].text),
            [
                "builtin.c",
                "validation/builtin-strlen-nul.c",
                "validation/builtin-strlen.c"
            ]
        );
        for p in PATCHES {
            // A header says why, before the diff.
            assert!(
                p.text.find("Why: ") < p.text.find("diff --git"),
                "{}",
                p.name
            );
            for t in p.tests {
                let file = format!("validation/{t}");
                assert!(touched(p.text).contains(&file.as_str()), "{t}");
            }
        }
        // The kernel's scripts/checker-valid.sh snippet is among the tests.
        assert!(PATCHES[0].text.contains("+\t__typeof_unqual__(*q) v = *q;"));
    }

    #[test]
    fn stamp_names_every_input() {
        let s = stamp();
        assert!(s.starts_with("sparse 0.6.4 "), "{s}");
        for part in [ORIG.sha256, DEBIAN.sha256, DEBIAN_PATCHES[0]] {
            assert!(s.contains(part), "{part} not in {s}");
        }
        for p in PATCHES {
            let sum = hex::encode(Sha256::digest(p.text));
            assert!(
                s.contains(&format!("{} {sum}", p.name)),
                "{} not in {s}",
                p.name
            );
        }
    }

    #[test]
    fn rebuilt_unless_binary_and_stamp_match() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("sparse");
        assert!(!is_current(&bin));
        std::fs::write(&bin, b"").unwrap();
        assert!(!is_current(&bin), "no stamp");
        std::fs::write(stamp_path(&bin), "sparse 0.6.4 older\n").unwrap();
        assert!(!is_current(&bin), "stale stamp");
        std::fs::write(stamp_path(&bin), stamp()).unwrap();
        assert!(is_current(&bin));
        std::fs::remove_file(&bin).unwrap();
        assert!(!is_current(&bin), "stamp without binary");
    }
}
