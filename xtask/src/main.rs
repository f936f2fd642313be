//! Host tool for the pin_user_pages_fd() / Rust page_pool series: applies the
//! series to the base tree, builds it, boots it under virtme-ng and runs its
//! tests. See README.md.

mod bench;
mod build;
mod check;
mod config;
mod ctx;
mod fetch;
mod fixes;
mod ktap;
mod lint;
mod maint;
mod plot;
mod proc;
mod profile;
mod report;
mod series;
mod setup;
mod sparse;
mod vm;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};
use config::Selected;
use ctx::Ctx;
use report::Report;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Cache for downloads, the base repository and build directories
    /// [default: $PINFD_CACHE, else $XDG_CACHE_HOME/pinfd-series, else ~/.cache/pinfd-series]
    #[arg(long, global = true)]
    cache: Option<PathBuf>,
    /// Parallel make jobs [default: CPUs + 1]
    #[arg(long, short, global = true)]
    jobs: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install missing packages and tools (pinned) and check their versions
    Setup,
    /// Download and verify the base tree and make it a reproducible git commit
    Fetch(FetchArgs),
    /// Create the edit worktree (work/linux): base + series, ready to edit
    Tree {
        /// Recreate an existing (clean) worktree
        #[arg(long)]
        reset: bool,
    },
    /// Write patches/ and the exported new files from the edit worktree
    Export,
    /// Static checks: the series applies, exported files match, checkpatch,
    /// kernel-doc, sparse, W=1, Fixes: tags, rustfmt, MAINTAINERS, mboxes
    Check {
        /// Also build every patch on its own (slow)
        #[arg(long)]
        build_each: bool,
        /// With --build-each, start at this patch (1 is the first of the
        /// whole series), when the earlier ones are unchanged and built
        #[arg(long, requires = "build_each", default_value_t = 1)]
        from: usize,
        /// With --build-each, stop after this patch [default: the last]
        #[arg(long, requires = "build_each")]
        to: Option<usize>,
    },
    /// Configure and build the kernel and the selftests for the series
    Build {
        /// Build the edit worktree's HEAD (committed work) instead of patches/
        #[arg(long)]
        worktree: bool,
        /// Build profile: default, or a [profile.*] of series.toml (debug:
        /// KASAN, lockdep, kmemleak, UBSAN...)
        #[arg(long, default_value = "default")]
        profile: String,
    },
    /// Boot the built kernel under virtme-ng and run the tests
    Vm {
        /// Build profile: default, or a [profile.*] of series.toml (debug:
        /// KASAN, lockdep, kmemleak, UBSAN...)
        #[arg(long, default_value = "default")]
        profile: String,
    },
    /// The whole job: setup, fetch, apply, build, vm, report
    Run(FetchArgs),
    /// The test command: cargo test, check, build, vm, report
    Test {
        /// Build profile: default, or a [profile.*] of series.toml (debug:
        /// KASAN, lockdep, kmemleak, UBSAN...)
        #[arg(long, default_value = "default")]
        profile: String,
    },
    /// Boot the series' kernel once and benchmark pairs of arms in it:
    /// pin_user_pages_fd vs pin_user_pages_fast, udmabuf_rs vs udmabuf,
    /// page_pool providers; each pair with an A/A control
    Bench {
        /// Rounds of every pair at least (arms alternate between rounds)
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Rounds at most: after --rounds, rounds go on until no pair's
        /// ratio (paired by round) moves by more than --stable percent
        #[arg(long, default_value_t = 10)]
        max_rounds: u32,
        /// The largest move of a ratio, in percent, when a round is added,
        /// at which the rounds stop
        #[arg(long, default_value_t = 0.5)]
        stable: f64,
        /// Guest clock: icount (TCG, -icount shift=0,sleep=off: instruction
        /// counts) or wall (KVM if usable, else TCG) [default: wall under a
        /// usable KVM, else icount]
        #[arg(long, value_enum)]
        mode: Option<bench::Mode>,
        /// Record a timer-based kernel profile (/proc/profile, sampling by
        /// instructions under icount) of one arm instead of the pairs, and
        /// write its top symbols: fd, fast, folios (gup_test, [:MEM:SIZE],
        /// default 4k:64), pp-none, pp-c, pp-rs, pp-c-fl, pp-rs-fl, udmabuf-c,
        /// udmabuf-rs
        #[arg(long, value_name = "ARM", conflicts_with = "pipeline")]
        profile: Option<String>,
        /// Also time the pipeline: an incremental build after one patch, a
        /// boot, the whole guest test run
        #[arg(long)]
        pipeline: bool,
        /// With --pipeline, also a clean build into an empty build directory
        #[arg(long, requires = "pipeline")]
        clean: bool,
        /// Only print the tables and draw the plots again from the last
        /// run's work/bench/results.json
        #[arg(long, conflicts_with_all = ["rounds", "pipeline", "profile", "mode"])]
        replot: bool,
        /// Compare the ratios of two runs (results.json files, e.g. a saved
        /// copy of work/bench/icount/results.json and the current one) and
        /// fail if one moved by more than the A/A tolerance of their clock
        #[arg(
            long,
            num_args = 2,
            value_names = ["THEN", "NOW"],
            conflicts_with_all = ["rounds", "pipeline", "profile", "mode", "replot"]
        )]
        compare: Vec<PathBuf>,
    },
    /// Write each sub-series as one mbox for `b4 am` / `git am` into a
    /// directory, To/Cc filled from MAINTAINERS (get_maintainer.pl)
    Mbox {
        #[arg(default_value = "work/mbox")]
        dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Use this kernel git checkout instead of the pinned Debian package
    #[arg(long, requires = "git_ref")]
    from_git: Option<PathBuf>,
    /// The ref of --from-git to use as the base (e.g. v7.3.4)
    #[arg(long = "ref")]
    git_ref: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("\nerror: {e:#}");
        std::process::exit(1);
    }
}

