//! Recipients from MAINTAINERS (scripts/get_maintainer.pl), as `b4 prep
//! --auto-to-cc` collects them, and whether MAINTAINERS covers new files.

use crate::ctx::Ctx;
use anyhow::{Context, Result};
use std::path::Path;

/// get_maintainer.pl's options as b4 uses them (no git history, no Linus),
/// with role stats kept: they tell maintainers and reviewers from lists.
const GET_MAINTAINER: &[&str] = &["--nogit", "--nogit-fallback", "--nogit-chief-penguins"];

/// Sections that match whole top-level directories: a new file needs an
/// entry of its own subsystem besides them (the RUST entry is Cc'd on every
/// Rust file, but does not maintain drivers or subsystem abstractions).
const CATCH_ALL: &[&str] = &["THE REST", "RUST"];

/// The To and Cc of a message: To the maintainers and reviewers
/// (get_maintainer.pl --nol), Cc the lists (--nom) and the message's own Cc:
/// trailers. An address appears once, where it was first added.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recipients {
    pub to: Vec<String>,
    pub cc: Vec<String>,
}

impl Recipients {
    fn has(&self, addr: &str) -> bool {
        let key = email_of(addr).to_ascii_lowercase();
        self.to
            .iter()
            .chain(&self.cc)
            .any(|a| email_of(a).to_ascii_lowercase() == key)
    }

    fn add(&mut self, to: bool, addr: &str) {
        if !self.has(addr) {
            match to {
                true => self.to.push(addr.to_string()),
                false => self.cc.push(addr.to_string()),
            }
        }
    }

    /// Adds another message's recipients (the cover letter: all patches').
    pub fn merge(&mut self, other: &Recipients) {
        other.to.iter().for_each(|a| self.add(true, a));
        other.cc.iter().for_each(|a| self.add(false, a));
    }

    /// Adds the maintainers `tree` sends to (its To) as Cc, for a patch of
    /// a sub-series whose tree they run.
    pub fn cc_maintainers(&mut self, tree: &Recipients) {
        tree.to.iter().for_each(|a| self.add(false, a));
    }

    /// `To:` and `Cc:` mail headers, one address per (folded) line, names
    /// outside ASCII encoded (RFC 2047).
    pub fn headers(&self) -> String {
        let header = |name: &str, addrs: &[String]| match addrs {
            [] => String::new(),
            _ => format!(
                "{name}: {}\n",
                addrs
                    .iter()
                    .map(|a| encode_name(a))
                    .collect::<Vec<_>>()
                    .join(",\n ")
            ),
        };
        header("To", &self.to) + &header("Cc", &self.cc)
    }
}

/// The address of `Name <addr>` or of a bare `addr`.
fn email_of(a: &str) -> &str {
    match (a.rfind('<'), a.rfind('>')) {
        (Some(i), Some(j)) if i < j => &a[i + 1..j],
        _ => a.trim(),
    }
}

/// `"Christian König" <c@amd.com>` as `=?UTF-8?q?Christian_K=C3=B6nig?= <c@amd.com>`.
fn encode_name(a: &str) -> String {
    let Some(i) = a.rfind(" <") else {
        return a.to_string();
    };
    let (name, addr) = (a[..i].trim_matches('"'), &a[i..]);
    if name.is_ascii() {
        return a.to_string();
    }
    let q: String = name
        .bytes()
        .map(|b| match b {
            b' ' => "_".to_string(),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("={b:02X}"),
        })
        .collect();
    format!("=?UTF-8?q?{q}?={addr}")
}

/// Recipients from get_maintainer.pl's output with role stats:
/// `Name <addr> (maintainer:SECTION)`, `list@host (open list:SECTION)`.
pub fn parse_get_maintainer(out: &str) -> Recipients {
    let mut r = Recipients::default();
    for (addr, roles) in out.lines().filter_map(split_roles) {
        r.add(!roles.contains("list"), addr);
    }
    r
}

/// `Name <addr> (roles)` as (`Name <addr>`, `roles`); None for lines that
/// name no address (warnings).
fn split_roles(line: &str) -> Option<(&str, &str)> {
    let line = line.trim();
    // Roles follow the address; section names may hold parentheses.
    let end = line.find('>').map_or(0, |i| i + 1);
    let (addr, roles) = match line[end..].split_once(" (") {
        Some((a, r)) => (&line[..end + a.len()], r.strip_suffix(')').unwrap_or(r)),
        None => (line, ""),
    };
    addr.contains('@').then_some((addr, roles))
}

/// The sections get_maintainer.pl names for a file (`-f`), from the roles.
fn sections(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(split_roles)
        .flat_map(|(_, roles)| roles.split(','))
        .map(|role| role.split_once(':').map_or("THE REST", |(_, s)| s))
        .collect()
}

/// The `Cc:` trailers of a patch file's commit message (`# ...` comments
/// after the address dropped).
pub fn cc_trailers(patch: &str) -> Vec<String> {
    let body = patch.split_once("\n\n").map_or("", |(_, b)| b);
    body.lines()
        .take_while(|l| *l != "---")
        .filter_map(|l| l.strip_prefix("Cc: "))
        .map(|a| a.split(" #").next().unwrap_or(a).trim().to_string())
        .collect()
}

/// The recipients of one patch file, from MAINTAINERS of `tree`.
pub fn for_patch(ctx: &Ctx, tree: &Path, patch: &Path) -> Result<Recipients> {
    let out = get_maintainer(ctx, tree)
        .arg(patch)
        .output()
        .with_context(|| format!("get_maintainer.pl on {}", patch.display()))?;
    let mut r = parse_get_maintainer(&out);
    let text = std::fs::read_to_string(patch)?;
    for a in cc_trailers(&text) {
        r.add(false, &a);
    }
    Ok(r)
}

