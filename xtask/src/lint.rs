//! What netdev's NIPA and the kernel test robot run on a posted series, on
//! the files each patch touches: `kernel-doc -none -Wall`, sparse (`C=2`)
//! and a `W=1` build of the touched objects. The base has warnings of its
//! own (kernel-doc -Wall finds about a hundred in the files the series
//! touches), so a patch fails on the warnings it adds: those the base and
//! the patches before it did not have, line numbers aside.

use crate::build;
use crate::ctx::{Ctx, BASE_TAG};
use crate::series::Commit;
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

/// A checker's warning (or error) at a line of a file of the tree.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Warning {
    pub file: String,
    pub line: u32,
    pub text: String,
}

impl Warning {
    /// Which checker said it, and what: kernel-doc's are marked so, clang's
    /// warnings name their `[-W...]` flag, sparse's do not.
    fn tool(&self) -> (&'static str, &str) {
        if let Some(text) = self.text.strip_prefix(KERNEL_DOC) {
            return ("kernel-doc", text);
        }
        match self.text.ends_with(']') && self.text.contains("[-W") {
            true => ("W=1", &self.text),
            false => ("sparse", &self.text),
        }
    }
}

/// Marks kernel-doc's warnings among the others.
const KERNEL_DOC: &str = "kernel-doc: ";

/// kernel-doc's `Warning: mm/gup.c:123 text` and `Error: ...` lines (and
/// the older `mm/gup.c:123: warning: text`).
pub fn parse_kernel_doc(out: &str) -> Vec<Warning> {
    out.lines()
        .filter_map(|l| {
            let (loc, text) = match l
                .strip_prefix("Warning: ")
                .or_else(|| l.strip_prefix("Error: "))
            {
                Some(rest) => rest.split_once(' ')?,
                None => {
                    let (loc, text) = l.split_once(": warning: ")?;
                    (loc, text)
                }
            };
            let (file, line) = loc.trim_end_matches(':').rsplit_once(':')?;
            Some(Warning {
                file: file.to_string(),
                line: line.parse().ok()?,
                text: text.trim().to_string(),
            })
        })
        .collect()
}

/// Compiler and sparse diagnostics, `path:line:col: warning|error: text`,
/// with paths made relative to `tree`.
pub fn parse_compiler(out: &str, tree: &Path) -> Vec<Warning> {
    let root = format!("{}/", tree.display());
    out.lines()
        .filter_map(|l| {
            let (loc, kind, text) = [": warning: ", ": error: "]
                .iter()
                .find_map(|k| l.split_once(k).map(|(a, b)| (a, k, b)))?;
            let mut parts = loc.rsplitn(3, ':');
            let (_col, line, file) = (parts.next()?, parts.next()?, parts.next()?);
            let file = file.strip_prefix(&root).unwrap_or(file);
            let text = match *kind {
                ": error: " => format!("error: {text}"),
                _ => text.to_string(),
            };
            Some(Warning {
                file: file.trim_start_matches("./").to_string(),
                line: line.parse().ok()?,
                text,
            })
        })
        .collect()
}

/// The warnings seen so far, per file and text: how many distinct places
/// had each. A later run that has more of a kind in a file added them.
#[derive(Default)]
pub struct Known(HashMap<String, HashMap<String, usize>>);

impl Known {
    /// Records `seen` and returns the warnings in `files` that are new: of a
    /// kind (file and text) that more places have than ever before. A
    /// header's warning repeated by every object that includes it counts
    /// once.
    pub fn news(&mut self, seen: &[Warning], files: &[String]) -> Vec<Warning> {
        let seen: BTreeSet<&Warning> = seen.iter().collect();
        let mut counts: HashMap<(&str, &str), Vec<&Warning>> = HashMap::new();
        for w in &seen {
            counts.entry((&w.file, &w.text)).or_default().push(w);
        }
        let mut new = Vec::new();
        for ((file, text), at) in counts {
            let known = self
                .0
                .entry(file.to_string())
                .or_default()
                .entry(text.to_string())
                .or_default();
            if at.len() > *known && files.iter().any(|f| f == file) {
                new.extend(at.iter().map(|w| (*w).clone()));
            }
            *known = (*known).max(at.len());
        }
        new.sort();
        new
    }
}

/// Files where sparse reported an error. Sparse reports no warning in a
/// file after an error while parsing it (0.6.4 did so on Linux 7.3's
/// MODULE_INFO() until xtask/sparse/builtin-strlen.patch).
fn sparse_error_files(seen: &[Warning]) -> Vec<String> {
    let files: BTreeSet<&str> = seen
        .iter()
        .filter(|w| w.tool().0 == "sparse" && w.text.starts_with("error: "))
        .map(|w| w.file.as_str())
        .collect();
    files.into_iter().map(String::from).collect()
}

