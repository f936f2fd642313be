//! `check`: the series applies, the exported files match it, every patch is
//! checkpatch-clean (--strict), adds no kernel-doc, sparse or W=1 warning
//! (see lint.rs), has well-formed `Fixes:` tags, Rust is rustfmt-clean,
//! MAINTAINERS covers the new files, and optionally every patch builds on
//! its own. Also writes b4-ready mboxes, To/Cc filled from MAINTAINERS.

use crate::config::SubSeries;
use crate::ctx::{Ctx, BASE_TAG};
use crate::maint::Recipients;
use crate::{build, fetch, fixes, lint, maint, series};
use anyhow::{bail, Result};
use std::collections::HashSet;
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
    // The base is a release tarball made into one commit, without
    // upstream's history: a Fixes: tag's upstream commit cannot be found.
    "UNKNOWN_COMMIT_ID",
];

/// The static checks; `build`: also build each patch on its own, from the
/// first (1-based) to the second, or the last patch if None.
pub fn check(ctx: &Ctx, build: Option<(usize, Option<usize>)>) -> Result<()> {
    let head = series::apply(ctx)?;
    let tree = ctx.apply_tree();
    let mut problems = Vec::new();

    for p in series::exported_mismatches(ctx, &tree, &head)? {
        problems.push(format!("export: {p} (run `cargo xtask export`)"));
    }

    let in_series = patch_commits(ctx, &tree)?;
    let commits: Vec<&series::Commit> = in_series.iter().map(|(_, c)| c).collect();
    eprintln!("  {} patch(es) in the series", commits.len());
    problems.extend(fixes_problems(ctx, &in_series)?);
    for c in &commits {
        let (hash, subject) = (&c.hash, c.subject());
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

    if !commits.is_empty() {
        problems.extend(lint::check(ctx, &tree, &commits, &head)?);
    }

    let new = series::new_files(ctx, &tree, &head)?;
    for f in maint::uncovered(ctx, &tree, &new)? {
        problems.push(format!(
            "MAINTAINERS: no entry of its own covers the new file {f} (only THE REST or RUST): add an F: line to its subsystem's entry"
        ));
    }

    if let Some((from, to)) = build {
        let to = to.unwrap_or(commits.len());
        if from == 0 || from > to || to > commits.len() {
            bail!(
                "--from {from} --to {to}: the series has patches 1 to {}",
                commits.len()
            );
        }
        for (i, c) in commits.iter().enumerate().take(to).skip(from - 1) {
            let subject = c.subject();
            eprintln!(
                "  building patch {}/{} \"{subject}\" on its own",
                i + 1,
                commits.len()
            );
            build::sync_build_tree(ctx, &c.hash)?;
            build::configure(ctx, "default", &[], build::Dropped::AllowUndefined)?;
            match build::build(ctx, "default") {
                Err(e) => problems.push(format!("\"{subject}\" does not build on its own: {e:#}")),
                Ok(built) if !built.warnings.is_empty() => problems.push(format!(
                    "\"{subject}\" builds with warnings:\n  {}",
                    built.warnings.join("\n  ")
                )),
                Ok(_) => {}
            }
        }
    }

    if let Err(e) = write_mboxes(ctx, &tree, &ctx.root.join("work/mbox")) {
        problems.push(format!("mbox: {e:#}"));
    }

    // Each sub-series on its own prerequisites, as its tree takes it; the
    // scratch tree is left there (every command applies anew).
    for (i, s) in ctx.cfg.series.iter().enumerate() {
        if ctx.cfg.prerequisites_of(&s.name).len() == i {
            continue; // it needs every sub-series before it: applied above
        }
        eprintln!("  applying {} on its prerequisites alone", s.name);
        if let Err(e) = series::apply_alone(ctx, &s.name) {
            problems.push(format!(
                "{} does not apply on its prerequisites alone ({}): {e:#}",
                s.name,
                if s.prerequisites.is_empty() {
                    "the base".to_string()
                } else {
                    s.prerequisites.join(", ")
                }
            ));
        }
    }

    if !problems.is_empty() {
        bail!(
            "{} problem(s):\n- {}",
            problems.len(),
            problems.join("\n- ")
        );
    }
    Ok(())
}

/// The non-cover commits of the applied series, with their sub-series (a
/// cover commit starts each, in series.toml's order).
fn patch_commits<'a>(ctx: &'a Ctx, tree: &Path) -> Result<Vec<(&'a SubSeries, series::Commit)>> {
    let mut subs = ctx.cfg.series.iter();
    let mut current = None;
    let mut out = Vec::new();
    for c in series::commits(ctx, tree)? {
        if c.empty() {
            current = subs.next();
        } else if let Some(s) = current {
            out.push((s, c));
        }
    }
    Ok(out)
}

