//! `fetch`: the base tree as a git commit whose hash is the same everywhere.

use crate::ctx::{Ctx, BASE_TAG};
use crate::proc::Cmd;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Identity and date of the base commit: fixed, so the hash is reproducible.
const BASE_IDENT: [(&str, &str); 6] = [
    ("GIT_AUTHOR_NAME", "pinfd-series"),
    ("GIT_AUTHOR_EMAIL", "base@pinfd-series.invalid"),
    ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
    ("GIT_COMMITTER_NAME", "pinfd-series"),
    ("GIT_COMMITTER_EMAIL", "base@pinfd-series.invalid"),
    ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
];

/// Makes sure the cache repository holds the base, tagged `pinfd-base`.
/// With `from_git`, the base is `git_ref` of the user's own kernel checkout.
pub fn fetch(ctx: &Ctx, from_git: Option<(&Path, &str)>) -> Result<String> {
    let repo = ctx.repo();
    if let Some((path, git_ref)) = from_git {
        return fetch_from_checkout(ctx, path, git_ref);
    }
    let want = &ctx.cfg.base.commit;
    if repo.join(".git").exists() {
        if let Some(from) = history(ctx) {
            let have = base_commit(ctx)?;
            eprintln!(
                "  base is {have}, fetched from {} (`fetch --from-git`; remove {} to go back to series.toml's base)",
                from.display(),
                repo.display()
            );
            return Ok(have);
        }
        match base_commit(ctx) {
            Ok(have) if &have == want => return Ok(have),
            Ok(have) => bail!(
                "{} holds base {have}, but series.toml pins {want}\n\
                 remove {} (and {}) to fetch the pinned base again",
                repo.display(),
                repo.display(),
                ctx.apply_tree().display()
            ),
            Err(_) => bail!(
                "{} exists but has no {BASE_TAG} tag (an interrupted fetch?): remove it and rerun",
                repo.display()
            ),
        }
    }
    let deb = download_deb(ctx)?;
    let tmp = ctx.cache.join("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    eprintln!("  extracting {}", deb.display());
    Cmd::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(tmp.join("deb"))
        .run(&ctx.log("fetch-dpkg"))?;
    let tarball = tmp.join("deb").join(&ctx.cfg.base.tarball);
    if !tarball.exists() {
        bail!(
            "{} has no {}: is base.tarball right?",
            deb.display(),
            ctx.cfg.base.tarball
        );
    }
    Cmd::new("tar")
        .args(["-xf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&tmp)
        .timeout(Duration::from_secs(900))
        .run(&ctx.log("fetch-untar"))?;
    let src = only_dir(&tmp, "deb")?;
    eprintln!("  committing the base tree (about a minute)");
    let git = |args: &[&str], name: &str| -> Result<()> {
        let mut c = ctx.git(&src).args(args).timeout(Duration::from_secs(900));
        for (k, v) in BASE_IDENT {
            c = c.env(k, v);
        }
        c.run(&ctx.log(name))
    };
    git(&["init", "-q", "-b", "base"], "fetch-git-init")?;
    git(&["config", "core.autocrlf", "false"], "fetch-git-config")?;
    git(&["config", "gc.auto", "0"], "fetch-git-config")?;
    // -f: take the tarball exactly, including files its .gitignore names.
    git(&["add", "-A", "-f", "."], "fetch-git-add")?;
    git(
        &["commit", "-q", "-m", &base_message(&ctx.cfg.base)],
        "fetch-git-commit",
    )?;
    git(&["tag", BASE_TAG], "fetch-git-tag")?;
    let have = ctx.git(&src).args(["rev-parse", "HEAD"]).output()?;
    if &have != want {
        bail!(
            "the base made from {} is commit {have}, but series.toml pins {want}\n\
             (a different git, or a changed package?) left in {} for inspection",
            deb.display(),
            src.display()
        );
    }
    // Complete: move into place in one rename.
    std::fs::rename(&src, &repo)?;
    std::fs::remove_dir_all(&tmp)?;
    Ok(have)
}

/// The base commit's message; part of what makes its hash.
fn base_message(b: &crate::config::Base) -> String {
    format!("{} (Debian {} {})", b.name, b.package, b.version)
}

/// Key in the cache repository's git config naming the checkout a
/// `fetch --from-git` base came from: its history is the base's.
const HISTORY_KEY: &str = "pinfd.history";

/// The kernel checkout whose history the base is part of, if the base came
/// from one (`fetch --from-git`); None for the Debian tarball's single commit.
pub fn history(ctx: &Ctx) -> Option<PathBuf> {
    ctx.git(&ctx.repo())
        .args(["config", "--get", HISTORY_KEY])
        .output()
        .ok()
        .map(PathBuf::from)
}

/// The base commit of the cache repository.
pub fn base_commit(ctx: &Ctx) -> Result<String> {
    ctx.git(&ctx.repo())
        .args(["rev-parse", &format!("{BASE_TAG}^{{commit}}")])
        .output()
}

fn fetch_from_checkout(ctx: &Ctx, path: &Path, git_ref: &str) -> Result<String> {
    let repo = ctx.repo();
    let path = path
        .canonicalize()
        .with_context(|| format!("no kernel checkout at {}", path.display()))?;
    if !repo.join(".git").exists() {
        std::fs::create_dir_all(&repo)?;
        ctx.git(&repo)
            .args(["init", "-q", "-b", "base"])
            .run(&ctx.log("fetch-git-init"))?;
    }
    ctx.git(&repo)
        .args(["fetch", "--no-tags", "--depth", "1"])
        .arg(format!("file://{}", path.display()))
        .arg(git_ref)
        .timeout(Duration::from_secs(1800))
        .run(&ctx.log("fetch-from-checkout"))
        .with_context(|| format!("cannot fetch {git_ref} from {}", path.display()))?;
    ctx.git(&repo)
        .args(["tag", "-f", BASE_TAG, "FETCH_HEAD"])
        .run(&ctx.log("fetch-git-tag"))?;
    // The fetch is shallow: Fixes: tags are checked in the checkout itself.
    ctx.git(&repo)
        .arg("config")
        .arg(HISTORY_KEY)
        .arg(&path)
        .run(&ctx.log("fetch-git-config"))?;
    ctx.git(&repo)
        .args(["checkout", "-q", "--detach", BASE_TAG])
        .timeout(Duration::from_secs(900))
        .run(&ctx.log("fetch-checkout"))?;
    let commit = base_commit(ctx)?;
    eprintln!(
        "  base is {commit} ({git_ref} of {}); series.toml's pinned base is not used",
        path.display()
    );
    Ok(commit)
}

/// Downloads the pinned .deb into the cache, verified, without touching the
/// system's apt configuration.
fn download_deb(ctx: &Ctx) -> Result<PathBuf> {
    let b = &ctx.cfg.base;
    let dir = ctx.cache.join("debs");
    let file = dir.join(format!(
        "{}_{}_all.deb",
        b.package,
        b.version.replace(':', "%3a")
    ));
    if file.exists() && sha256_file(&file)? == b.sha256 {
        return Ok(file);
    }
    let apt = ctx.cache.join("apt");
    for d in ["lists/partial", "cache/archives/partial", "dl"] {
        std::fs::create_dir_all(apt.join(d))?;
    }
    let list = apt.join("sources.list");
    std::fs::write(
        &list,
        format!(
            "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {} {} main\n",
            b.mirror, b.suite
        ),
    )?;
    let opts = [
        format!("-oDir::Etc::SourceList={}", list.display()),
        "-oDir::Etc::SourceParts=/dev/null".into(),
        format!("-oDir::State::Lists={}", apt.join("lists").display()),
        format!("-oDir::Cache={}", apt.join("cache").display()),
        "-oAPT::Sandbox::User=root".into(),
    ];
    eprintln!("  downloading {} {} from {}", b.package, b.version, b.suite);
    Cmd::new("apt-get")
        .args(&opts)
        .arg("update")
        .timeout(Duration::from_secs(600))
        .run(&ctx.log("fetch-apt-update"))
        .context("cannot read the package list: check the network and base.mirror/base.suite")?;
    let dl = apt.join("dl");
    Cmd::new("apt-get")
        .args(&opts)
        .arg("download")
        .arg(format!("{}={}", b.package, b.version))
        .dir(&dl)
        .timeout(Duration::from_secs(1800))
        .run(&ctx.log("fetch-apt-download"))
        .with_context(|| format!("cannot download {}={}", b.package, b.version))?;
    let got = std::fs::read_dir(&dl)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download produced no .deb")?;
    let sum = sha256_file(&got)?;
    if sum != b.sha256 {
        std::fs::remove_file(&got)?;
        bail!(
            "sha256 of the downloaded {} is {sum}, series.toml pins {}\n\
             the download was deleted; if the archive really changed, update base.sha256 and base.commit",
            b.package,
            b.sha256
        );
    }
    std::fs::create_dir_all(&dir)?;
    std::fs::rename(&got, &file)?;
    Ok(file)
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// The single directory in `dir` other than `except` (the tarball's top).
fn only_dir(dir: &Path, except: &str) -> Result<PathBuf> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != except && e.path().is_dir())
        .map(|e| e.path())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        _ => bail!(
            "expected one top directory in the tarball, found {}",
            dirs.len()
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_message_is_the_pinned_one() {
        // series.toml's base.commit was made with exactly this message.
        let cfg = crate::config::tests::good();
        assert_eq!(
            super::base_message(&cfg.base),
            "Linux 7.3.4 (Debian linux-source-7.3 7.3.4-1~bpo13+1)"
        );
    }

    #[test]
    fn sha256_of_known_input() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        std::fs::write(&f, b"abc").unwrap();
        assert_eq!(
            super::sha256_file(&f).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
