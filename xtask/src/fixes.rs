//! `Fixes:` tags: the kernel's format, always; the commit and its subject,
//! against the base's history when the base has one (`fetch --from-git`).

use crate::proc::Cmd;
use std::path::Path;

/// A well-formed `Fixes: <hash> ("<subject>")` tag.
#[derive(Debug, PartialEq, Eq)]
pub struct Fixes {
    pub hash: String,
    pub subject: String,
}

/// The `Fixes:` tags of a commit message: each well-formed one, or what is
/// wrong with it. Only the message counts, not a diff after it.
pub fn tags(message: &str) -> Vec<Result<Fixes, String>> {
    message
        .lines()
        .take_while(|l| *l != "---")
        .filter(|l| l.len() >= 6 && l[..6].eq_ignore_ascii_case("fixes:"))
        .map(parse)
        .collect()
}

fn parse(line: &str) -> Result<Fixes, String> {
    let bad = |why: &str| {
        Err(format!(
            "malformed \"{line}\": {why}; the kernel's format is Fixes: <12 or more hex digits> (\"<subject>\")"
        ))
    };
    let Some(rest) = line.strip_prefix("Fixes: ") else {
        return bad("the tag is spelled `Fixes: ` (capital F, one space)");
    };
    let (hash, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !hash
        .bytes()
        .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return bad("the commit must be lower-case hex digits");
    }
    if hash.len() < 12 || hash.len() > 40 {
        return bad("the commit needs 12 to 40 hex digits");
    }
    let Some(subject) = rest.strip_prefix("(\"").and_then(|s| s.strip_suffix("\")")) else {
        return bad("the subject must follow in (\"...\")");
    };
    if subject.trim().is_empty() {
        return bad("the subject is empty");
    }
    Ok(Fixes {
        hash: hash.to_string(),
        subject: subject.to_string(),
    })
}

/// Checks a tag against the git history in `history`: the commit exists, is
/// an ancestor of `base` and has the tag's subject.
pub fn verify(history: &Path, base: &str, tag: &Fixes) -> Result<(), String> {
    let git = |args: &[&str]| {
        Cmd::new("git")
            .dir(history)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .args(args)
            .output()
    };
    let what = format!("Fixes: {} (\"{}\")", tag.hash, tag.subject);
    let Ok(full) = git(&[
        "rev-parse",
        "--verify",
        "-q",
        &format!("{}^{{commit}}", tag.hash),
    ]) else {
        return Err(format!(
            "{what}: no such commit (or an ambiguous prefix) in {}",
            history.display()
        ));
    };
    if git(&["merge-base", "--is-ancestor", &full, base]).is_err() {
        return Err(format!(
            "{what}: {} is not in the base's history (a commit of the series itself? squash the fix into it)",
            &full[..12]
        ));
    }
    let subject = git(&["log", "-1", "--format=%s", &full]).map_err(|e| format!("{e:#}"))?;
    if subject != tag.subject {
        return Err(format!(
            "{what}: the commit's subject is \"{subject}\"; write Fixes: {} (\"{subject}\")",
            &full[..12]
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_formed_tags() {
        let msg = "mm/gup: fix x\n\nBody.\n\nFixes: 89c1905d9c14 (\"mm/gup: introduce memfd_pin_folios() for pinning memfd folios\")\nCc: stable@vger.kernel.org\nSigned-off-by: A <a@b>\n---\n Fixes: not a tag\n";
        let t = tags(msg);
        assert_eq!(t.len(), 1);
        let t = t[0].as_ref().unwrap();
        assert_eq!(t.hash, "89c1905d9c14");
        assert_eq!(
            t.subject,
            "mm/gup: introduce memfd_pin_folios() for pinning memfd folios"
        );
        // Quotes inside the subject are fine.
        let t = tags("Fixes: 0123456789abcdef (\"Revert \"x\"\")");
        assert_eq!(t[0].as_ref().unwrap().subject, "Revert \"x\"");
        assert!(tags("no tags\n\nSigned-off-by: A <a@b>").is_empty());
    }

    #[test]
    fn malformed_tags() {
        for (line, why) in [
            ("Fixes: 89c1905d9c1 (\"short\")", "12 to 40"),
            ("Fixes: 89C1905D9C14 (\"upper\")", "lower-case"),
            ("Fixes: 89c1905d9c14 mm/gup: no quotes", "(\"...\")"),
            ("Fixes: 89c1905d9c14 (\"unterminated)", "(\"...\")"),
            ("Fixes: 89c1905d9c14", "(\"...\")"),
            ("Fixes: commit 89c1905d9c14 (\"x\")", "hex"),
            ("fixes: 89c1905d9c14 (\"x\")", "capital F"),
            ("Fixes:89c1905d9c14 (\"x\")", "one space"),
            ("Fixes: 89c1905d9c14 (\" \")", "empty"),
        ] {
            let t = tags(line);
            let e = t[0].as_ref().unwrap_err();
            assert!(e.contains(why) && e.contains("malformed"), "{line}: {e}");
        }
    }

    #[test]
    fn verified_against_history() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            Cmd::new("git")
                .dir(dir.path())
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .args(args)
                .output()
                .unwrap()
        };
        git(&["init", "-q"]);
        git(&["commit", "-q", "--allow-empty", "-m", "mm/gup: the bug"]);
        let bug = git(&["rev-parse", "HEAD"]);
        git(&["commit", "-q", "--allow-empty", "-m", "base"]);
        let base = git(&["rev-parse", "HEAD"]);
        git(&["commit", "-q", "--allow-empty", "-m", "after the base"]);
        let later = git(&["rev-parse", "HEAD"]);
        let tag = |hash: &str, subject: &str| Fixes {
            hash: hash[..12].to_string(),
            subject: subject.to_string(),
        };
        assert_eq!(
            verify(dir.path(), &base, &tag(&bug, "mm/gup: the bug")),
            Ok(())
        );
        let e = verify(dir.path(), &base, &tag(&bug, "mm/gup: a bug")).unwrap_err();
        assert!(e.contains("subject is \"mm/gup: the bug\""), "{e}");
        let e = verify(dir.path(), &base, &tag(&later, "after the base")).unwrap_err();
        assert!(e.contains("not in the base's history"), "{e}");
        let e = verify(dir.path(), &base, &tag("0123456789ab", "x")).unwrap_err();
        assert!(e.contains("no such commit"), "{e}");
    }
}