/// `Fixes:` tags: the kernel's format, one on every patch of a fix
/// sub-series but the tests that follow a tagged fix in it (patches that
/// change only tools/testing/), and, when the base has a history (`fetch --from-git`), the
/// commit and its subject there.
fn fixes_problems(ctx: &Ctx, commits: &[(&SubSeries, series::Commit)]) -> Result<Vec<String>> {
    let history = fetch::history(ctx);
    let base = fetch::base_commit(ctx)?;
    let mut problems = Vec::new();
    // Fix sub-series with a tagged patch so far: a test that follows one is
    // that fix's test.
    let mut tagged: HashSet<&str> = HashSet::new();
    for (s, c) in commits {
        let tags = fixes::tags(&c.message);
        let subject = c.subject();
        if !tags.is_empty() {
            tagged.insert(&s.name);
        }
        let a_fixs_test = only_tests(&c.files) && tagged.contains(s.name.as_str());
        if s.fixes && tags.is_empty() && !a_fixs_test {
            problems.push(format!(
                "Fixes: \"{subject}\" is in the fix sub-series {} but has no Fixes: tag",
                s.name
            ));
        }
        for t in tags {
            let checked = t.and_then(|t| match &history {
                Some(h) => fixes::verify(h, &base, &t),
                None => Ok(()),
            });
            if let Err(e) = checked {
                problems.push(format!("Fixes: \"{subject}\": {e}"));
            }
        }
    }
    for s in ctx.cfg.series.iter().filter(|s| s.fixes) {
        if !tagged.contains(s.name.as_str()) && commits.iter().any(|(x, _)| x.name == s.name) {
            problems.push(format!(
                "Fixes: the fix sub-series {} has no patch with a Fixes: tag",
                s.name
            ));
        }
    }
    if history.is_none() && !commits.is_empty() {
        eprintln!("  note: Fixes: tags checked for their format only: the base has no history (`fetch --from-git` gives one)");
    }
    Ok(problems)
}