/// The files of `files` that no MAINTAINERS entry of `tree` covers other
/// than the catch-all ones.
pub fn uncovered(ctx: &Ctx, tree: &Path, files: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        let got = get_maintainer(ctx, tree)
            .arg("-f")
            .arg(f)
            .output()
            .with_context(|| format!("get_maintainer.pl -f {f}"))?;
        if sections(&got).iter().all(|s| CATCH_ALL.contains(s)) {
            out.push(f.clone());
        }
    }
    Ok(out)
}

fn get_maintainer(ctx: &Ctx, tree: &Path) -> crate::proc::Cmd {
    ctx.cmd("perl")
        .dir(tree)
        .arg(tree.join("scripts/get_maintainer.pl"))
        .args(GET_MAINTAINER)
}

/// The files a patch (format-patch output) changes.
pub fn patch_files(patch: &str) -> Vec<String> {
    patch
        .lines()
        .filter_map(|l| l.strip_prefix("diff --git a/"))
        .filter_map(|l| l.split_once(" b/").map(|(a, _)| a.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn files_of_a_patch() {
        let p = "Subject: x\n---\ndiff --git a/mm/gup.c b/mm/gup.c\nindex 1..2\ndiff --git a/tools/testing/x.c b/tools/testing/x.c\n";
        assert_eq!(super::patch_files(p), ["mm/gup.c", "tools/testing/x.c"]);
    }

    use super::*;

    const OUT: &str = r#"Andrew Morton <akpm@linux-foundation.org> (maintainer:MEMORY MANAGEMENT - CORE)
Jason Gunthorpe <jgg@ziepe.ca> (reviewer:MEMORY MANAGEMENT - GUP (GET USER PAGES))
"Christian König" <christian.koenig@amd.com> (maintainer:DMA BUFFER SHARING FRAMEWORK,reviewer:X)
linux-mm@kvack.org (open list:MEMORY MANAGEMENT - CORE)
linaro-mm-sig@lists.linaro.org (moderated list:DMA BUFFER SHARING FRAMEWORK)
linux-kernel@vger.kernel.org (open list)
"#;

    #[test]
    fn maintainers_and_reviewers_to_lists_cc() {
        let r = parse_get_maintainer(OUT);
        assert_eq!(
            r.to,
            [
                "Andrew Morton <akpm@linux-foundation.org>",
                "Jason Gunthorpe <jgg@ziepe.ca>",
                "\"Christian König\" <christian.koenig@amd.com>"
            ]
        );
        assert_eq!(
            r.cc,
            [
                "linux-mm@kvack.org",
                "linaro-mm-sig@lists.linaro.org",
                "linux-kernel@vger.kernel.org"
            ]
        );
        // Warnings of get_maintainer.pl are not addresses.
        let r = parse_get_maintainer("scripts/get_maintainer.pl: file 'x' not found\n");
        assert_eq!(r, Recipients::default());
    }

    #[test]
    fn cover_is_the_union_once_each() {
        let mut cover = Recipients::default();
        cover.merge(&parse_get_maintainer(OUT));
        let mut other = parse_get_maintainer(
            "Jakub Kicinski <kuba@kernel.org> (maintainer:NETWORKING [GENERAL])\nAKPM <AKPM@linux-foundation.org> (reviewer:X)\nnetdev@vger.kernel.org (open list:NETWORKING [GENERAL])\nlinux-kernel@vger.kernel.org (open list)\n",
        );
        other.add(false, "jgg@ziepe.ca");
        cover.merge(&other);
        assert_eq!(cover.to.len(), 4);
        assert_eq!(cover.to[3], "Jakub Kicinski <kuba@kernel.org>");
        assert_eq!(cover.cc.len(), 4);
        assert_eq!(cover.cc[3], "netdev@vger.kernel.org");
    }

    #[test]
    fn headers_fold_and_encode() {
        let r = parse_get_maintainer(OUT);
        let h = r.headers();
        assert!(h.starts_with(
            "To: Andrew Morton <akpm@linux-foundation.org>,\n Jason Gunthorpe <jgg@ziepe.ca>,\n =?UTF-8?q?Christian_K=C3=B6nig?= <christian.koenig@amd.com>\nCc: linux-mm@kvack.org,\n"
        ), "{h}");
        assert!(h.ends_with(" linux-kernel@vger.kernel.org\n"));
        assert_eq!(Recipients::default().headers(), "");
        assert_eq!(
            encode_name("\"Liam R. Howlett\" <liam@infradead.org>"),
            "\"Liam R. Howlett\" <liam@infradead.org>"
        );
    }

    #[test]
    fn cc_trailers_of_the_message() {
        let patch = "From 0 Mon Sep 17 00:00:00 2001\nFrom: A <a@b>\nSubject: [PATCH] x\n\nBody.\n\nFixes: 0123456789ab (\"y\")\nCc: stable@vger.kernel.org # 6.10+\nCc: B <b@c>\nSigned-off-by: A <a@b>\n---\n mm/gup.c | 1 +\n+Cc: not a trailer\n";
        assert_eq!(cc_trailers(patch), ["stable@vger.kernel.org", "B <b@c>"]);
    }

    #[test]
    fn catch_all_sections_do_not_cover() {
        let rust_only = "Miguel Ojeda <ojeda@kernel.org> (maintainer:RUST)\nrust-for-linux@vger.kernel.org (open list:RUST)\nlinux-kernel@vger.kernel.org (open list)\n";
        assert!(sections(rust_only).iter().all(|s| CATCH_ALL.contains(s)));
        assert!(!sections(OUT).iter().all(|s| CATCH_ALL.contains(s)));
    }
}