/// Files kernel-doc reads: C sources and headers.
fn is_c(f: &str) -> bool {
    f.ends_with(".c") || f.ends_with(".h")
}

/// The kernel object a touched C file is compiled into, if it is one:
/// selftests, tools and scripts are not kernel objects. Rust's C helpers
/// (rust/helpers/) are left to `--build-each`: building their object builds
/// the Rust crates first. Another architecture's files (arch/s390/...) are
/// not objects of this x86 build, whose headers they cannot find.
fn object_of(f: &str) -> Option<String> {
    let stem = f.strip_suffix(".c")?;
    if ["tools/", "scripts/", "Documentation/", "usr/", "rust/"]
        .iter()
        .any(|d| f.starts_with(d))
    {
        return None;
    }
    if let Some(rest) = f.strip_prefix("arch/") {
        if !rest.starts_with("x86/") {
            return None;
        }
    }
    Some(format!("{stem}.o"))
}

/// What the kernel's Makefile says when the installed sparse cannot check
/// this tree (7.3 needs one that knows `__typeof_unqual__`: Debian's 0.6.4
/// does not, the one `setup` builds into tools/bin does, see sparse.rs); it
/// then skips sparse. `make` runs the first `sparse` on the tool's PATH,
/// tools/bin's.
const NO_SPARSE: &str = "specified, but sparse is not available or not up to date";

fn objects_of<'a>(files: impl IntoIterator<Item = &'a String>) -> Vec<String> {
    let objs: BTreeSet<String> = files.into_iter().filter_map(|f| object_of(f)).collect();
    objs.into_iter().collect()
}

/// `EXPORT_SYMBOL*(name)` lines a diff adds, with their file.
pub fn added_exports(diff: &str) -> Vec<(String, String)> {
    let mut file = "";
    let mut out = Vec::new();
    for l in diff.lines() {
        if let Some(f) = l.strip_prefix("+++ b/") {
            file = f;
        } else if let Some(rest) = l.strip_prefix("+EXPORT_SYMBOL") {
            let name = rest
                .split_once('(')
                .and_then(|(_, r)| r.split([')', ',']).next());
            if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
                out.push((file.to_string(), name.to_string()));
            }
        }
    }
    out
}

/// Runs the three checkers on every patch of `commits` (applied in `tree`,
/// whose HEAD is `head`) and returns the problems, one per patch and file.
/// The tree is back at `head` afterwards.
pub fn check(ctx: &Ctx, tree: &Path, commits: &[&Commit], head: &str) -> Result<Vec<String>> {
    let checkout = |rev: &str| {
        ctx.git(tree)
            .args(["checkout", "-q", "-f", "--detach", rev])
            .timeout(Duration::from_secs(900))
            .run(&ctx.log("check-lint-checkout"))
    };
    // One config, the whole series', for every patch: an earlier patch's
    // Kconfig drops what it does not know yet, so it is put back each time.
    // `build` refuses options the fragments ask for and no Kconfig defines.
    build::configure_tree(ctx, tree, "check", &[], build::Dropped::AllowUndefined)?;
    let out = ctx.build_dir("check");
    let config = std::fs::read_to_string(out.join(".config"))?;

    let all: BTreeSet<String> = commits.iter().flat_map(|c| c.files.clone()).collect();
    let mut known = Known::default();
    let mut problems = Vec::new();
    let result = (|| -> Result<()> {
        eprintln!("  kernel-doc, sparse and W=1: the base's warnings");
        checkout(BASE_TAG)?;
        let present: Vec<String> = all
            .iter()
            .filter(|f| tree.join(f).exists())
            .cloned()
            .collect();
        let seen = run_checkers(ctx, tree, &config, &present, "base")?
            .map_err(|e| e.context("the base does not build the series' objects"))?;
        let blind = sparse_error_files(&seen);
        if !blind.is_empty() {
            eprintln!(
                "  note: sparse reports errors in the base's {}: after an error it drops \
                 the file's warnings, so they are not checked for sparse",
                blind.join(" ")
            );
        }
        known.news(&seen, &[]);
        for (i, c) in commits.iter().enumerate() {
            if !c.files.iter().any(|f| is_c(f)) {
                continue;
            }
            eprintln!(
                "  kernel-doc, sparse and W=1: patch {}/{} \"{}\"",
                i + 1,
                commits.len(),
                c.subject()
            );
            checkout(&c.hash)?;
            let files: Vec<String> = c
                .files
                .iter()
                .filter(|f| is_c(f) && tree.join(f).exists())
                .cloned()
                .collect();
            match run_checkers(ctx, tree, &config, &files, &format!("{}", i + 1))? {
                Ok(seen) => {
                    for w in known.news(&seen, &c.files) {
                        let (tool, text) = w.tool();
                        problems.push(format!(
                            "{tool}: \"{}\": {}:{}: {text}",
                            c.subject(),
                            w.file,
                            w.line,
                        ));
                    }
                }
                Err(e) => problems.push(format!("\"{}\": {e:#}", c.subject())),
            }
            problems.extend(undocumented_exports(ctx, tree, c)?);
        }
        Ok(())
    })();
    // Leave the tree (and the build directory's config) as found.
    checkout(head)?;
    std::fs::write(out.join(".config"), &config)?;
    result?;
    Ok(problems)
}

