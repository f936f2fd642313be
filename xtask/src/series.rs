//! The series: applying patches/ to the base, the edit worktree, and export.

use crate::config::SubSeries;
use crate::ctx::{Ctx, BASE_TAG};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The cover letter of each `patches/<series>/`, written by export.
pub const COVER_LETTER: &str = "0000-cover-letter.patch";

/// Marks an empty cover commit, as `b4 prep` does.
const TRACKING: &str = "--- b4-submit-tracking ---";

/// Top-level kernel directories under which the project keeps exported copies
/// of the files the series adds.
pub const KERNEL_DIRS: &[&str] = &[
    "Documentation",
    "drivers",
    "include",
    "io_uring",
    "lib",
    "mm",
    "net",
    "rust",
    "samples",
    "tools",
];

/// The message of a sub-series' cover commit.
pub fn cover_message(s: &SubSeries, all: &[SubSeries]) -> String {
    let prereqs: Vec<String> = s
        .prerequisites
        .iter()
        .filter_map(|p| all.iter().find(|x| &x.name == p))
        .map(|p| format!("change-id: {}:v1", p.change_id))
        .collect();
    let tracking = serde_json::json!({
        "series": {
            "revision": 1,
            "change-id": s.change_id,
            "prefixes": s.prefixes,
            "presubject": "",
        },
        "prerequisites": prereqs,
    });
    format!(
        "{}\n\n{}\n\n{TRACKING}\n# This section is used internally by b4 prep for tracking purposes.\n{}\n",
        s.subject.trim(),
        s.cover.trim(),
        tracking
    )
}

/// Subject, body and change-id of a cover commit message, or None if the
/// message is not one.
pub fn parse_cover(msg: &str) -> Option<(String, String, String)> {
    let (text, tracking) = msg.split_once(TRACKING)?;
    let json = tracking.lines().find(|l| l.trim_start().starts_with('{'))?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let change_id = v["series"]["change-id"].as_str()?.to_string();
    let (subject, body) = text.split_once('\n').unwrap_or((text, ""));
    Some((
        subject.trim().to_string(),
        body.trim().to_string(),
        change_id,
    ))
}

/// Applies patches/ on the base in the scratch worktree, one sub-series after
/// the other, each behind its cover commit. Returns the resulting commit.
pub fn apply(ctx: &Ctx) -> Result<String> {
    apply_series(ctx, &ctx.cfg.series.iter().collect::<Vec<_>>())
}

/// Applies sub-series `name` on the base with its prerequisites only, in
/// series.toml's order, as a maintainer of its tree would take it.
pub fn apply_alone(ctx: &Ctx, name: &str) -> Result<String> {
    let needs = ctx.cfg.prerequisites_of(name);
    let subs: Vec<&SubSeries> = ctx
        .cfg
        .series
        .iter()
        .filter(|s| s.name == name || needs.contains(s.name.as_str()))
        .collect();
    apply_series(ctx, &subs)
}

fn apply_series(ctx: &Ctx, subs: &[&SubSeries]) -> Result<String> {
    let tree = ctx.apply_tree();
    let repo = ctx.repo();
    if !tree.join(".git").exists() {
        ctx.git(&repo)
            .args(["worktree", "prune"])
            .run(&ctx.log("apply-prune"))?;
        ctx.git(&repo)
            .args(["worktree", "add", "-f", "--detach"])
            .arg(&tree)
            .arg(BASE_TAG)
            .timeout(Duration::from_secs(900))
            .run(&ctx.log("apply-worktree"))?;
    }
    let git = |args: &[&str]| ctx.git(&tree).args(args);
    let _ = git(&["am", "--abort"]).output();
    git(&["checkout", "-q", "-f", "--detach", BASE_TAG]).run(&ctx.log("apply-reset"))?;
    git(&["clean", "-q", "-fd"]).run(&ctx.log("apply-clean"))?;
    for s in subs {
        let msg = cover_message(s, &ctx.cfg.series);
        committer(git(&["commit", "-q", "--allow-empty", "-m", &msg]))
            .env("GIT_AUTHOR_NAME", "pinfd-series")
            .env("GIT_AUTHOR_EMAIL", "apply@pinfd-series.invalid")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .run(&ctx.log("apply-cover"))?;
        for p in &s.patches {
            let path = ctx.root.join("patches").join(&s.name).join(p);
            if !path.exists() {
                bail!(
                    "series.toml lists {} but the file is missing: run `cargo xtask export` or fix series.toml",
                    path.display()
                );
            }
            let log = ctx.log("apply-git-am");
            if let Err(e) = committer(git(&["am", "-q", "-3", "--keep-cr"]).arg(&path)).run(&log) {
                let _ = git(&["am", "--abort"]).output();
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                bail!(
                    "patch patches/{}/{p} does not apply to the base{}\n\
                     rebase it in the worktree (`cargo xtask tree`), then `cargo xtask export`\n\
                     git am said:\n{}",
                    s.name,
                    conflicting_files(&text)
                        .map(|f| format!(" (in {f})"))
                        .unwrap_or_default(),
                    e
                );
            }
        }
    }
    git(&["rev-parse", "HEAD"]).output()
}