fn project_root() -> Result<PathBuf> {
    let mut dir = std::env::current_dir()?;
    loop {
        if dir.join("series.toml").exists() && dir.join("xtask").exists() {
            return Ok(dir);
        }
        if !dir.pop() {
            bail!("not inside the project: no series.toml found in this or a parent directory");
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let ctx = Ctx::new(project_root()?, cli.cache, cli.jobs)?;
    let mut r = Report::new();
    match cli.command {
        Command::Setup => r.stage("setup", || setup::setup(&ctx))?,
        Command::Fetch(a) => {
            let c = r.stage("fetch", || fetch_base(&ctx, &a))?;
            println!("base: {c}");
        }
        Command::Tree { reset } => {
            r.stage("fetch", || fetch_base(&ctx, &FetchArgs::none()))?;
            let t = r.stage("tree", || series::tree(&ctx, reset))?;
            println!("worktree: {}", t.display());
            println!("edit, commit per patch (git commit --fixup + rebase -i --autosquash), then `cargo xtask export`");
        }
        Command::Export => {
            r.stage("export", || series::export(&ctx))?;
            println!("wrote patches/ and the exported files; review with `git diff`, then commit");
        }
        Command::Check {
            build_each,
            from,
            to,
        } => {
            r.stage("fetch", || fetch_base(&ctx, &FetchArgs::none()))?;
            let build = build_each.then_some((from, to));
            r.stage("check", || check::check(&ctx, build))?;
        }
        Command::Build { worktree, profile } => {
            let profile = ctx.cfg.select_profile(&profile)?;
            r.stage("fetch", || fetch_base(&ctx, &FetchArgs::none()))?;
            let head = if worktree {
                Some(series::worktree_head(&ctx)?)
            } else {
                None
            };
            build_stage(&ctx, &mut r, head, &profile)?;
        }
        Command::Vm { profile } => {
            let profile = ctx.cfg.select_profile(&profile)?;
            let out = ctx.build_dir(profile.name);
            let run = r.stage("vm", || {
                vm::run(
                    &ctx,
                    &out.join("arch/x86/boot/bzImage"),
                    &out.join("kselftest_install"),
                    &profile,
                )
            })?;
            return r.finish(&ctx, Some(&run));
        }
        Command::Run(a) => {
            r.stage("setup", || setup::setup(&ctx))?;
            r.stage("fetch", || fetch_base(&ctx, &a))?;
            let default = ctx.cfg.select_profile("default")?;
            let built = build_stage(&ctx, &mut r, None, &default)?;
            let run = r.stage("vm", || {
                vm::run(&ctx, &built.bzimage, &built.kselftests, &default)
            })?;
            return r.finish(&ctx, Some(&run));
        }
        Command::Test { profile } => {
            let profile = ctx.cfg.select_profile(&profile)?;
            r.stage("cargo test", || {
                ctx.cmd("cargo")
                    .args(["test", "--release", "--package", "xtask"])
                    .dir(&ctx.root)
                    .run(&ctx.log("cargo-test"))
            })?;
            r.stage("setup", || setup::setup(&ctx))?;
            r.stage("fetch", || fetch_base(&ctx, &FetchArgs::none()))?;
            r.stage("check", || check::check(&ctx, None))?;
            let built = build_stage(&ctx, &mut r, None, &profile)?;
            let run = r.stage("vm", || {
                vm::run(&ctx, &built.bzimage, &built.kselftests, &profile)
            })?;
            return r.finish(&ctx, Some(&run));
        }
        Command::Bench { replot: true, .. } => bench::replot(&ctx)?,
        Command::Bench { compare, .. } if !compare.is_empty() => {
            bench::compare_runs(&compare[0], &compare[1])?
        }
        Command::Bench {
            rounds,
            max_rounds,
            stable,
            mode,
            profile,
            pipeline,
            clean,
            ..
        } => {
            if rounds == 0 || max_rounds < rounds {
                bail!("--rounds must be at least 1 and --max-rounds at least --rounds");
            }
            if stable.is_nan() || stable <= 0.0 {
                bail!("--stable must be a positive percentage");
            }
            let target = profile.as_deref().map(profile::Target::parse).transpose()?;
            r.stage("setup", || setup::setup(&ctx))?;
            r.stage("fetch", || fetch_base(&ctx, &FetchArgs::none()))?;
            let head = r.stage("apply", || series::apply(&ctx))?;
            let default = ctx.cfg.select_profile("default")?;
            let built = build_stage(&ctx, &mut r, Some(head.clone()), &default)?;
            let steps = match pipeline {
                true => r.stage("pipeline", || bench::pipeline(&ctx, &head, clean))?,
                false => Vec::new(),
            };
            let rounds = bench::Rounds {
                min: rounds,
                max: max_rounds,
            };
            match target {
                Some(target) => r.stage("profile", || {
                    profile::profile(&ctx, &built, &target, mode, rounds.min)
                })?,
                None => r.stage("bench", || {
                    let opts = bench::Options {
                        rounds,
                        mode,
                        stable: stable / 100.0,
                    };
                    bench::bench(&ctx, &built.bzimage, &built.kselftests, &opts, &steps)
                })?,
            }
        }
        Command::Mbox { dir } => {
            let dir = ctx.root.join(dir);
            r.stage("fetch", || fetch_base(&ctx, &FetchArgs::none()))?;
            // get_maintainer.pl reads MAINTAINERS as the series leaves it.
            r.stage("apply", || series::apply(&ctx))?;
            r.stage("mbox", || {
                check::write_mboxes(&ctx, &ctx.apply_tree(), &dir)
            })?;
            println!("mboxes in {}", dir.display());
        }
    }
    r.finish(&ctx, None)
}

impl FetchArgs {
    fn none() -> Self {
        FetchArgs {
            from_git: None,
            git_ref: None,
        }
    }
}

fn fetch_base(ctx: &Ctx, a: &FetchArgs) -> Result<String> {
    let from = a.from_git.as_deref().zip(a.git_ref.as_deref());
    fetch::fetch(ctx, from)
}

/// Builds `head`, or patches/ applied to the base, with `profile`'s config.
fn build_stage(
    ctx: &Ctx,
    r: &mut Report,
    head: Option<String>,
    profile: &Selected,
) -> Result<build::Built> {
    let head = match head {
        Some(h) => h,
        None => r.stage("apply", || series::apply(ctx))?,
    };
    r.stage("configure", || {
        build::sync_build_tree(ctx, &head)?;
        let extra: Vec<PathBuf> = profile.config.iter().map(|f| ctx.root.join(f)).collect();
        build::configure(ctx, profile.name, &extra, build::Dropped::Refuse)
    })?;
    let built = r.stage("build", || build::build(ctx, profile.name))?;
    if !built.warnings.is_empty() {
        bail!(
            "the build warns in files the series touches:\n  {}\nfull log: {}",
            built.warnings.join("\n  "),
            ctx.log("build-kernel").display()
        );
    }
    Ok(built)
}