/// kernel-doc on `files` and sparse + W=1 on their objects, in `tree` as
/// checked out. The inner error: the objects do not compile.
fn run_checkers(
    ctx: &Ctx,
    tree: &Path,
    config: &str,
    files: &[String],
    step: &str,
) -> Result<Result<Vec<Warning>>> {
    let mut seen = Vec::new();
    let docs: Vec<&String> = files.iter().filter(|f| is_c(f)).collect();
    if !docs.is_empty() {
        let log = ctx.log(&format!("check-kernel-doc-{step}"));
        // Its exit status counts the warnings: read them from the log.
        let exit = ctx
            .cmd(tree.join("scripts/kernel-doc"))
            .dir(tree)
            .args(["-none", "-Wall"])
            .args(&docs)
            .run_unchecked(&log)?;
        if exit.timed_out {
            bail!("kernel-doc did not finish (log: {})", log.display());
        }
        seen.extend(
            parse_kernel_doc(&std::fs::read_to_string(&log)?)
                .into_iter()
                .map(|w| Warning {
                    text: format!("{KERNEL_DOC}{}", w.text),
                    ..w
                }),
        );
    }
    let objs = objects_of(files);
    if objs.is_empty() {
        return Ok(Ok(seen));
    }
    let out = ctx.build_dir("check");
    if std::fs::read_to_string(out.join(".config")).ok().as_deref() != Some(config) {
        std::fs::write(out.join(".config"), config)?;
    }
    let log = ctx.log(&format!("check-sparse-w1-{step}"));
    let exit = ctx
        .cmd("make")
        .dir(tree)
        .arg(format!("-j{}", ctx.jobs))
        .args(
            build::make_args(ctx, &out)
                .into_iter()
                .filter(|a| !a.starts_with("CLIPPY=")),
        )
        .args(["W=1", "C=2"])
        .args(&objs)
        .timeout(Duration::from_secs(60 * 60))
        .run_unchecked(&log)?;
    if exit.timed_out || exit.code != Some(0) {
        return Ok(Err(anyhow::anyhow!(
            "`make W=1 C=2 {}` failed\n{}\nfull log: {}",
            objs.join(" "),
            crate::proc::error_lines(&log),
            log.display()
        )));
    }
    let missing: Vec<&String> = objs.iter().filter(|o| !out.join(o).exists()).collect();
    if !missing.is_empty() {
        eprintln!(
            "  note: not built by the series' config, so not checked: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let text = std::fs::read_to_string(&log)?;
    if step == "base" && text.contains(NO_SPARSE) {
        eprintln!(
            "  note: sparse did NOT run: the kernel needs a sparse that knows __typeof_unqual__ \
             (`cargo xtask setup` builds one into {}); only kernel-doc and W=1 were checked",
            ctx.tools_bin().display()
        );
    }
    seen.extend(parse_compiler(&text, tree));
    Ok(Ok(seen))
}

/// Functions a patch exports without a kernel-doc comment in their file.
fn undocumented_exports(ctx: &Ctx, tree: &Path, c: &Commit) -> Result<Vec<String>> {
    let diff = ctx
        .git(tree)
        .args(["show", "--format=", "-U0", &c.hash])
        .output()?;
    let mut problems = Vec::new();
    for (file, name) in added_exports(&diff) {
        let doc = ctx
            .cmd(tree.join("scripts/kernel-doc"))
            .dir(tree)
            .args(["-rst", "-function", &name, &file])
            .output()
            .with_context(|| format!("kernel-doc -function {name} {file}"))?;
        if doc.trim().is_empty() {
            problems.push(format!(
                "kernel-doc: \"{}\": {file}: {name}() is exported without a kernel-doc comment",
                c.subject()
            ));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_doc_output() {
        let out = "Warning: mm/gup.c:1357 No description found for return value of '__get_user_pages'\nError: Cannot find file rust/helpers/percpu.c\nmm/gup_test.h:12: warning: Function parameter or struct member 'x' not described in 'pin_fd_test'\nsomething else\n";
        let w = parse_kernel_doc(out);
        assert_eq!(w.len(), 2, "{w:?}");
        assert_eq!(
            w[0],
            Warning {
                file: "mm/gup.c".into(),
                line: 1357,
                text: "No description found for return value of '__get_user_pages'".into()
            }
        );
        assert_eq!((w[1].file.as_str(), w[1].line), ("mm/gup_test.h", 12));
    }

    #[test]
    fn compiler_and_sparse_output() {
        let tree = Path::new("/c/apply");
        let out = "  CC      mm/gup.o\n/c/apply/mm/gup.c:3512:6: warning: no previous prototype for function 'f' [-Wmissing-prototypes]\n 3512 | void f(void)\n  CHECK   /c/apply/mm/gup.c\n/c/apply/mm/gup.c:40:14: warning: symbol 'g' was not declared. Should it be static?\nmm/gup_test.c:7:1: error: bad constant expression\n/c/apply/mm/gup.c:3512:6: note: declare 'static'\n";
        let w = parse_compiler(out, tree);
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!((w[0].file.as_str(), w[0].line), ("mm/gup.c", 3512));
        assert_eq!(w[0].tool().0, "W=1");
        assert_eq!(w[1].tool().0, "sparse");
        assert_eq!(w[2].tool(), ("sparse", "error: bad constant expression"));
    }

    fn w(file: &str, line: u32, text: &str) -> Warning {
        Warning {
            file: file.into(),
            line,
            text: text.into(),
        }
    }

    #[test]
    fn only_new_warnings_fail() {
        let mut known = Known::default();
        let base = [
            w("mm/gup.c", 100, "symbol 'a' was not declared"),
            w("include/linux/mm.h", 5, "old header warning"),
            // The same header warning from a second object: one place.
            w("include/linux/mm.h", 5, "old header warning"),
        ];
        assert!(known.news(&base, &[]).is_empty());
        let touched = ["mm/gup.c".to_string(), "include/linux/mm.h".to_string()];
        // The base's warnings, moved by the patch: nothing new.
        let moved = [
            w("mm/gup.c", 130, "symbol 'a' was not declared"),
            w("include/linux/mm.h", 9, "old header warning"),
        ];
        assert!(known.news(&moved, &touched).is_empty());
        // A planted warning fails; a second place of a known kind too.
        let planted = [
            w("mm/gup.c", 130, "symbol 'a' was not declared"),
            w("mm/gup.c", 200, "symbol 'b' was not declared"),
            w("mm/gup.c", 300, "symbol 'a' was not declared"),
            w("mm/filemap.c", 1, "not a file of this patch"),
        ];
        let new = known.news(&planted, &touched);
        assert_eq!(new.len(), 3, "{new:?}");
        assert!(new.iter().any(|x| x.line == 200));
        assert!(new.iter().all(|x| x.file == "mm/gup.c"));
        // Once reported, a later patch keeping them is not blamed again.
        assert!(known.news(&planted, &touched).is_empty());
    }

    #[test]
    fn files_sparse_stopped_warning_in() {
        let seen = [
            w(
                "drivers/dma-buf/udmabuf.c",
                20,
                "error: bad constant expression",
            ),
            w(
                "drivers/dma-buf/udmabuf.c",
                21,
                "error: bad constant expression",
            ),
            w("include/linux/pwm.h", 13, "error: bad constant expression"),
            w("mm/gup.c", 1, "symbol 'a' was not declared"),
            w("mm/gup.c", 2, "error: unused [-Werror,-Wunused]"),
            w("mm/gup.c", 3, "kernel-doc: error: something"),
        ];
        assert_eq!(
            sparse_error_files(&seen),
            ["drivers/dma-buf/udmabuf.c", "include/linux/pwm.h"]
        );
    }

    #[test]
    fn touched_objects() {
        let files: Vec<String> = [
            "mm/gup.c",
            "mm/gup_test.h",
            "rust/helpers/mm.c",
            "rust/helpers/page.c",
            "tools/testing/selftests/mm/gup_test.c",
            "rust/kernel/mm/gup.rs",
            "arch/s390/kvm/s390/pci.c",
            "arch/x86/kernel/cpu/common.c",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            objects_of(&files),
            ["arch/x86/kernel/cpu/common.o", "mm/gup.o"]
        );
    }

    #[test]
    fn exports_added_by_a_diff() {
        let diff = "diff --git a/mm/gup.c b/mm/gup.c\n--- a/mm/gup.c\n+++ b/mm/gup.c\n@@ -1 +1,3 @@\n+EXPORT_SYMBOL_GPL(pin_user_pages_fd);\n EXPORT_SYMBOL(old);\n+EXPORT_SYMBOL_NS_GPL(pin_fd_account_merge, \"X\");\n-EXPORT_SYMBOL(gone);\n";
        assert_eq!(
            added_exports(diff),
            [
                ("mm/gup.c".to_string(), "pin_user_pages_fd".to_string()),
                ("mm/gup.c".to_string(), "pin_fd_account_merge".to_string())
            ]
        );
    }
}