/// Fixed committer dates keep the applied commits, and so the build, the same
/// from run to run.
fn committer(c: crate::proc::Cmd) -> crate::proc::Cmd {
    c.env("GIT_COMMITTER_NAME", "pinfd-series")
        .env("GIT_COMMITTER_EMAIL", "apply@pinfd-series.invalid")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
}

/// The files git am names in its conflict messages.
fn conflicting_files(am_output: &str) -> Option<String> {
    let files: BTreeSet<&str> = am_output
        .lines()
        .filter_map(|l| {
            l.strip_prefix("error: patch failed: ")
                .map(|r| r.rsplit_once(':').map_or(r, |x| x.0))
                .or_else(|| l.strip_prefix("CONFLICT (content): Merge conflict in "))
                .or_else(|| {
                    l.strip_prefix("error: ")
                        .and_then(|r| r.strip_suffix(": patch does not apply"))
                })
                .or_else(|| {
                    l.strip_prefix("error: ")
                        .and_then(|r| r.strip_suffix(": does not exist in index"))
                })
        })
        .collect();
    (!files.is_empty()).then(|| files.into_iter().collect::<Vec<_>>().join(", "))
}

/// `tree`: the edit worktree at base + series, on branch `series`.
pub fn tree(ctx: &Ctx, reset: bool) -> Result<PathBuf> {
    let edit = ctx.edit_tree();
    if edit.join(".git").exists() {
        if !reset {
            bail!(
                "{} already exists. Export your work (`cargo xtask export`), then rerun with --reset to recreate it",
                edit.display()
            );
        }
        ensure_clean(ctx, &edit)?;
        std::fs::remove_dir_all(&edit)?;
    }
    let head = apply(ctx)?;
    ctx.git(&ctx.repo())
        .args(["worktree", "prune"])
        .run(&ctx.log("tree-prune"))?;
    // Each clone has its own branch name, so several clones can share the cache.
    let branch = format!("series-{}", short_hash(&ctx.root.to_string_lossy()));
    ctx.git(&ctx.repo())
        .args(["worktree", "add", "-f", "-B", &branch])
        .arg(&edit)
        .arg(&head)
        .timeout(Duration::from_secs(900))
        .run(&ctx.log("tree-worktree"))?;
    Ok(edit)
}

fn short_hash(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..4])
}

/// The edit worktree's HEAD commit (it shares the cache repository, so the
/// build tree can check it out).
pub fn worktree_head(ctx: &Ctx) -> Result<String> {
    let edit = ctx.edit_tree();
    if !edit.join(".git").exists() {
        bail!(
            "no worktree at {}: run `cargo xtask tree` first",
            edit.display()
        );
    }
    let dirty = ctx
        .git(&edit)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()?;
    if !dirty.is_empty() {
        eprintln!(
            "  note: uncommitted changes in {} are not built",
            edit.display()
        );
    }
    ctx.git(&edit).args(["rev-parse", "HEAD"]).output()
}

