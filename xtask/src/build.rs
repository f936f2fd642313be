//! `build`: the kernel (config from fragments, ccache, persistent O= dir) and
//! the selftests, from the applied series.

use crate::ctx::{Ctx, BASE_TAG};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What a build produced.
pub struct Built {
    pub bzimage: PathBuf,
    pub kselftests: PathBuf,
    /// Compiler warnings in files the series touches.
    pub warnings: Vec<String>,
}

/// Checks out `commit` in the stable build tree. Only files that differ are
/// rewritten, so make rebuilds only what the change touches.
pub fn sync_build_tree(ctx: &Ctx, commit: &str) -> Result<()> {
    let tree = ctx.repo();
    let head = ctx.git(&tree).args(["rev-parse", "HEAD"]).output()?;
    if head != commit {
        ctx.git(&tree)
            .args(["checkout", "-q", "-f", "--detach", commit])
            .timeout(Duration::from_secs(900))
            .run(&ctx.log("build-checkout"))?;
    }
    Ok(())
}

pub fn make_args(ctx: &Ctx, out: &Path) -> Vec<String> {
    let mut args = vec![format!("O={}", out.display())];
    args.extend(ctx.cfg.kernel.make.iter().cloned());
    args
}

/// Writes `.config` from tinyconfig + the fragments, only when it changes,
/// and fails if an option the fragments set did not survive olddefconfig.
/// What `configure` accepts when an option of the fragments is not in the
/// resulting .config.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Nothing: every option must come out as asked.
    Refuse,
    /// Options no Kconfig file of the tree defines (yet): a patch built on
    /// its own comes before the patch that adds them.
    AllowUndefined,
}

pub fn configure(
    ctx: &Ctx,
    profile: &str,
    extra_fragments: &[PathBuf],
    dropped_ok: Dropped,
) -> Result<()> {
    configure_tree(ctx, &ctx.repo(), profile, extra_fragments, dropped_ok)
}

