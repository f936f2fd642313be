//! Where things live: the project, the cache outside the clone, the logs.

use crate::config::SeriesToml;
use crate::proc::Cmd;
use anyhow::{Context, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub struct Ctx {
    /// The project checkout (where series.toml is).
    pub root: PathBuf,
    /// Downloads, the base repository, build directories and tools; shared by
    /// every clone on the machine so builds are reused.
    pub cache: PathBuf,
    pub cfg: SeriesToml,
    pub jobs: usize,
}

/// Tag of the base commit in the cache repository.
pub const BASE_TAG: &str = "pinfd-base";

impl Ctx {
    pub fn new(root: PathBuf, cache: Option<PathBuf>, jobs: Option<usize>) -> Result<Self> {
        let cfg = SeriesToml::load(&root.join("series.toml"))?;
        let cache = match cache {
            Some(c) => c,
            None => default_cache()?,
        };
        std::fs::create_dir_all(&cache)
            .with_context(|| format!("cannot create cache directory {}", cache.display()))?;
        let jobs =
            jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) + 1);
        Ok(Ctx {
            root,
            cache,
            cfg,
            jobs,
        })
    }

    /// The git repository holding the base; its own working directory is the
    /// stable build tree (a fixed path keeps incremental builds valid).
    pub fn repo(&self) -> PathBuf {
        self.cache.join("linux")
    }

    /// A scratch worktree where patches/ is applied with `git am`.
    pub fn apply_tree(&self) -> PathBuf {
        self.cache.join("apply")
    }

    /// The out-of-tree build directory of a profile.
    pub fn build_dir(&self, profile: &str) -> PathBuf {
        self.cache.join("build").join(profile)
    }

    /// The worktree where developers edit the series.
    pub fn edit_tree(&self) -> PathBuf {
        self.root.join("work/linux")
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("work/logs").join(format!("{name}.log"))
    }

    pub fn tools_bin(&self) -> PathBuf {
        self.cache.join("tools/bin")
    }

    pub fn venv_bin(&self) -> PathBuf {
        self.cache.join("venv/bin")
    }

    /// PATH with the tool's own installs (bindgen, vng, b4) first.
    pub fn path_env(&self) -> OsString {
        let mut dirs = vec![self.tools_bin(), self.venv_bin()];
        if let Some(p) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&p));
        }
        std::env::join_paths(dirs).expect("PATH entries contain no separator")
    }

    /// A command with the tool's PATH.
    pub fn cmd(&self, program: impl Into<OsString>) -> Cmd {
        Cmd::new(program).env("PATH", self.path_env())
    }

    /// A git command in `dir`, with a fixed identity so commits made by the
    /// tool never depend on the user's configuration.
    pub fn git(&self, dir: &Path) -> Cmd {
        self.cmd("git")
            .dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_TERMINAL_PROMPT", "0")
    }
}

fn default_cache() -> Result<PathBuf> {
    if let Some(c) = std::env::var_os("PINFD_CACHE") {
        return Ok(PathBuf::from(c));
    }
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("pinfd-series"))
}
