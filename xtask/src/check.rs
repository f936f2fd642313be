//! `check`: the series applies, the exported files match it, every patch is
//! checkpatch-clean (--strict), Rust is rustfmt-clean, and optionally every
//! patch builds on its own. Also writes b4-ready mboxes.

use crate::ctx::{Ctx, BASE_TAG};
use crate::{build, series};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// What netdev's CI (NIPA) tells checkpatch to ignore. FILE_PATH_CHANGES is
/// among them: new files under directories MAINTAINERS already covers (the
/// selftests) need no MAINTAINERS change.
const CHECKPATCH_IGNORE: &[&str] = &[
    "COMMIT_LOG_LONG_LINE",
    "MACRO_ARG_REUSE",
    "ALLOC_SIZEOF_STRUCT",
    "NO_AUTHOR_SIGN_OFF",
    "GIT_COMMIT_ID",
    "CAMELCASE",
    "FILE_PATH_CHANGES",
    "BAD_REPORTED_BY_LINK",
];

pub fn check(ctx: &Ctx, build_each: bool) -> Result<()> {
    let head = series::apply(ctx)?;
    let tree = ctx.apply_tree();
    let mut problems = Vec::new();

    for p in series::exported_mismatches(ctx, &tree, &head)? {
        problems.push(format!("export: {p} (run `cargo xtask export`)"));
    }

    let commits = patch_commits(ctx, &tree)?;
    eprintln!("  {} patch(es) in the series", commits.len());
    for (hash, subject) in &commits {
        let out = ctx
            .cmd(tree.join("scripts/checkpatch.pl"))
            .dir(&tree)
            .args(["--strict", "--color=never", "--showfile"])
            .arg(format!("--ignore={}", CHECKPATCH_IGNORE.join(",")))
            .args(["-g", hash])
            .run_unchecked(&ctx.log("check-checkpatch"))?;
        let text = std::fs::read_to_string(&out.log)?;
        match checkpatch_totals(&text) {
            Some((0, 0, 0)) => {}
            Some((e, w, c)) => problems.push(format!(
                "checkpatch: \"{subject}\": {e} errors, {w} warnings, {c} checks\n{}",
                checkpatch_findings(&text)
            )),
            None => problems.push(format!(
                "checkpatch did not finish on \"{subject}\" (log: {})",
                out.log.display()
            )),
        }
    }

    if !commits.is_empty() && touches_rust(ctx, &tree, &head)? {
        let out = ctx.cache.join("build/rustfmt");
        std::fs::create_dir_all(&out)?;
        if let Err(e) = ctx
            .cmd("make")
            .dir(&tree)
            .args(build::make_args(ctx, &out))
            .arg("rustfmtcheck")
            .run(&ctx.log("check-rustfmt"))
        {
            problems.push(format!("rustfmtcheck: {e:#}"));
        }
    }

    if build_each {
        for (hash, subject) in &commits {
            eprintln!("  building \"{subject}\" on its own");
            build::sync_build_tree(ctx, hash)?;
            build::configure(ctx, "default", &[])?;
            if let Err(e) = build::build(ctx, "default") {
                problems.push(format!("\"{subject}\" does not build on its own: {e:#}"));
            }
        }
    }

    if !problems.is_empty() {
        bail!("{} problem(s):\n- {}", problems.len(), problems.join("\n- "));
    }
    Ok(())
}

/// The non-cover commits of the applied series: (hash, subject).
fn patch_commits(ctx: &Ctx, tree: &Path) -> Result<Vec<(String, String)>> {
    let out = ctx
        .git(tree)
        .args(["log", "--reverse", "--format=%H %s"])
        .arg(format!("{BASE_TAG}..HEAD"))
        .output()?;
    let mut commits = Vec::new();
    for l in out.lines() {
        let (hash, subject) = l.split_once(' ').unwrap_or((l, ""));
        let files = ctx
            .git(tree)
            .args(["diff-tree", "--no-commit-id", "--name-only", "-r", hash])
            .output()?;
        if !files.is_empty() {
            commits.push((hash.to_string(), subject.to_string()));
        }
    }
    Ok(commits)
}

fn touches_rust(ctx: &Ctx, tree: &Path, head: &str) -> Result<bool> {
    let files = ctx
        .git(tree)
        .args(["diff", "--name-only", BASE_TAG, head])
        .output()?;
    Ok(files.lines().any(|f| f.ends_with(".rs")))
}

/// checkpatch's ERROR/WARNING/CHECK messages with the line each points at.
fn checkpatch_findings(out: &str) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let mut found = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if ["ERROR:", "WARNING:", "CHECK:"].iter().any(|p| l.contains(p)) {
            found.extend(lines[i..(i + 3).min(lines.len())].iter().map(|l| format!("    | {l}")));
        }
    }
    found.join("\n")
}

/// `total: E errors, W warnings, C checks, ...` of checkpatch's summary.
pub fn checkpatch_totals(out: &str) -> Option<(u32, u32, u32)> {
    let line = out.lines().rev().find(|l| l.starts_with("total: "))?;
    let nums: Vec<u32> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    match nums.as_slice() {
        [e, w, c] => Some((*e, *w, *c)),
        _ => None,
    }
}

/// One mbox per sub-series (cover letter first), as `b4 am -m` and `git am`
/// (after dropping the cover) take them.
pub fn write_mboxes(ctx: &Ctx, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for s in &ctx.cfg.series {
        if s.patches.is_empty() {
            continue;
        }
        let mut mbox = String::new();
        for p in &s.patches {
            let path = ctx.root.join("patches").join(&s.name).join(p);
            let text = std::fs::read_to_string(&path)?;
            mbox.push_str(&text);
            if !text.ends_with('\n') {
                mbox.push('\n');
            }
        }
        let file = dir.join(format!("{}.mbx", s.name));
        std::fs::write(&file, mbox)?;
        // Prove the mbox is what b4 expects: it must find every patch.
        let out = tempfile::tempdir()?;
        ctx.cmd("b4")
            .args(["--offline-mode", "am", "--no-parent", "-m"])
            .arg(&file)
            .arg("-o")
            .arg(out.path())
            .timeout(Duration::from_secs(120))
            .run(&ctx.log(&format!("mbox-b4-am-{}", s.name)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn checkpatch_summary() {
        let out = "WARNING: line length of 101 exceeds 100 columns\n#12: FILE: mm/gup.c:3500:\n\ntotal: 0 errors, 1 warnings, 2 checks, 120 lines checked\n";
        assert_eq!(super::checkpatch_totals(out), Some((0, 1, 2)));
        assert_eq!(super::checkpatch_totals("no summary"), None);
        let f = super::checkpatch_findings(out);
        assert!(f.contains("WARNING: line length") && f.contains("FILE: mm/gup.c"));
    }
}