/// `configure` of the build directory `profile` for the sources in `tree`.
pub fn configure_tree(
    ctx: &Ctx,
    tree: &Path,
    profile: &str,
    extra_fragments: &[PathBuf],
    dropped_ok: Dropped,
) -> Result<()> {
    let out = ctx.build_dir(profile);
    let scratch = ctx.cache.join("build").join(format!("{profile}-config"));
    std::fs::create_dir_all(&out)?;
    std::fs::create_dir_all(&scratch)?;
    let mut fragments: Vec<PathBuf> = ctx
        .cfg
        .kernel
        .config
        .iter()
        .map(|f| ctx.root.join(f))
        .collect();
    fragments.extend(extra_fragments.iter().cloned());

    // The same tree and fragments give the same .config: skip the work.
    let commit = ctx.git(tree).args(["rev-parse", "HEAD"]).output()?;
    let mut key = format!("{commit}\n{}\n", ctx.cfg.kernel.make.join(" "));
    for f in &fragments {
        key.push_str(
            &std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?,
        );
    }
    let key_file = out.join(".pinfd-config-key");
    if out.join(".config").exists() && std::fs::read_to_string(&key_file).ok() == Some(key.clone())
    {
        return Ok(());
    }

    let make = |target: &str, log: &str| {
        ctx.cmd("make")
            .dir(tree)
            .args(make_args(ctx, &scratch))
            .arg(target)
            .timeout(Duration::from_secs(600))
            .run(&ctx.log(log))
    };
    make("tinyconfig", "build-config-tiny")?;
    ctx.cmd(tree.join("scripts/kconfig/merge_config.sh"))
        .dir(tree)
        .arg("-m")
        .arg("-O")
        .arg(&scratch)
        .arg(scratch.join(".config"))
        .args(&fragments)
        .run(&ctx.log("build-config-merge"))?;
    make("olddefconfig", "build-config-olddefconfig")?;
    let got = std::fs::read_to_string(scratch.join(".config"))?;
    let mut wanted = BTreeMap::new();
    for f in &fragments {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?;
        wanted.extend(parse_kconfig(&text));
    }
    let have = parse_kconfig(&got);
    let dropped: Vec<String> = wanted
        .iter()
        .filter(|(k, v)| have.get(*k).map_or("n", String::as_str) != v.as_str())
        .filter(|(k, _)| dropped_ok == Dropped::Refuse || kconfig_defines(ctx, tree, k))
        .map(|(k, v)| format!("{k}={v} (got {})", have.get(k).map_or("n", String::as_str)))
        .collect();
    if !dropped.is_empty() {
        bail!(
            "the config fragments ask for options that olddefconfig did not keep \
             (a missing dependency, or a renamed symbol):\n  {}\nfix the fragment(s): {}",
            dropped.join("\n  "),
            fragments
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let current = std::fs::read_to_string(out.join(".config")).unwrap_or_default();
    if current != got {
        std::fs::write(out.join(".config"), got)?;
    }
    std::fs::write(key_file, key)?;
    Ok(())
}

/// Whether a Kconfig file of the checked-out tree defines `CONFIG_<name>`.
fn kconfig_defines(ctx: &Ctx, tree: &Path, option: &str) -> bool {
    let name = option.strip_prefix("CONFIG_").unwrap_or(option);
    ctx.git(tree)
        .args(["grep", "-q", "-E"])
        .arg(format!(
            "^[[:space:]]*(menu)?config[[:space:]]+{name}[[:space:]]*$"
        ))
        .args(["--", "*Kconfig*"])
        .output()
        .is_ok()
}

/// `CONFIG_X=value` and `# CONFIG_X is not set` (as `n`) of a config file.
pub fn parse_kconfig(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if let Some(rest) = l.strip_prefix("# ") {
                let name = rest.strip_suffix(" is not set")?;
                return name
                    .starts_with("CONFIG_")
                    .then(|| (name.to_string(), "n".into()));
            }
            let (k, v) = l.split_once('=')?;
            k.starts_with("CONFIG_")
                .then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// Builds the kernel and installs the selftests, for the tree's current commit.
pub fn build(ctx: &Ctx, profile: &str) -> Result<Built> {
    let tree = ctx.repo();
    let out = ctx.build_dir(profile);
    let ccache = ctx.cache.join("ccache");
    std::fs::create_dir_all(&ccache)?;
    let kernel_make = || {
        ctx.cmd("make")
            .dir(&tree)
            .arg(format!("-j{}", ctx.jobs))
            .args(make_args(ctx, &out))
            .arg(format!("CC={}", cc_with_ccache(ctx)))
            .env("CCACHE_DIR", &ccache)
            .env("CCACHE_MAXSIZE", "8G")
            .env("CCACHE_SLOPPINESS", "time_macros")
    };
    let log = ctx.log("build-kernel");
    eprintln!("  make -j{} (full log: {})", ctx.jobs, log.display());
    kernel_make()
        .timeout(Duration::from_secs(120 * 60))
        .run(&log)
        .context("kernel build failed")?;
    let touched = ctx
        .git(&tree)
        .args(["diff", "--name-only", BASE_TAG, "HEAD"])
        .output()?;
    let touched: Vec<&str> = touched.lines().collect();
    let mut warnings = warnings_in(&std::fs::read_to_string(&log)?, &touched);

    if touched.iter().any(|f| f.ends_with(".rs")) {
        let doc_log = ctx.log("build-rustdoc");
        eprintln!("  rustdoc (full log: {})", doc_log.display());
        kernel_make()
            .arg("rustdoc")
            .timeout(Duration::from_secs(30 * 60))
            .run(&doc_log)
            .context("rustdoc failed")?;
        warnings.extend(warnings_in(&std::fs::read_to_string(&doc_log)?, &touched));
    }

    let hdr_log = ctx.log("build-headers");
    ctx.cmd("make")
        .dir(&tree)
        .args(make_args(ctx, &out))
        .arg("headers")
        .run(&hdr_log)?;
    let install = out.join("kselftest_install");
    let targets = ctx.cfg.kernel.selftest_targets.join(" ");
    let ksft_log = ctx.log("build-selftests");
    eprintln!("  selftests: {targets}");
    ctx.cmd("make")
        .dir(tree.join("tools/testing/selftests"))
        .arg(format!("-j{}", ctx.jobs))
        .arg(format!("O={}", out.display()))
        .arg(format!("TARGETS={targets}"))
        .arg(format!("INSTALL_PATH={}", install.display()))
        // net/lib's XDP programs are built with $(CLANG), `clang` unless
        // set, and there is only clang-19.
        .arg(format!("CLANG={}", clang(ctx)))
        // Without it a target that fails to build is left out of the
        // install and make still succeeds (net/lib: every python test
        // then SKIPs on its imports).
        .arg("FORCE_TARGETS=1")
        // The guest kernel has no module support: skip selftest modules
        // (mm's page_frag test module).
        .arg("TEST_GEN_MODS_DIR=")
        .arg("install")
        .timeout(Duration::from_secs(30 * 60))
        .run(&ksft_log)
        .context("selftest build failed")?;
    Ok(Built {
        bzimage: out.join("arch/x86/boot/bzImage"),
        kselftests: install,
        warnings,
    })
}

/// Builds the page_pool benchmark module (bench_page_pool.ko, out of tree,
/// in tools/testing/selftests/net/bench/page_pool) against the kernel of
/// `profile`, which must be built; returns the module's path.
pub fn bench_page_pool_module(ctx: &Ctx, profile: &str) -> Result<PathBuf> {
    let dir = ctx
        .repo()
        .join("tools/testing/selftests/net/bench/page_pool");
    external_module(
        ctx,
        profile,
        &dir,
        "bench_page_pool",
        "the page_pool benchmark module",
    )
}

/// Builds the dma-buf importer benchmark module (bench/dmabuf_importer,
/// dmabuf_import_bench.ko) against the kernel of `profile`, which must be
/// built. It is built in a copy under work/bench, so that no build product
/// lands in the project's sources; returns the module's path.
pub fn bench_dmabuf_importer_module(ctx: &Ctx, profile: &str) -> Result<PathBuf> {
    let src = ctx.root.join("bench/dmabuf_importer");
    let dir = ctx.root.join("work/bench/dmabuf_importer");
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    for entry in
        std::fs::read_dir(&src).with_context(|| format!("cannot read {}", src.display()))?
    {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let to = dir.join(entry.file_name());
        let text = std::fs::read(entry.path())?;
        // Unchanged sources keep their time stamps: make rebuilds nothing.
        if std::fs::read(&to).ok().as_ref() != Some(&text) {
            std::fs::write(&to, text)?;
        }
    }
    external_module(
        ctx,
        profile,
        &dir,
        "dmabuf_import_bench",
        "the dma-buf importer benchmark module",
    )
}

/// Builds the out-of-tree module `name` in `dir` against the kernel of
/// `profile` (log: build-<name>); returns the .ko's path.
fn external_module(
    ctx: &Ctx,
    profile: &str,
    dir: &Path,
    name: &str,
    what: &str,
) -> Result<PathBuf> {
    ctx.cmd("make")
        .dir(ctx.repo())
        .args(make_args(ctx, &ctx.build_dir(profile)))
        .arg(format!("M={}", dir.display()))
        .arg("modules")
        .timeout(Duration::from_secs(10 * 60))
        .run(&ctx.log(&format!("build-{name}")))
        .with_context(|| format!("cannot build {what}"))?;
    Ok(dir.join(format!("{name}.ko")))
}

/// `clang-19` from `LLVM=-19`, behind ccache.
fn cc_with_ccache(ctx: &Ctx) -> String {
    format!("ccache {}", clang(ctx))
}

/// `clang-19` from `LLVM=-19`.
fn clang(ctx: &Ctx) -> String {
    let suffix = ctx
        .cfg
        .kernel
        .make
        .iter()
        .find_map(|a| a.strip_prefix("LLVM="))
        .map(|v| {
            if v.starts_with('-') {
                v.to_string()
            } else {
                String::new()
            }
        })
        .unwrap_or_default();
    format!("clang{suffix}")
}

/// Warnings (C or Rust, clippy and rustdoc included) that point into
/// `files`, the files the series changes: the base's own warnings are not
/// ours to fix.
pub fn warnings_in(log: &str, files: &[&str]) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let hit = |s: &str| files.iter().any(|f| s.contains(f));
        // C: `path:line:col: warning: ...`
        if l.contains(": warning:") && hit(l.split(": warning:").next().unwrap_or("")) {
            found.push(l.to_string());
        }
        // Rust: `warning: ...` then ` --> path:line:col` a line or two later.
        if l.starts_with("warning:") {
            if let Some(loc) = lines[i + 1..]
                .iter()
                .take(3)
                .find_map(|n| n.trim_start().strip_prefix("--> "))
            {
                if hit(loc) {
                    found.push(format!("{loc}: {l}"));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kconfig_parsing() {
        let c = parse_kconfig("CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\n# comment\n");
        assert_eq!(c["CONFIG_A"], "y");
        assert_eq!(c["CONFIG_B"], "n");
        assert_eq!(c["CONFIG_C"], "\"x y\"");
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn warnings_only_in_series_files() {
        let log = "\
/src/mm/gup.c:10:3: warning: unused variable 'x' [-Wunused-variable]
/src/mm/filemap.c:5:1: warning: something of the base
warning: unsafe block missing a safety comment
  --> /src/rust/kernel/mm/gup.rs:40:9
   |
warning: old lint
  --> /src/rust/kernel/page.rs:1:1
";
        let w = warnings_in(log, &["mm/gup.c", "rust/kernel/mm/gup.rs"]);
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("unused variable"));
        assert!(w[1].contains("safety comment"));
    }

    #[test]
    fn rustdoc_warnings() {
        let log = "\
  RUSTDOC   /c/linux/rust/kernel/lib.rs
warning: unresolved link to `Folio::pin`
   --> /c/linux/rust/kernel/mm/folio.rs:21:9
    |
21  | /// [`Folio::pin`]
";
        let w = warnings_in(log, &["rust/kernel/mm/folio.rs"]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("unresolved link"));
    }
}