/// A patch that changes only tests: in a fix sub-series it is a fix's test
/// and carries no Fixes: tag of its own.
fn only_tests(files: &[String]) -> bool {
    !files.is_empty() && files.iter().all(|f| f.starts_with("tools/testing/"))
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
        if ["ERROR:", "WARNING:", "CHECK:"]
            .iter()
            .any(|p| l.contains(p))
        {
            found.extend(
                lines[i..(i + 3).min(lines.len())]
                    .iter()
                    .map(|l| format!("    | {l}")),
            );
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
/// (after dropping the cover) take them, To and Cc filled from the
/// MAINTAINERS of `tree` (the applied series) as `b4 prep --auto-to-cc`
/// does: each patch to its own maintainers, the cover to all of them.
pub fn write_mboxes(ctx: &Ctx, tree: &Path, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    for s in &ctx.cfg.series {
        if s.patches.is_empty() {
            continue;
        }
        let patch_dir = ctx.root.join("patches").join(&s.name);
        let mut cover = Recipients::default();
        // The maintainers of the code the sub-series changes (not of its
        // tests), who apply it: every patch goes to them too.
        let mut appliers = Recipients::default();
        let mut patches = Vec::new();
        for p in &s.patches {
            let path = patch_dir.join(p);
            let to = maint::for_patch(ctx, tree, &path)?;
            cover.merge(&to);
            if !only_tests(&maint::patch_files(&std::fs::read_to_string(&path)?)) {
                appliers.merge(&to);
            }
            patches.push((p.as_str(), to));
        }
        for (_, to) in &mut patches {
            to.cc_maintainers(&appliers);
        }
        let mut mbox = String::new();
        let messages = std::iter::once((crate::series::COVER_LETTER, cover)).chain(patches);
        for (n, (p, to)) in messages.enumerate() {
            let text = std::fs::read_to_string(patch_dir.join(p))?;
            mbox.push_str(&with_thread_headers(&text, &s.change_id, n, &to));
            if !text.ends_with('\n') {
                mbox.push('\n');
            }
        }
        let file = dir.join(format!("{}.mbx", s.name));
        std::fs::write(&file, mbox)?;
        // Prove the mbox is what b4 expects: it must find every patch.
        let out = tempfile::tempdir()?;
        ctx.cmd("b4")
            .args(["--offline-mode", "am", "-m"])
            .arg(&file)
            .arg("-o")
            .arg(out.path())
            .arg(message_id(&s.change_id, 0))
            .timeout(Duration::from_secs(120))
            .run(&ctx.log(&format!("mbox-b4-am-{}", s.name)))?;
        let got = std::fs::read_dir(out.path())?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(".mbx"))
            .map(|e| std::fs::read_to_string(e.path()))
            .transpose()?
            .unwrap_or_default();
        let applied =
            got.matches("\nSubject: [PATCH").count() + got.starts_with("Subject:") as usize;
        if applied != s.patches.len() {
            bail!(
                "b4 am found {applied} of the {} patches of {} in {}",
                s.patches.len(),
                s.name,
                file.display()
            );
        }
    }
    Ok(())
}

/// b4-style message-id of message `n` (0 = cover) of a sub-series.
fn message_id(change_id: &str, n: usize) -> String {
    let (name, hash) = change_id.rsplit_once('-').unwrap_or((change_id, "0"));
    format!("{name}-v1-{n}-{hash}@pinfd-series.invalid")
}

/// Adds To and Cc, Message-ID (and, for patches, In-Reply-To the cover)
/// before the Subject header, so that the mbox can be sent as it is and b4
/// and mail clients thread it.
fn with_thread_headers(mail: &str, change_id: &str, n: usize, to: &Recipients) -> String {
    let mut headers = to.headers();
    headers.push_str(&format!("Message-ID: <{}>\n", message_id(change_id, n)));
    if n > 0 {
        let cover = message_id(change_id, 0);
        headers.push_str(&format!("In-Reply-To: <{cover}>\nReferences: <{cover}>\n"));
    }
    match mail.find("\nSubject: ") {
        Some(i) => format!("{}\n{headers}{}", &mail[..i], &mail[i + 1..]),
        None => format!("{headers}{mail}"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tests_of_fixes_need_no_fixes_tag() {
        let files = |f: &[&str]| f.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(super::only_tests(&files(&[
            "tools/testing/selftests/mm/a.c"
        ])));
        assert!(!super::only_tests(&files(&[
            "tools/testing/selftests/mm/a.c",
            "mm/gup.c"
        ])));
        assert!(!super::only_tests(&files(&[])));
    }

    #[test]
    fn mbox_threading() {
        let mail =
            "From 0 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH 1/2] x\n\nbody\n";
        let to = crate::maint::parse_get_maintainer(
            "A M <am@x> (maintainer:MM)\nlinux-mm@kvack.org (open list:MM)\n",
        );
        let out = super::with_thread_headers(mail, "20261121-pin-fd-0123456789ab", 1, &to);
        assert!(out.contains(
            "From: A <a@b>\nTo: A M <am@x>\nCc: linux-mm@kvack.org\nMessage-ID: <20261121-pin-fd-v1-1-0123456789ab@pinfd-series.invalid>\nIn-Reply-To: <20261121-pin-fd-v1-0-0123456789ab@pinfd-series.invalid>\n"
        ));
        assert!(out.ends_with("Subject: [PATCH 1/2] x\n\nbody\n"));
    }

    #[test]
    fn checkpatch_summary() {
        let out = "WARNING: line length of 101 exceeds 100 columns\n#12: FILE: mm/gup.c:3500:\n\ntotal: 0 errors, 1 warnings, 2 checks, 120 lines checked\n";
        assert_eq!(super::checkpatch_totals(out), Some((0, 1, 2)));
        assert_eq!(super::checkpatch_totals("no summary"), None);
        let f = super::checkpatch_findings(out);
        assert!(f.contains("WARNING: line length") && f.contains("FILE: mm/gup.c"));
    }
}