pub fn ensure_clean(ctx: &Ctx, tree: &Path) -> Result<()> {
    let status = ctx
        .git(tree)
        .args(["status", "--porcelain", "--untracked-files=normal"])
        .output()?;
    if !status.is_empty() {
        bail!(
            "the worktree {} has uncommitted changes:\n{}\ncommit them (git commit --fixup <patch>; git rebase -i --autosquash {BASE_TAG}) or stash them first",
            tree.display(),
            status.lines().take(10).collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// One commit of a worktree's history since the base.
pub struct Commit {
    pub hash: String,
    pub message: String,
    /// The files it changes; none for cover commits.
    pub files: Vec<String>,
}

impl Commit {
    /// Cover commits change no file.
    pub fn empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn subject(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

/// The commits from the base to HEAD of `tree`, oldest first.
pub fn commits(ctx: &Ctx, tree: &Path) -> Result<Vec<Commit>> {
    let list = ctx
        .git(tree)
        .args(["rev-list", "--reverse", "--first-parent"])
        .arg(format!("{BASE_TAG}..HEAD"))
        .output()?;
    list.lines()
        .map(|hash| {
            let message = ctx
                .git(tree)
                .args(["log", "-1", "--format=%B", hash])
                .output()?;
            let files = ctx
                .git(tree)
                .args(["diff-tree", "--no-commit-id", "--name-only", "-r", hash])
                .output()?;
            Ok(Commit {
                hash: hash.to_string(),
                message,
                files: files.lines().map(str::to_string).collect(),
            })
        })
        .collect()
}

/// `export`: writes patches/<series>/ and the exported new files from the
/// edit worktree, and the patch lists (and edited covers) into series.toml.
pub fn export(ctx: &Ctx) -> Result<()> {
    let edit = ctx.edit_tree();
    if !edit.join(".git").exists() {
        bail!(
            "no worktree at {}: run `cargo xtask tree` first",
            edit.display()
        );
    }
    ensure_clean(ctx, &edit)?;
    let commits = commits(ctx, &edit)?;
    // Split the history at cover commits.
    let mut groups: Vec<(&SubSeries, &Commit, Vec<&Commit>)> = Vec::new();
    for c in &commits {
        if c.empty() && c.message.contains(TRACKING) {
            let (_, _, change_id) = parse_cover(&c.message)
                .with_context(|| format!("cover commit {} has unreadable b4 tracking", c.hash))?;
            let s = ctx
                .cfg
                .series
                .iter()
                .find(|s| s.change_id == change_id)
                .with_context(|| {
                    format!("cover commit {} has change-id {change_id}, which series.toml does not list", c.hash)
                })?;
            groups.push((s, c, Vec::new()));
        } else if let Some(g) = groups.last_mut() {
            g.2.push(c);
        } else {
            bail!(
                "commit {} comes before any sub-series cover commit; move it after one (git rebase -i {BASE_TAG})",
                &c.hash[..12]
            );
        }
    }
    let mut doc: toml_edit::DocumentMut = std::fs::read_to_string(ctx.root.join("series.toml"))?
        .parse()
        .context("series.toml")?;
    for (i, (s, cover, patches)) in groups.iter().enumerate() {
        let out_dir = ctx.root.join("patches").join(&s.name);
        // format-patch names every commit below the sub-series as a
        // prerequisite; only those of its declared prerequisites are.
        let needs = ctx.cfg.prerequisites_of(&s.name);
        let mut unrelated = HashSet::new();
        for (earlier, _, commits) in &groups[..i] {
            if !needs.contains(earlier.name.as_str()) {
                unrelated.extend(commits.iter().map(|c| c.hash.clone()));
            }
        }
        // The list names the patches only; the cover letter is COVER_LETTER.
        let names = if patches.is_empty() {
            Vec::new()
        } else {
            let last = patches.last().unwrap();
            format_patches(ctx, &edit, s, cover, last, &unrelated, &out_dir)?
        };
        if patches.is_empty() && out_dir.exists() {
            std::fs::remove_dir_all(&out_dir)?;
        }
        let (subject, body, _) = parse_cover(&cover.message).unwrap();
        let tables = doc["series"]
            .as_array_of_tables_mut()
            .context("series.toml: [[series]] must be an array of tables")?;
        let t = tables
            .iter_mut()
            .find(|t| t["name"].as_str() == Some(s.name.as_str()))
            .unwrap();
        t["patches"] = toml_edit::value(names.iter().collect::<toml_edit::Array>());
        if subject != s.subject.trim() {
            t["subject"] = toml_edit::value(subject);
        }
        if body != s.cover.trim() {
            t["cover"] = toml_edit::value(body);
        }
    }
    std::fs::write(ctx.root.join("series.toml"), doc.to_string())?;
    export_new_files(ctx, &edit)?;
    Ok(())
}

/// `git format-patch` of one sub-series into `out_dir`, with a cover letter
/// carrying base-commit, change-id and prerequisite lines. Returns the names
/// of the patch files (the cover letter included, first).
fn format_patches(
    ctx: &Ctx,
    tree: &Path,
    s: &SubSeries,
    cover: &Commit,
    last: &Commit,
    unrelated: &HashSet<String>,
    out_dir: &Path,
) -> Result<Vec<String>> {
    let tmp = tempfile::tempdir()?;
    let prefix = std::iter::once("PATCH")
        .chain(s.prefixes.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ");
    let base = crate::fetch::base_commit(ctx)?;
    ctx.git(tree)
        .args([
            "format-patch",
            "-q",
            "--zero-commit",
            "--no-signature",
            "--cover-letter",
            "--encode-email-headers",
        ])
        .arg(format!("--subject-prefix={prefix}"))
        .arg(format!("--base={base}"))
        .arg("-o")
        .arg(tmp.path())
        .arg(format!("{}..{}", cover.hash, last.hash))
        .run(&ctx.log("export-format-patch"))?;
    let mut names: Vec<String> = std::fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".patch"))
        .collect();
    // The cover letter is always 0000-cover-letter.patch; the list holds the patches.
    names.sort();
    // The commits below the sub-series, in the order of format-patch's
    // prerequisite-patch-id lines, and whether each is to be dropped.
    let below = ctx
        .git(tree)
        .args(["rev-list", "--reverse"])
        .arg(format!("{base}..{}", cover.hash))
        .output()?;
    let drop: Vec<bool> = below
        .lines()
        .map(|h| unrelated.contains(h.trim()))
        .collect();
    let (subject, body, _) = parse_cover(&cover.message).unwrap();
    let prereq_ids: Vec<String> = s
        .prerequisites
        .iter()
        .filter_map(|p| ctx.cfg.series.iter().find(|x| &x.name == p))
        .map(|p| format!("prerequisite-change-id: {}:v1", p.change_id))
        .collect();
    let cover_file = tmp.path().join(COVER_LETTER);
    let letter = std::fs::read_to_string(&cover_file)?;
    let date = ctx
        .git(tree)
        .args(["log", "-1", "--format=%aD", &last.hash])
        .output()?;
    let letter = fill_cover_letter(
        &letter,
        &subject,
        &body,
        &s.change_id,
        &prereq_ids,
        &drop,
        &date,
    );
    std::fs::write(&cover_file, letter)?;
    if out_dir.exists() {
        std::fs::remove_dir_all(out_dir)?;
    }
    std::fs::create_dir_all(out_dir)?;
    for n in &names {
        std::fs::copy(tmp.path().join(n), out_dir.join(n))?;
    }
    names.retain(|n| n != COVER_LETTER);
    Ok(names)
}

/// Fills format-patch's placeholders and adds b4's trailer lines after
/// `base-commit:`. The Date becomes that of the newest patch, so re-exporting
/// an unchanged series writes identical files.
pub fn fill_cover_letter(
    letter: &str,
    subject: &str,
    body: &str,
    change_id: &str,
    prereqs: &[String],
    drop: &[bool],
    date: &str,
) -> String {
    let mut out = String::new();
    let mut below = drop.iter();
    for line in letter.lines() {
        if line.starts_with("Date: ") {
            out.push_str(&format!("Date: {date}\n"));
        } else if line.contains("*** SUBJECT HERE ***") {
            out.push_str(&line.replace("*** SUBJECT HERE ***", subject));
            out.push('\n');
        } else if line == "*** BLURB HERE ***" {
            out.push_str(body);
            out.push('\n');
        } else if let Some(id) = line.strip_prefix("prerequisite-patch-id: ") {
            // The lines follow the commits below; drop those of empty cover
            // commits and of sub-series this one does not need.
            let unrelated = below.next().copied().unwrap_or(false);
            if !unrelated && !id.bytes().all(|b| b == b'0') {
                out.push_str(line);
                out.push('\n');
            }
        } else if line.starts_with("base-commit: ") {
            out.push_str(line);
            out.push('\n');
            out.push_str(&format!("change-id: {change_id}\n"));
            for p in prereqs {
                out.push_str(p);
                out.push('\n');
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Files the series adds, relative paths, as of `rev`.
pub fn new_files(ctx: &Ctx, tree: &Path, rev: &str) -> Result<Vec<String>> {
    let out = ctx
        .git(tree)
        .args([
            "diff",
            "--name-only",
            "--diff-filter=A",
            "--no-renames",
            BASE_TAG,
            rev,
        ])
        .output()?;
    Ok(out.lines().map(str::to_string).collect())
}

/// Files under the project's kernel-path directories.
pub fn exported_files(ctx: &Ctx) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for d in KERNEL_DIRS {
        let dir = ctx.root.join(d);
        if dir.exists() {
            walk(&ctx.root, &dir, &mut out)?;
        }
    }
    out.sort();
    Ok(out)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            walk(root, &p, out)?;
        } else {
            out.push(p.strip_prefix(root)?.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn export_new_files(ctx: &Ctx, tree: &Path) -> Result<()> {
    let new = new_files(ctx, tree, "HEAD")?;
    for old in exported_files(ctx)? {
        if !new.contains(&old) {
            std::fs::remove_file(ctx.root.join(&old))?;
        }
    }
    for f in &new {
        let dst = ctx.root.join(f);
        std::fs::create_dir_all(dst.parent().unwrap())?;
        std::fs::copy(tree.join(f), &dst)?;
    }
    Ok(())
}

/// Differences between the project's exported files and the files the
/// applied series adds at `rev` of `tree`.
pub fn exported_mismatches(ctx: &Ctx, tree: &Path, rev: &str) -> Result<Vec<String>> {
    let new = new_files(ctx, tree, rev)?;
    let have = exported_files(ctx)?;
    let mut problems = Vec::new();
    for f in &new {
        if !f
            .split('/')
            .next()
            .is_some_and(|top| KERNEL_DIRS.contains(&top))
        {
            continue;
        }
        let want = ctx
            .git(tree)
            .args(["show", &format!("{rev}:{f}")])
            .output()?;
        match std::fs::read_to_string(ctx.root.join(f)) {
            Ok(got) if got.trim_end() == want.trim_end() => {}
            Ok(_) => problems.push(format!("{f}: differs from the patches")),
            Err(_) => problems.push(format!("{f}: added by the patches but not exported")),
        }
    }
    for f in have {
        if !new.contains(&f) {
            problems.push(format!("{f}: exported but no patch adds it"));
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(name: &str, prereqs: &[&str]) -> SubSeries {
        SubSeries {
            name: name.into(),
            subject: format!("{name}: subject"),
            cover: "Why.\n\nHow.".into(),
            change_id: format!("20261121-{name}-0123456789ab"),
            prefixes: vec![],
            prerequisites: prereqs.iter().map(|s| s.to_string()).collect(),
            patches: vec![],
            fixes: false,
            tree: None,
        }
    }

    #[test]
    fn cover_message_round_trips() {
        let all = [sub("mm", &[]), sub("net", &["mm"])];
        let msg = cover_message(&all[1], &all);
        assert!(msg.contains("\"change-id: 20261121-mm-0123456789ab:v1\""));
        let (subject, body, id) = parse_cover(&msg).unwrap();
        assert_eq!(subject, "net: subject");
        assert_eq!(body, "Why.\n\nHow.");
        assert_eq!(id, "20261121-net-0123456789ab");
        assert!(parse_cover("mm/gup: a normal commit\n\nBody").is_none());
    }

    #[test]
    fn cover_letter_is_filled() {
        let letter = "From 0000 Mon Sep 17 00:00:00 2001\nDate: Sat, 21 Nov 2026 19:00:00 +0000\nSubject: [PATCH 0/2] *** SUBJECT HERE ***\n\n*** BLURB HERE ***\n\nA (2):\n  x\n\nbase-commit: 27f69a95\nprerequisite-patch-id: 0000000000000000000000000000000000000000\nprerequisite-patch-id: abc\nprerequisite-patch-id: def\n";
        // def: a patch of an earlier sub-series this one does not need.
        let out = fill_cover_letter(
            letter,
            "mm/gup: add pin_user_pages_fd()",
            "Body.",
            "20261121-x-0123",
            &["prerequisite-change-id: 20261121-mm-0123:v1".into()],
            &[false, false, true],
            "Thu, 1 Jan 2026 00:00:00 +0000",
        );
        assert!(!out.contains("def"));
        assert!(out.contains("Subject: [PATCH 0/2] mm/gup: add pin_user_pages_fd()\n"));
        assert!(out.contains("\nBody.\n"));
        assert!(out.contains("Date: Thu, 1 Jan 2026 00:00:00 +0000\n"));
        assert!(out.contains(
            "base-commit: 27f69a95\nchange-id: 20261121-x-0123\nprerequisite-change-id: 20261121-mm-0123:v1\nprerequisite-patch-id: abc\n"
        ));
    }

    #[test]
    fn conflicts_name_the_file() {
        let out = "Applying: mm/gup: add pin_user_pages_fd()\nerror: patch failed: mm/gup.c:3512\nerror: mm/gup.c: patch does not apply\nPatch failed at 0001 mm/gup: add pin_user_pages_fd()\n";
        assert_eq!(conflicting_files(out).as_deref(), Some("mm/gup.c"));
        let out = "CONFLICT (content): Merge conflict in include/linux/mm.h\n";
        assert_eq!(
            conflicting_files(out).as_deref(),
            Some("include/linux/mm.h")
        );
        assert_eq!(conflicting_files("Applying: x\n"), None);
    }
}
