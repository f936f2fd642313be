//! `bench`: boot the series' kernel once and measure pairs of arms in that
//! boot, alternating them: pin_user_pages_fd() against pin_user_pages_fast()
//! (gup_test), udmabuf_rs against udmabuf (bench/udmabuf_bench.c: create,
//! mmap, and an in-kernel importer's vmap, map and attach through
//! dmabuf_import_bench.ko, built from bench/dmabuf_importer), and the
//! page_pool fast and provider paths with no provider, the C devmem provider
//! and the Rust one (bench_page_pool.ko driven by bench/page_pool_mp.py).
//! Every sample goes to work/bench/results.json; the table shows medians,
//! their spread and the ratio of the two arms.
//!
//! The guest's clock is chosen by [`Clock`]: without a usable KVM the guest
//! runs under TCG with `-icount shift=0,sleep=off`, where its clock counts
//! executed instructions (1 ns each), so the figures are instruction counts
//! that repeat across boots; `--mode wall` keeps TCG's wall clock. Every pair
//! has an A/A control: its baseline arm run a second time under another name
//! ([`control_arm`]), whose ratio to the first shows the noise of the measure.
//! Ratios are paired by round ([`paired_ratio`]). Rounds go on past
//! `--rounds` until no ratio moves by more than `--stable` percent when a
//! round is added ([`max_ratio_change`]), up to `--max-rounds`.

use crate::ctx::Ctx;
use crate::plot;
use crate::{build, vm};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The clock asked for on the command line (`--mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// TCG with `-icount shift=0,sleep=off`: the guest clock counts
    /// instructions (the default where KVM is not usable)
    Icount,
    /// Wall-clock time, under KVM if a probe boot works, else TCG
    Wall,
}

/// The guest clock a run measured with; every figure of a run is in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Clock {
    /// TCG, `-icount shift=0,sleep=off`: 1 guest ns per instruction.
    Icount,
    /// TCG, wall clock.
    WallTcg,
    /// KVM, wall clock.
    WallKvm,
}

/// The QEMU option that makes the guest clock count instructions.
pub const ICOUNT: &str = "-icount shift=0,sleep=off";

/// An A/A control must be this close to 1 in icount mode.
pub const AA_TOLERANCE: f64 = 0.005;

impl Clock {
    /// `requested`, or icount where KVM is not usable and wall clock under
    /// KVM. `kvm_works` (a probe boot) is only called when the answer
    /// depends on it: icount runs under TCG whatever KVM can do.
    pub fn choose(requested: Option<Mode>, kvm_works: impl FnOnce() -> bool) -> Clock {
        if requested == Some(Mode::Icount) {
            return Clock::Icount;
        }
        match (kvm_works(), requested) {
            (true, _) => Clock::WallKvm,
            (false, Some(Mode::Wall)) => Clock::WallTcg,
            (false, _) => Clock::Icount,
        }
    }

    /// Its name in results.json and in the output directory.
    pub fn name(self) -> &'static str {
        match self {
            Clock::Icount => "icount",
            Clock::WallTcg => "wall-tcg",
            Clock::WallKvm => "wall-kvm",
        }
    }

    pub fn kvm(self) -> bool {
        self == Clock::WallKvm
    }

    /// What the figures are, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Clock::Icount => "TCG with -icount shift=0,sleep=off: 1 guest ns = 1 instruction, so 1 us = 1000 instructions",
            Clock::WallTcg => "TCG, wall clock: ratios carry 20-30% noise",
            Clock::WallKvm => "KVM, wall clock",
        }
    }

    /// Arguments of vng for this clock, on top of [`vm::vng`]'s.
    pub fn vng_args(self) -> Vec<String> {
        match self {
            // One argument: vng passes it to QEMU split at blanks.
            Clock::Icount => vec![format!("--qemu-opts={ICOUNT}")],
            Clock::WallTcg | Clock::WallKvm => Vec::new(),
        }
    }

    /// How far from 1 an A/A control may be, where it is judged.
    pub fn aa_tolerance(self) -> Option<f64> {
        (self == Clock::Icount).then_some(AA_TOLERANCE)
    }
}

/// Memory kinds of the pin pairs: name, gup_test flags, THP setting.
pub const PIN_MEMORY: &[(&str, &str, &str)] = &[
    ("4k", "", "never"),
    ("thp", "", "always"),
    ("hugetlb", "-H", "never"),
];
const PIN_SIZES_MB: &[u32] = &[2, 64, 512];
/// The arms of the pin pairs and their gup_test options: pin_user_pages_fd(),
/// pin_user_pages_fast() on a mapping of the memfd, memfd_pin_folios().
pub const PIN_ARMS: [(&str, &str); 3] = [("fd", "-d"), ("fast", "-a -M"), ("folios", "-P")];
/// Pairs of arms: the one under test, and what it is compared with.
const PAIRS: &[(&str, &str)] = &[
    ("fd", "fast"),
    ("fd", "folios"),
    ("rs", "c"),
    ("c", "none"),
    ("rs", "none"),
    ("rs-fl", "c-fl"),
];
/// What names an arm's A/A control: the same arm run again under this name.
const CONTROL_SUFFIX: &str = "-aa";
/// The page_pool arms (bench/page_pool_mp.py): no provider, the C devmem
/// provider, the Rust one, and their free-list variants (the provider calls
/// without the genpool).
pub const PAGE_POOL_ARMS: [&str; 5] = ["none", "c", "rs", "c-fl", "rs-fl"];
/// Iterations of each page_pool arm per module load.
pub const PAGE_POOL_LOOPS: u32 = 200_000;
/// The udmabuf operations of the in-kernel importer (dmabuf_import_bench.ko),
/// in microseconds per call like the other udmabuf operations.
pub const IMPORT_OPS: [&str; 3] = ["vmap+vunmap", "map+unmap", "attach+detach"];

/// One measurement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `pin-get`, `pin-put`, the udmabuf operation (`create+close`,
    /// `list16+close`, `mmap-read`, or one of [`IMPORT_OPS`]), or
    /// `pp-fast-path` / `pp-provider-path`.
    pub what: String,
    /// Memory kind and size, e.g. `4k 64M`, or `page_pool`.
    pub case: String,
    /// `fd`/`fast`/`folios`, `c`/`rs`, or one of [`PAGE_POOL_ARMS`].
    pub arm: String,
    /// Microseconds (per call for [`IMPORT_OPS`]), MB/s for `mmap-read`,
    /// nanoseconds per netmem for `pp-`.
    pub value: f64,
    /// The round it was measured in, from 0 (0 in results of before rounds
    /// were recorded).
    #[serde(default)]
    pub round: u32,
}

/// The A/A control of `arm`: the same command, another name.
pub fn control_arm(arm: &str) -> String {
    format!("{arm}{CONTROL_SUFFIX}")
}

/// `arms` and, after them, the A/A control of every arm that is the
/// baseline of a pair among `arms`, each once.
pub fn with_controls(arms: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = arms.iter().map(|a| a.to_string()).collect();
    for &(test, base) in PAIRS {
        let control = control_arm(base);
        if arms.contains(&test) && arms.contains(&base) && !out.contains(&control) {
            out.push(control);
        }
    }
    out
}

/// The udmabuf benchmark: the program and the importer module it uses.
pub struct UdmabufBench {
    pub program: std::path::PathBuf,
    /// dmabuf_import_bench.ko, loaded while the program runs.
    pub importer: std::path::PathBuf,
}

/// The page_pool benchmark: the guest script and the module it loads.
pub struct PagePoolBench {
    pub script: std::path::PathBuf,
    pub module: std::path::PathBuf,
}

/// How many rounds the guest runs: at least `min`, then until the host
/// finds the medians stable (it creates the file `stop`), at most `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounds {
    pub min: u32,
    pub max: u32,
}

/// The gup_test options of a pin arm or of its A/A control.
fn pin_opts(arm: &str) -> Option<&'static str> {
    let base = arm.strip_suffix(CONTROL_SUFFIX).unwrap_or(arm);
    PIN_ARMS.iter().find(|(a, _)| *a == base).map(|(_, o)| *o)
}

/// One round of the pin pairs: every memory kind, size and arm (A/A
/// controls included), in the arms' order or the reverse.
fn pin_round(reverse: bool) -> String {
    let mut arms = with_controls(&PIN_ARMS.map(|(a, _)| a));
    if reverse {
        arms.reverse();
    }
    let mut s = String::new();
    for (mem, flags, thp) in PIN_MEMORY {
        s.push_str(&format!(
            "\t\techo {thp} > /sys/kernel/mm/transparent_hugepage/shmem_enabled\n"
        ));
        for size in PIN_SIZES_MB {
            for arm in &arms {
                let opts = pin_opts(arm).expect("pin arms have gup_test options");
                s.push_str(&format!("\t\tpin {mem} {size} {arm} {opts} {flags}\n"));
            }
        }
    }
    s
}

/// The guest script: rounds of every pair (the arms' order reversed every
/// other round), each between `ROUND n` and `ROUND-END n` lines, one line
/// per sample. From `rounds.min` rounds on, it waits after round n for the
/// host's file `judged-<n>` in `out`, and stops if `stop` is there too;
/// progress goes to the console.
pub fn guest_script(
    out: &Path,
    ksft: &Path,
    udmabuf: &UdmabufBench,
    page_pool: &PagePoolBench,
    rounds: Rounds,
) -> String {
    let mm = ksft.join("mm");
    let Rounds { min, max } = rounds;
    let mut s = String::from("#!/bin/sh\n# Generated by `cargo xtask bench`.\nset -u\n");
    s.push_str("mountpoint -q /sys/kernel/debug || mount -t debugfs none /sys/kernel/debug\n");
    s.push_str(&format!(
        "cd {}\nexec 3>&1 > {}/samples.txt 2> {}/stderr.txt\n",
        mm.display(),
        out.display(),
        out.display()
    ));
    // The first call of each process is a warm-up: it faults the memfd in
    // and, for pin_user_pages_fd(), migrates it out of ZONE_MOVABLE.
    s.push_str(
        "pin() { # memory size arm flags...\n\
         \tm=$1 sz=$2 arm=$3; shift 3\n\
         \t./gup_test \"$@\" -m $sz -n 512 -r 4 | sed -n 's/.*Time: get:\\([0-9]*\\) put:\\([0-9]*\\).*/\\1 \\2/p' |\n\
         \ttail -n +2 | while read g p; do echo \"PIN $m ${sz}M $arm $g $p\"; done\n}\n",
    );
    s.push_str("round() { # n\n\tn=$1\n\techo \"ROUND $n\"\n");
    s.push_str(&format!(
        "\techo \"bench: round $((n + 1)) (at least {min}, at most {max})\" >&3\n"
    ));
    s.push_str("\tif [ $((n % 2)) -eq 0 ]; then\n");
    s.push_str(&pin_round(false));
    s.push_str("\telse\n");
    s.push_str(&pin_round(true));
    s.push_str("\tfi\n");
    s.push_str("\techo never > /sys/kernel/mm/transparent_hugepage/shmem_enabled\n");
    // Without the importer (insmod failed), udmabuf_bench skips its
    // operations and says so on stderr. Each round runs 1/min of its
    // repetitions, so that `min` rounds make as many samples as one run.
    s.push_str(&format!(
        "\tinsmod {}\n\t{} --raw --split {min}\n\trmmod dmabuf_import_bench\n",
        udmabuf.importer.display(),
        udmabuf.program.display()
    ));
    s.push_str(&format!(
        "\tpython3 {} {} {} $n {PAGE_POOL_LOOPS} {}\n",
        page_pool.script.display(),
        ksft.display(),
        page_pool.module.display(),
        with_controls(&PAGE_POOL_ARMS).join(" ")
    ));
    s.push_str("\techo \"ROUND-END $n\"\n}\n");
    // From `min` rounds on, the host judges each round (judged-<n>), having
    // created `stop` first if the ratios are stable. The wait has no bound
    // of its own: under icount `sleep` takes no real time.
    let o = out.display();
    s.push_str(&format!(
        "n=0\nwhile [ $n -lt {max} ]; do\n\tround $n\n\tn=$((n + 1))\n\
         \t[ $n -ge {min} ] && [ $n -lt {max} ] || continue\n\
         \twhile [ ! -e {o}/judged-$n ]; do sleep 1; done\n\
         \t[ -e {o}/stop ] && break\ndone\n"
    ));
    s.push_str(&format!("touch {}/done\n", out.display()));
    s
}

/// Reads the samples the guest printed, each in the round of the last
/// `ROUND n` line before it; other lines are ignored.
pub fn parse_samples(text: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut round = 0;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["ROUND", n] => round = n.parse().unwrap_or(round),
            ["PIN", mem, size, arm, get, put] => {
                for (what, v) in [("pin-get", get), ("pin-put", put)] {
                    if let Ok(value) = v.parse() {
                        samples.push(Sample {
                            what: what.into(),
                            case: format!("{mem} {size}"),
                            arm: arm.to_string(),
                            value,
                            round,
                        });
                    }
                }
            }
            ["PP", what, arm, v] => {
                if let Ok(value) = v.parse() {
                    samples.push(Sample {
                        what: format!("pp-{what}"),
                        case: "page_pool".into(),
                        arm: arm.to_string(),
                        value,
                        round,
                    });
                }
            }
            ["UDMABUF", case, what, arm, v] => {
                if let Ok(value) = v.parse() {
                    samples.push(Sample {
                        what: what.to_string(),
                        case: case.to_string(),
                        arm: arm.to_string(),
                        value,
                        round,
                    });
                }
            }
            _ => {}
        }
    }
    samples
}

/// How many rounds the guest finished (`ROUND-END` lines).
pub fn rounds_done(text: &str) -> u32 {
    text.lines()
        .filter(|l| l.trim_start().starts_with("ROUND-END "))
        .count() as u32
}

/// Median, minimum and maximum of one arm.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Stats {
    pub n: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stats(values: &[f64]) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stats {
        n,
        median,
        min: v[0],
        max: v[n - 1],
    })
}

/// A pair of arms compared on one case.
#[derive(Debug, Serialize)]
pub struct Pair {
    pub what: String,
    pub case: String,
    /// The arm under test (`fd`, `rs`) and the one it is compared with.
    pub arms: [String; 2],
    pub stats: [Stats; 2],
    /// Time of the arm under test over the other's: below 1 it is faster
    /// (for [`IMPORT_OPS`], of the mean time per call). For throughputs
    /// (`mmap-read`) the inverse ratio, so the same holds.
    /// NaN when a median is 0, below the resolution of the measure.
    pub ratio: f64,
    /// The A/A control of the baseline arm, when it was measured.
    pub control: Option<Control>,
    /// The smallest and the largest of the ratios of the single rounds
    /// (NaN when no round resolves it): how much the workload itself moves
    /// the ratio from round to round.
    pub round_range: (f64, f64),
    /// The interquartile range of the per-round ratios over their median:
    /// their spread, where a single odd round does not count (from
    /// [`MIN_ROUNDS_TO_JUDGE`] rounds on).
    pub round_spread: f64,
    /// How many rounds resolve the ratio.
    pub rounds: usize,
}

/// Rounds a ratio needs in each run before `--compare` judges it: below
/// that, the interquartile range is the range, and one odd round counts.
pub const MIN_ROUNDS_TO_JUDGE: usize = 4;

/// The `p` quantile of sorted, non-empty `v`, interpolated between its
/// neighbours.
fn quantile(v: &[f64], p: f64) -> f64 {
    debug_assert!(!v.is_empty());
    let x = (v.len() - 1) as f64 * p;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
}

/// The interquartile range of `values` over their median; NaN when empty.
fn relative_iqr(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = quantile(&v, 0.5);
    if median > 0.0 {
        (quantile(&v, 0.75) - quantile(&v, 0.25)) / median
    } else {
        f64::NAN
    }
}

/// An A/A control: the baseline arm of a pair run a second time under
/// another name, in the same rounds.
#[derive(Debug, Serialize)]
pub struct Control {
    /// The control's name ([`control_arm`] of the baseline).
    pub arm: String,
    pub stats: Stats,
    /// The control's median over the baseline's, computed as the pair's
    /// ratio: 1 for a measure without noise. NaN below resolution.
    pub ratio: f64,
}

impl Control {
    /// How far two runs of the same code differ: |ratio - 1|.
    pub fn spread(&self) -> f64 {
        (self.ratio - 1.0).abs()
    }
}

/// What an A/A control says about the measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the clock's tolerance.
    Pass,
    Fail,
    /// The medians are below the measure's resolution.
    Unresolved,
    /// Shown, not judged (wall clock).
    Reported,
    /// The pair has no control.
    Missing,
}

impl Verdict {
    pub fn of(control: Option<&Control>, tolerance: Option<f64>) -> Verdict {
        match (control, tolerance) {
            (None, _) => Verdict::Missing,
            (Some(c), _) if c.ratio.is_nan() => Verdict::Unresolved,
            (Some(_), None) => Verdict::Reported,
            // A little slack for the rounding of the division.
            (Some(c), Some(t)) if c.spread() <= t + 1e-12 => Verdict::Pass,
            (Some(_), Some(_)) => Verdict::Fail,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Fail => "FAIL",
            Verdict::Unresolved => "n/r",
            Verdict::Reported | Verdict::Missing => "",
        }
    }
}

/// The ratio of medians `test` over `base` of the measure `what` (inverse
/// for a throughput); NaN when either is 0, below the resolution of the
/// measure (gup_test reports whole microseconds).
fn ratio(what: &str, test: &Stats, base: &Stats) -> f64 {
    let (num, den) = if what == "mmap-read" {
        (base.median, test.median)
    } else {
        (test.median, base.median)
    };
    if num > 0.0 && den > 0.0 {
        num / den
    } else {
        f64::NAN
    }
}

/// The samples of one arm, by round.
type Rounds_ = BTreeMap<u32, Vec<f64>>;

/// The samples of each measure and case, by arm and round.
fn by_arm(samples: &[Sample]) -> BTreeMap<(String, String), BTreeMap<String, Rounds_>> {
    let mut groups: BTreeMap<(String, String), BTreeMap<String, Rounds_>> = BTreeMap::new();
    for s in samples {
        groups
            .entry((s.what.clone(), s.case.clone()))
            .or_default()
            .entry(s.arm.clone())
            .or_default()
            .entry(s.round)
            .or_default()
            .push(s.value);
    }
    groups
}

/// The ratio of `test` over `base` paired by round: in each round the ratio
/// of the two arms' medians, and the median of those over the rounds. The
/// arms alternate within a round, so what changes from one round to the
/// next (where the memory landed, the state of a provider's pool) moves
/// both arms and cancels, as it does not in the ratio of medians pooled
/// over every round. NaN when no round resolves it.
fn paired_ratio(what: &str, test: &Rounds_, base: &Rounds_) -> f64 {
    stats(&round_ratios(what, test, base)).map_or(f64::NAN, |s| s.median)
}

/// The ratio of `test` over `base` in each round that resolves it.
fn round_ratios(what: &str, test: &Rounds_, base: &Rounds_) -> Vec<f64> {
    test.iter()
        .filter_map(|(round, t)| {
            let r = ratio(what, &stats(t)?, &stats(base.get(round)?)?);
            r.is_finite().then_some(r)
        })
        .collect()
}

pub fn pairs(samples: &[Sample]) -> Vec<Pair> {
    let mut out = Vec::new();
    for ((what, case), arms) in by_arm(samples) {
        let all = |arm: &str| {
            arms.get(arm)
                .and_then(|r| stats(&r.values().flatten().copied().collect::<Vec<_>>()))
        };
        for &(test, base) in PAIRS {
            let (Some(t), Some(b)) = (all(test), all(base)) else {
                continue;
            };
            let control_name = control_arm(base);
            let control = all(&control_name).map(|c| Control {
                ratio: paired_ratio(&what, &arms[&control_name], &arms[base]),
                arm: control_name,
                stats: c,
            });
            let per_round = round_ratios(&what, &arms[test], &arms[base]);
            let per_round_stats = stats(&per_round);
            out.push(Pair {
                round_range: per_round_stats.map_or((f64::NAN, f64::NAN), |s| (s.min, s.max)),
                round_spread: relative_iqr(&per_round),
                rounds: per_round.len(),
                ratio: per_round_stats.map_or(f64::NAN, |s| s.median),
                what: what.clone(),
                case: case.clone(),
                arms: [test.into(), base.into()],
                stats: [t, b],
                control,
            });
        }
    }
    out
}

/// The table of the pairs: each arm's median [min-max], the ratio, and
/// beside it the A/A control's ratio, its spread and, where `tolerance`
/// judges it, its verdict.
pub fn table(pairs: &[Pair], tolerance: Option<f64>) -> String {
    let mut s = format!(
        "{:<14} {:<12} {:>22} {:>22} {:>7} {:>7} {:>6}\n",
        "measure",
        "case",
        "arm: median [min-max]",
        "vs: median [min-max]",
        "ratio",
        "A/A",
        "spread"
    );
    for p in pairs {
        let cell = |arm: &str, st: &Stats| {
            let (med, min, max) = (short(st.median), short(st.min), short(st.max));
            format!("{arm}: {med} [{min}-{max}]")
        };
        let (aa, spread) = match &p.control {
            Some(c) if !c.ratio.is_nan() => (
                format!("{:.3}", c.ratio),
                format!("{:.1}%", c.spread() * 100.0),
            ),
            Some(_) => ("NaN".into(), "-".into()),
            None => ("-".into(), "-".into()),
        };
        let verdict = Verdict::of(p.control.as_ref(), tolerance).label();
        s.push_str(
            format!(
                "{:<14} {:<12} {:>22} {:>22} {:>7.3} {aa:>7} {spread:>6} {verdict}\n",
                p.what,
                p.case,
                cell(&p.arms[0], &p.stats[0]),
                cell(&p.arms[1], &p.stats[1]),
                p.ratio
            )
            .trim_end(),
        );
        s.push('\n');
    }
    s
}

/// [`table`] as Markdown, for the README: the ratios, their A/A control
/// and its spread to a hundredth of a percent, and the medians.
pub fn markdown_table(pairs: &[Pair], tolerance: Option<f64>) -> String {
    let mut s = String::from(
        "| measure | case | pair | ratio | rounds: min-max | A/A | spread | arm median | vs median |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for p in pairs {
        let range = if p.round_range.0.is_nan() {
            "-".to_string()
        } else {
            format!("{:.3}-{:.3}", p.round_range.0, p.round_range.1)
        };
        let (aa, spread) = match &p.control {
            Some(c) if !c.ratio.is_nan() => (
                format!("{:.3}", c.ratio),
                format!("{:.2}%", c.spread() * 100.0),
            ),
            _ => ("-".into(), "-".into()),
        };
        let verdict = match Verdict::of(p.control.as_ref(), tolerance).label() {
            "" => String::new(),
            v => format!(" {v}"),
        };
        s.push_str(&format!(
            "| {} | {} | {}/{} | {:.3} | {range} | {aa} | {spread}{verdict} | {} | {} |\n",
            p.what,
            p.case,
            p.arms[0],
            p.arms[1],
            p.ratio,
            short(p.stats[0].median),
            short(p.stats[1].median),
        ));
    }
    s
}

/// A pair's ratio in two runs, and what `--compare` makes of it.
#[derive(Debug, PartialEq)]
pub struct RatioChange {
    /// `what case test/base`.
    pub pair: String,
    pub then: f64,
    pub now: f64,
    pub verdict: Judged,
}

/// What `--compare` makes of a pair.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Judged {
    /// Steady in THEN, and moved by at most the tolerance.
    Pass,
    /// Steady in THEN, and moved by more than the tolerance (or is missing
    /// or unresolved in NOW).
    Fail,
    /// Its per-round ratios spread by more than half the tolerance in THEN,
    /// or it has fewer than [`MIN_ROUNDS_TO_JUDGE`] rounds in a run: the
    /// workload moves it, or too few rounds tell.
    Unsteady,
    /// Only in NOW: nothing to compare with.
    New,
}

impl RatioChange {
    /// |now / then - 1|.
    pub fn change(&self) -> f64 {
        (self.now / self.then - 1.0).abs()
    }
}

/// How every pair of `then` and `now` moved, judged against `tolerance`.
/// A pair is judged when it is steady in THEN (the interquartile range of
/// its per-round ratios at most half the tolerance, over at least
/// [`MIN_ROUNDS_TO_JUDGE`] rounds), so that one that turned noisy in NOW
/// still fails.
pub fn ratio_changes(then: &[Pair], now: &[Pair], tolerance: f64) -> Vec<RatioChange> {
    let name = |p: &Pair| format!("{} {} {}/{}", p.what, p.case, p.arms[0], p.arms[1]);
    let same = |a: &Pair, b: &Pair| a.what == b.what && a.case == b.case && a.arms == b.arms;
    let steady = |p: &Pair| {
        p.ratio.is_finite() && p.rounds >= MIN_ROUNDS_TO_JUDGE && p.round_spread <= tolerance / 2.0
    };
    let mut out: Vec<RatioChange> = then
        .iter()
        .filter(|t| t.ratio.is_finite())
        .map(|t| {
            let n = now.iter().find(|n| same(t, n));
            let now_ratio = n.map_or(f64::NAN, |n| n.ratio);
            let verdict = if !steady(t) || n.is_some_and(|n| n.rounds < MIN_ROUNDS_TO_JUDGE) {
                Judged::Unsteady
            } else if now_ratio.is_finite()
                && (now_ratio / t.ratio - 1.0).abs() <= tolerance + 1e-12
            {
                Judged::Pass
            } else {
                Judged::Fail
            };
            RatioChange {
                pair: name(t),
                then: t.ratio,
                now: now_ratio,
                verdict,
            }
        })
        .collect();
    out.extend(
        now.iter()
            .filter(|n| !then.iter().any(|t| same(t, n)))
            .map(|n| RatioChange {
                pair: name(n),
                then: f64::NAN,
                now: n.ratio,
                verdict: Judged::New,
            }),
    );
    out
}

/// `bench --compare THEN NOW`: prints how every ratio moved between two
/// runs of the same clock. Fails if a ratio that is steady in THEN moved by
/// more than the clock's A/A tolerance or went missing, if an A/A control
/// of either run failed, or if nothing could be judged.
pub fn compare_runs(then: &Path, now: &Path) -> Result<()> {
    let load = |path: &Path| -> Result<(Vec<Sample>, Option<Clock>)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {} (a bench results.json)", path.display()))?;
        let saved: Saved = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench result", path.display()))?;
        Ok((saved.samples, saved.clock))
    };
    let (then_samples, then_clock) = load(then)?;
    let (now_samples, now_clock) = load(now)?;
    if then_clock != now_clock {
        bail!(
            "{} and {} were measured on different clocks ({:?}, {:?}): their ratios do not compare",
            then.display(),
            now.display(),
            then_clock.map(Clock::name),
            now_clock.map(Clock::name)
        );
    }
    let Some(tolerance) = now_clock.and_then(Clock::aa_tolerance) else {
        bail!(
            "the runs are on the {} clock, which has no A/A tolerance to judge by: compare icount runs",
            now_clock.map_or("unrecorded", Clock::name)
        );
    };
    let (then_pairs, now_pairs) = (pairs(&then_samples), pairs(&now_samples));
    let changes = ratio_changes(&then_pairs, &now_pairs, tolerance);
    println!("{:<46} {:>8} {:>8} {:>7}", "pair", "then", "now", "change");
    for c in &changes {
        let note = match c.verdict {
            Judged::Pass => "",
            Judged::Fail => "  FAIL",
            Judged::Unsteady => "  (unsteady in a run: not judged)",
            Judged::New => "  (new: not compared)",
        };
        println!(
            "{:<46} {:>8.3} {:>8.3} {:>6.2}%{note}",
            c.pair,
            c.then,
            c.now,
            c.change() * 100.0
        );
    }
    let count = |v: Judged| changes.iter().filter(|c| c.verdict == v).count();
    let judged: Vec<&RatioChange> = changes
        .iter()
        .filter(|c| matches!(c.verdict, Judged::Pass | Judged::Fail))
        .collect();
    let worst = judged.iter().map(|c| c.change()).fold(0.0, f64::max);
    println!(
        "{} ratios judged (steady in the first run), largest change {:.2}%; {} unsteady, {} new",
        judged.len(),
        worst * 100.0,
        count(Judged::Unsteady),
        count(Judged::New)
    );
    let failed_controls = [(then, &then_pairs), (now, &now_pairs)].map(|(path, p)| {
        let n = controls(p, Some(tolerance))
            .iter()
            .filter(|(_, _, v)| *v == Verdict::Fail)
            .count();
        (path, n)
    });
    for (path, n) in failed_controls {
        if n > 0 {
            println!(
                "{}: {n} A/A controls further than the tolerance from 1",
                path.display()
            );
        }
    }
    if judged.is_empty() {
        bail!("no ratio was steady enough to judge: run more rounds (--rounds)");
    }
    if count(Judged::Fail) > 0 || failed_controls.iter().any(|(_, n)| *n > 0) {
        bail!(
            "{} ratios moved by more than {:.1}% or went missing, and {} A/A controls failed: the runs do not agree",
            count(Judged::Fail),
            tolerance * 100.0,
            failed_controls.iter().map(|(_, n)| n).sum::<usize>()
        );
    }
    Ok(())
}

/// The A/A controls of `pairs`, each once (pairs with the same baseline
/// share it), with their verdicts.
pub fn controls(pairs: &[Pair], tolerance: Option<f64>) -> Vec<(&Pair, &Control, Verdict)> {
    let mut out: Vec<(&Pair, &Control, Verdict)> = Vec::new();
    for p in pairs {
        let Some(c) = &p.control else { continue };
        let seen = out
            .iter()
            .any(|(q, d, _)| q.what == p.what && q.case == p.case && d.arm == c.arm);
        if !seen {
            out.push((p, c, Verdict::of(Some(c), tolerance)));
        }
    }
    out
}

/// One line on the A/A controls, and a line per failed one.
pub fn controls_summary(pairs: &[Pair], tolerance: Option<f64>) -> String {
    let all = controls(pairs, tolerance);
    let count = |v: Verdict| all.iter().filter(|(_, _, w)| *w == v).count();
    let missing = pairs.iter().filter(|p| p.control.is_none()).count();
    let spreads: Vec<f64> = all
        .iter()
        .map(|(_, c, _)| c.spread())
        .filter(|s| s.is_finite())
        .collect();
    let worst = spreads.iter().copied().fold(0.0, f64::max) * 100.0;
    let mut s = match tolerance {
        Some(t) => format!(
            "A/A controls: {} within {:.1}% of 1, {} outside, {} below resolution; largest spread {worst:.2}%",
            count(Verdict::Pass),
            t * 100.0,
            count(Verdict::Fail),
            count(Verdict::Unresolved),
        ),
        None => format!(
            "A/A controls (not judged with this clock): {} measured, {} below resolution; largest spread {worst:.2}%",
            count(Verdict::Reported),
            count(Verdict::Unresolved),
        ),
    };
    if missing > 0 {
        s.push_str(&format!("; {missing} pairs without a control"));
    }
    s.push('\n');
    for (p, c, _) in all.iter().filter(|(_, _, v)| *v == Verdict::Fail) {
        s.push_str(&format!(
            "  FAIL {} {}: {} / {} = {:.4}\n",
            p.what, p.case, c.arm, p.arms[1], c.ratio
        ));
    }
    s
}

/// The largest relative move of any pair's ratio, or of its A/A control's,
/// when the last of the first `rounds` rounds is added to those before it;
/// None before two rounds. gup_test reports whole microseconds: pairs of
/// pins whose baseline's median is below 100 us, where that resolution is
/// 1% or more, do not count; nor do ratios below resolution (NaN).
pub fn max_ratio_change(samples: &[Sample], rounds: u32) -> Option<f64> {
    if rounds < 2 {
        return None;
    }
    let last = rounds - 1;
    let ratios = |upto: u32| {
        let kept: Vec<Sample> = samples
            .iter()
            .filter(|s| s.round <= upto)
            .cloned()
            .collect();
        let mut out = BTreeMap::new();
        for p in pairs(&kept) {
            if p.what.starts_with("pin-") && p.stats[1].median < 100.0 {
                continue;
            }
            let key = (
                p.what.clone(),
                p.case.clone(),
                p.arms[0].clone(),
                p.arms[1].clone(),
            );
            if let Some(c) = &p.control {
                let ckey = (key.0.clone(), key.1.clone(), c.arm.clone(), key.3.clone());
                out.insert(ckey, c.ratio);
            }
            out.insert(key, p.ratio);
        }
        out
    };
    let (before, all) = (ratios(last - 1), ratios(last));
    let mut worst = None::<f64>;
    for (key, a) in &all {
        let Some(b) = before.get(key) else { continue };
        if !(a.is_finite() && b.is_finite() && *b > 0.0) {
            continue;
        }
        let change = (a - b).abs() / b;
        worst = Some(worst.map_or(change, |w| w.max(change)));
    }
    worst
}

/// `v` with the decimals that matter in a table: none for whole numbers and
/// from 100 on, one from 10 on, two below (an importer's call can take a
/// fraction of a microsecond).
fn short(v: f64) -> String {
    match v.abs() {
        a if v.fract() == 0.0 || a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        _ => format!("{v:.2}"),
    }
}

/// Cost per page of a pin (get) in nanoseconds, per memory kind and size,
/// for every pin arm, and how much cheaper a page of a large folio is than a
/// 4 KiB page of the same size, with pin_user_pages_fd().
pub fn per_page_table(pairs: &[Pair]) -> String {
    let costs = plot::pin_costs(pairs);
    let mut s = format!("{:<14}", "pin per page");
    for (arm, _) in PIN_ARMS {
        s.push_str(&format!(" {:>11}", format!("{arm} (ns)")));
    }
    s.push_str(&format!(" {:>12}\n", "4k/this (fd)"));
    for c in &costs {
        s.push_str(&format!("{:<14}", format!("{} {}M", c.mem, c.size)));
        for (arm, _) in PIN_ARMS {
            s.push_str(
                &c.of(arm)
                    .map_or(format!(" {:>11}", "-"), |v| format!(" {v:>11.1}")),
            );
        }
        let small = costs.iter().find(|k| k.mem == "4k" && k.size == c.size);
        let cheaper = match (c.mem.as_str(), small.and_then(|k| k.of("fd")), c.of("fd")) {
            ("4k", ..) | (_, None, _) | (_, _, None) => "-".to_string(),
            (_, Some(small), Some(this)) => format!("{:.1}x", small / this),
        };
        s.push_str(&format!(" {cheaper:>12}\n"));
    }
    s
}

/// What the figures of `clock` count, for the plots' axes.
fn unit(clock: Option<Clock>) -> &'static str {
    match clock {
        Some(Clock::Icount) => "instruction",
        _ => "time",
    }
}

/// Draws the plots of `pairs`, measured with `clock`, into `out`; returns
/// their paths.
fn plots(out: &Path, pairs: &[Pair], clock: Option<Clock>) -> Result<Vec<std::path::PathBuf>> {
    let unit = unit(clock);
    let per_page = match clock {
        Some(Clock::Icount) => "instructions per page",
        _ => "ns per page",
    };
    let ratio_rs_c = format!("{unit} ratio rs/c");
    let charts = [
        (
            "pin-ratio.svg",
            "pin_user_pages_fd over pin_user_pages_fast and memfd_pin_folios",
            &*format!("{unit} ratio (below 1: pin_user_pages_fd is faster)"),
            plot::ratio_series(pairs, plot::Ratios::Pins),
            true,
            Some(1.0),
        ),
        (
            "pin-per-page.svg",
            "Cost of a pin per 4 KiB page",
            per_page,
            plot::pin_per_page_series(pairs),
            true,
            None,
        ),
        (
            "udmabuf-ratio.svg",
            "udmabuf_rs / udmabuf (below 1: udmabuf_rs is faster)",
            &ratio_rs_c,
            plot::ratio_series(pairs, plot::Ratios::Udmabuf),
            false,
            Some(1.0),
        ),
        (
            "udmabuf-import-ratio.svg",
            "udmabuf_rs / udmabuf, in-kernel importer (below 1: udmabuf_rs is faster)",
            &ratio_rs_c,
            plot::ratio_series(pairs, plot::Ratios::Import),
            false,
            Some(1.0),
        ),
    ];
    let mut paths = Vec::new();
    for (name, title, y, series, log_y, reference) in charts {
        let path = out.join(name);
        let title = match clock {
            Some(c) => format!("{title} [{}]", c.name()),
            None => title.to_string(),
        };
        plot::draw(&path, &title, y, &series, log_y, reference)?;
        paths.push(path);
    }
    Ok(paths)
}

/// Times the pipeline on the series' `head`: an incremental build after the
/// last patch that changes files (built without it first), a boot to a
/// shell, the whole guest test run, and if `clean` a build into an empty
/// build directory (ccache as it is). Returns (step, seconds).
pub fn pipeline(ctx: &Ctx, head: &str, clean: bool) -> Result<Vec<(String, f64)>> {
    let repo = ctx.repo();
    let git = |args: &[&str]| ctx.git(&repo).args(args).output();
    let last = git(&["rev-list", "-1", head, "--", "."])?;
    let subject = git(&["log", "-1", "--format=%s", &last])?;
    let build = |commit: &str, profile: &str, dropped| {
        build::sync_build_tree(ctx, commit)?;
        build::configure(ctx, profile, &[], dropped)?;
        build::build(ctx, profile)
    };
    let mut steps = Vec::new();
    let mut step = |name: String, start: Instant| {
        eprintln!("  pipeline: {name}: {:.0} s", start.elapsed().as_secs_f64());
        steps.push((name, start.elapsed().as_secs_f64()));
    };

    eprintln!("  pipeline: building the series without its last patch ({subject})");
    build(
        &format!("{last}~1"),
        "default",
        build::Dropped::AllowUndefined,
    )?;
    let start = Instant::now();
    let built = build(head, "default", build::Dropped::Refuse)?;
    step(
        format!("incremental build after one patch ({subject})"),
        start,
    );

    let out = ctx.root.join("work/bench/pipeline");
    std::fs::create_dir_all(&out)?;
    let kvm = vm::kvm_works(ctx, &built.bzimage, &out);
    let start = Instant::now();
    let log = ctx.log("bench-boot");
    let exit = vm::vng(ctx, &built.bzimage, &out, kvm, &[])
        .arg("--exec")
        .arg("true")
        .timeout(Duration::from_secs(600))
        .run_unchecked(&log)?;
    if exit.timed_out {
        bail!(
            "the guest did not boot within 10 minutes (console: {})",
            log.display()
        );
    }
    let guest = if kvm { "KVM" } else { "TCG" };
    step(format!("boot to a shell and power off ({guest})"), start);

    let start = Instant::now();
    let run = vm::run(
        ctx,
        &built.bzimage,
        &built.kselftests,
        &ctx.cfg.select_profile("default")?,
    )?;
    if !run.problems.is_empty() {
        bail!("the test run failed: {}", run.problems.join("; "));
    }
    step("whole guest test run, every boot".into(), start);

    if clean {
        let dir = ctx.build_dir("bench-clean");
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        let start = Instant::now();
        build(head, "bench-clean", build::Dropped::Refuse)?;
        step(
            "clean build into an empty build directory, ccache warm".into(),
            start,
        );
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(steps)
}

#[derive(Serialize)]
struct Results<'a> {
    kernel: String,
    /// The guest clock of every figure below.
    clock: Clock,
    /// How the guest ran.
    guest: String,
    rounds: Rounds,
    /// Rounds the guest finished.
    rounds_run: u32,
    /// The largest relative move of a pair's ratio when the last round was
    /// added ([`max_ratio_change`]), and the bound it was held to.
    last_ratio_change: Option<f64>,
    stable_within: f64,
    /// How far from 1 an A/A control may be; null where not judged.
    aa_tolerance: Option<f64>,
    samples: &'a [Sample],
    pairs: &'a [Pair],
    /// Steps of the pipeline and their seconds, if measured.
    pipeline: &'a [(String, f64)],
}

/// What `bench` measures with, from the command line.
pub struct Options {
    pub rounds: Rounds,
    pub mode: Option<Mode>,
    /// The largest relative move of a median, when a round is added, at
    /// which the rounds stop (0.005 for 0.5%).
    pub stable: f64,
}

/// Whether the guest can stop after `done` rounds, whose last moved the
/// medians by `change` at most.
pub fn should_stop(done: u32, change: Option<f64>, rounds: Rounds, stable: f64) -> bool {
    done >= rounds.min && change.is_some_and(|c| c <= stable)
}

/// Reads the guest's samples while it runs (`running`): after each round,
/// logs the largest move of a median to rounds.log, creates the file `stop`
/// in `out` once [`should_stop`], and then `judged-<rounds done>`, which
/// the guest waits for.
fn watch_rounds(out: &Path, rounds: Rounds, stable: f64, running: &AtomicBool) {
    let mut checked = 0;
    let mut log = String::new();
    while running.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        let text = std::fs::read_to_string(out.join("samples.txt")).unwrap_or_default();
        let done = rounds_done(&text);
        if done == checked {
            continue;
        }
        checked = done;
        let change = max_ratio_change(&parse_samples(&text), done);
        let stop = should_stop(done, change, rounds, stable);
        log.push_str(&format!(
            "after round {done}: largest ratio move {}{}\n",
            change.map_or("-".into(), |c| format!("{:.3}%", c * 100.0)),
            if stop { ": stable, stopping" } else { "" }
        ));
        let _ = std::fs::write(out.join("rounds.log"), &log);
        if stop {
            let _ = std::fs::write(out.join("stop"), "");
        }
        let _ = std::fs::write(out.join(format!("judged-{done}")), "");
        if stop {
            return;
        }
    }
}

/// Where a benchmark guest runs: work/bench, the clock, and the directory
/// of this kind of run and clock, shared with the guest.
pub struct GuestDirs {
    pub top: PathBuf,
    pub clock: Clock,
    pub out: PathBuf,
}

/// Chooses the clock (a KVM probe boot if `mode` leaves it open) and
/// creates work/bench/`prefix`<clock>, without its `stale` files.
pub fn guest_dirs(
    ctx: &Ctx,
    bzimage: &Path,
    mode: Option<Mode>,
    prefix: &str,
    stale: &[&str],
) -> Result<GuestDirs> {
    let top = ctx.root.join("work/bench");
    std::fs::create_dir_all(&top).with_context(|| format!("cannot create {}", top.display()))?;
    let top = top.canonicalize()?;
    let clock = Clock::choose(mode, || vm::kvm_works(ctx, bzimage, &top));
    let out = top.join(format!("{prefix}{}", clock.name()));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    for name in stale {
        let _ = std::fs::remove_file(out.join(name));
    }
    Ok(GuestDirs { top, clock, out })
}

/// vng running `script` with `clock`, `extra` kernel arguments and the
/// guest time-out of series.toml.
pub fn guest(
    ctx: &Ctx,
    bzimage: &Path,
    out: &Path,
    clock: Clock,
    extra: &[String],
    script: &Path,
) -> crate::proc::Cmd {
    vm::vng(ctx, bzimage, out, clock.kvm(), extra)
        .args(clock.vng_args())
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .timeout(Duration::from_secs(ctx.cfg.vm.timeout))
}

/// Compiles udmabuf_bench into `dir` and builds the benchmark modules
/// against the default profile's kernel.
pub fn guest_programs(ctx: &Ctx, dir: &Path) -> Result<(UdmabufBench, PagePoolBench)> {
    let udmabuf = UdmabufBench {
        program: dir.join("udmabuf_bench"),
        importer: build::bench_dmabuf_importer_module(ctx, "default")?,
    };
    ctx.cmd("gcc")
        .args(["-O2", "-static", "-Wall", "-o"])
        .arg(&udmabuf.program)
        .arg(ctx.root.join("bench/udmabuf_bench.c"))
        .run(&ctx.log("bench-compile"))
        .context("cannot compile bench/udmabuf_bench.c (is libc6-dev installed?)")?;
    let page_pool = PagePoolBench {
        script: ctx.root.join("bench/page_pool_mp.py"),
        module: build::bench_page_pool_module(ctx, "default")?,
    };
    Ok((udmabuf, page_pool))
}

/// Compiles the guest programs, boots once, and reports.
pub fn bench(
    ctx: &Ctx,
    bzimage: &Path,
    kselftests: &Path,
    opts: &Options,
    pipeline: &[(String, f64)],
) -> Result<()> {
    let stale = ["samples.txt", "stderr.txt", "done", "stop", "rounds.log"];
    let GuestDirs { top, clock, out } = guest_dirs(ctx, bzimage, opts.mode, "", &stale)?;
    for entry in std::fs::read_dir(&out)? {
        let path = entry?.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("judged-"))
        {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    let (udmabuf, page_pool) = guest_programs(ctx, &top)?;
    let script = out.join("guest.sh");
    std::fs::write(
        &script,
        guest_script(&out, kselftests, &udmabuf, &page_pool, opts.rounds),
    )
    .with_context(|| format!("cannot write {}", script.display()))?;

    let Rounds { min, max } = opts.rounds;
    eprintln!(
        "  clock: {} ({})\n  {min} to {max} rounds, until no ratio moves by more than {:.2}% (log: {})",
        clock.name(),
        clock.describe(),
        opts.stable * 100.0,
        out.join("rounds.log").display()
    );
    let log = ctx.log(&format!("bench-guest-{}", clock.name()));
    let running = AtomicBool::new(true);
    let exit = std::thread::scope(|scope| {
        scope.spawn(|| watch_rounds(&out, opts.rounds, opts.stable, &running));
        let exit = guest(ctx, bzimage, &out, clock, &[], &script).run_unchecked(&log);
        running.store(false, Ordering::Relaxed);
        exit
    })?;
    if exit.timed_out || !out.join("done").exists() {
        bail!(
            "the benchmark guest did not finish (console: {}, guest stderr: {})",
            log.display(),
            out.join("stderr.txt").display()
        );
    }
    let text = std::fs::read_to_string(out.join("samples.txt"))?;
    let samples = parse_samples(&text);
    if samples.is_empty() {
        bail!(
            "the guest printed no samples (see {})",
            out.join("stderr.txt").display()
        );
    }
    for (what, source) in [("pin-", "gup_test"), ("pp-", "bench/page_pool_mp.py")] {
        if !samples.iter().any(|s| s.what.starts_with(what)) {
            bail!(
                "the guest printed no {source} samples (see {})",
                out.join("stderr.txt").display()
            );
        }
    }
    // Not fatal: the other measures of the boot stand without them.
    if !samples
        .iter()
        .any(|s| IMPORT_OPS.contains(&s.what.as_str()))
    {
        eprintln!(
            "warning: the guest printed no importer samples ({}): see {}",
            IMPORT_OPS.join(", "),
            out.join("stderr.txt").display()
        );
    }
    let rounds_run = rounds_done(&text);
    let change = max_ratio_change(&samples, rounds_run);
    let stable = should_stop(rounds_run, change, opts.rounds, opts.stable);
    eprintln!(
        "  {rounds_run} rounds; the last moved the ratios by {} at most: {}",
        change.map_or("-".into(), |c| format!("{:.2}%", c * 100.0)),
        if stable {
            "stable"
        } else {
            "NOT stable (raise --max-rounds)"
        }
    );
    let pairs = pairs(&samples);
    let kernel = std::fs::read_to_string(&log)
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.contains("Linux version"))
                .map(str::to_string)
        })
        .unwrap_or_default();
    let results = Results {
        kernel,
        clock,
        guest: format!(
            "one boot, arms alternating each round; {}",
            clock.describe()
        ),
        rounds: opts.rounds,
        rounds_run,
        last_ratio_change: change,
        stable_within: opts.stable,
        aa_tolerance: clock.aa_tolerance(),
        samples: &samples,
        pairs: &pairs,
        pipeline,
    };
    let json = out.join("results.json");
    std::fs::write(&json, serde_json::to_string_pretty(&results)?)?;
    eprintln!("every sample: {}", json.display());
    report(&out, &pairs, Some(clock), pipeline)?;
    let failed = controls(&pairs, clock.aa_tolerance())
        .iter()
        .filter(|(_, _, v)| *v == Verdict::Fail)
        .count();
    if failed > 0 {
        bail!(
            "{failed} A/A controls are further than {:.1}% from 1: the measure is noisier than the ratios it should judge",
            AA_TOLERANCE * 100.0
        );
    }
    Ok(())
}

/// Prints the tables of `pairs`, measured with `clock` (None: a result of
/// before clocks were recorded), and draws their plots into `out`.
fn report(
    out: &Path,
    pairs: &[Pair],
    clock: Option<Clock>,
    pipeline: &[(String, f64)],
) -> Result<()> {
    let tolerance = clock.and_then(Clock::aa_tolerance);
    match clock {
        Some(c) => println!("clock: {} ({})", c.name(), c.describe()),
        None => println!("clock: not recorded (a run of before `--mode`: TCG or KVM wall clock)"),
    }
    print!(
        "{}{}\n{}",
        table(pairs, tolerance),
        controls_summary(pairs, tolerance),
        per_page_table(pairs)
    );
    for (step, secs) in pipeline {
        println!("{:<70} {:>6.0} s", step, secs);
    }
    let md = out.join("table.md");
    std::fs::write(&md, markdown_table(pairs, tolerance))
        .with_context(|| format!("writing {}", md.display()))?;
    eprintln!("Markdown table: {}", md.display());
    for p in plots(out, pairs, clock)? {
        eprintln!("plot: {}", p.display());
    }
    Ok(())
}

/// What [`replot`] and [`compare_runs`] read of a results.json.
#[derive(Deserialize)]
struct Saved {
    samples: Vec<Sample>,
    #[serde(default)]
    pipeline: Vec<(String, f64)>,
    #[serde(default)]
    clock: Option<Clock>,
}

/// Tables and plots again from the samples of the last run of each clock
/// (work/bench/<clock>/results.json), and of a run of before clocks were
/// recorded (work/bench/results.json).
pub fn replot(ctx: &Ctx) -> Result<()> {
    let top = ctx.root.join("work/bench");
    let dirs = [Clock::Icount, Clock::WallTcg, Clock::WallKvm]
        .map(|c| top.join(c.name()))
        .into_iter()
        .chain([top.clone()]);
    let mut found = false;
    for out in dirs {
        let json = out.join("results.json");
        let Ok(text) = std::fs::read_to_string(&json) else {
            continue;
        };
        let saved: Saved = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a bench result", json.display()))?;
        if found {
            println!();
        }
        found = true;
        println!("{}:", json.display());
        report(&out, &pairs(&saved.samples), saved.clock, &saved.pipeline)?;
    }
    if !found {
        bail!(
            "no results.json under {}: run `cargo xtask bench` first",
            top.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_pairs() {
        let text = "\
PIN 4k 64M fd 100 50
PIN 4k 64M fast 200 60
PIN 4k 64M fd 120 40
PIN 4k 64M fast 180 80
noise line
UDMABUF 2M-2M mmap-read c 1000.0
UDMABUF 2M-2M mmap-read rs 2000.0
UDMABUF 2M-2M create+close c 10.0
UDMABUF 2M-2M create+close rs 12.0
";
        let samples = parse_samples(text);
        assert_eq!(samples.len(), 12);
        let pairs = pairs(&samples);
        let find = |what: &str| pairs.iter().find(|p| p.what == what).unwrap();
        assert_eq!(find("pin-get").ratio, 110.0 / 190.0);
        assert_eq!(find("pin-put").stats[1].max, 80.0);
        // Throughput: twice the MB/s is half the time.
        assert_eq!(find("mmap-read").ratio, 0.5);
        assert!((find("create+close").ratio - 1.2).abs() < 1e-9);
        assert!(table(&pairs, None).contains("mmap-read"));
    }

    #[test]
    fn importer_samples_are_times_per_call() {
        let text = "\
UDMABUF 4k-2M vmap+vunmap c 20.000
UDMABUF 4k-2M vmap+vunmap rs 15.000
UDMABUF 4k-2M vmap+vunmap c 22.000
UDMABUF 4k-2M vmap+vunmap rs 17.000
UDMABUF 2M-256M map+unmap rs 1200.25
UDMABUF 2M-256M map+unmap c 1000.25
UDMABUF 4k-2M attach+detach c 0.250
UDMABUF 4k-2M attach+detach rs 0.2
";
        let samples = parse_samples(text);
        assert_eq!(samples.len(), 8);
        assert_eq!(samples[4].what, "map+unmap");
        assert_eq!(samples[4].case, "2M-256M");
        assert_eq!(samples[4].value, 1200.25);
        let pairs = pairs(&samples);
        assert_eq!(pairs.len(), 3);
        let find = |what: &str| pairs.iter().find(|p| p.what == what).unwrap();
        // Lower is better, as for create: rs time over c time.
        let vmap = find("vmap+vunmap");
        assert_eq!(vmap.arms, ["rs", "c"]);
        assert_eq!(vmap.ratio, 16.0 / 21.0);
        assert_eq!(find("map+unmap").ratio, 1200.25 / 1000.25);
        assert!((find("attach+detach").ratio - 0.8).abs() < 1e-9);
        // Fractions of a microsecond keep their decimals in the table.
        let t = table(&pairs, None);
        let line = t.lines().find(|l| l.starts_with("attach+detach")).unwrap();
        assert!(line.contains("rs: 0.20 [0.20-0.20]"), "{line}");
        assert!(line.contains("c: 0.25 [0.25-0.25]"), "{line}");
        let line = t.lines().find(|l| l.starts_with("vmap+vunmap")).unwrap();
        assert!(line.contains("rs: 16 [15-17]"), "{line}");
        let line = t.lines().find(|l| l.starts_with("map+unmap")).unwrap();
        assert!(line.contains("rs: 1200 [1200-1200]"), "{line}");
    }

    #[test]
    fn short_numbers() {
        assert_eq!(short(190.0), "190");
        assert_eq!(short(123.4), "123");
        assert_eq!(short(13.44), "13.4");
        assert_eq!(short(1.234), "1.23");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn page_pool_arms_pair_with_no_provider_and_c() {
        let text = "PP provider-path none 100\nPP provider-path c 300\nPP provider-path rs 306\n";
        let pairs = pairs(&parse_samples(text));
        let ratio = |a: &str, b: &str| {
            pairs
                .iter()
                .find(|p| p.what == "pp-provider-path" && p.arms == [a, b])
                .unwrap()
                .ratio
        };
        assert!((ratio("rs", "c") - 1.02).abs() < 1e-9);
        assert_eq!(ratio("c", "none"), 3.0);
        assert_eq!(ratio("rs", "none"), 3.06);
    }

    #[test]
    fn free_list_arms_pair_with_their_control() {
        let text = "PP provider-path c-fl 300\nPP provider-path rs-fl 330\n\
                    PP provider-path c-fl-aa 301.5\n";
        let pairs = pairs(&parse_samples(text));
        let [p] = pairs.as_slice() else {
            panic!("{pairs:?}")
        };
        assert_eq!(p.arms, ["rs-fl", "c-fl"]);
        assert!((p.ratio - 1.1).abs() < 1e-9);
        assert!((p.control.as_ref().unwrap().ratio - 1.005).abs() < 1e-9);
        let md = markdown_table(&pairs, Some(AA_TOLERANCE));
        assert!(
            md.contains("| pp-provider-path | page_pool | rs-fl/c-fl | 1.100 | 1.100-1.100 | 1.005 | 0.50% ok | 330 | 300 |\n"),
            "{md}"
        );
    }

    #[test]
    fn one_odd_round_does_not_spread_a_ratio() {
        assert_eq!(relative_iqr(&[0.982, 0.982, 0.862, 0.982, 0.982]), 0.0);
        assert!(relative_iqr(&[1.37, 1.29, 1.82, 1.57, 1.63]) > 0.1);
        assert!(relative_iqr(&[]).is_nan());
    }

    #[test]
    fn ratio_changes_judge_steady_pairs_of_the_first_run() {
        // `rounds` rounds of c 300 against rs at the given values.
        let run = |rs: &[f64], extra: &str| {
            let mut v = Vec::new();
            for (round, r) in rs.iter().enumerate() {
                let mut s = parse_samples(&format!(
                    "PP provider-path c 300\nPP provider-path rs {r}\n{extra}"
                ));
                s.iter_mut().for_each(|s| s.round = round as u32);
                v.append(&mut s);
            }
            pairs(&v)
        };
        let verdict = |then: &[Pair], now: &[Pair]| {
            let c = ratio_changes(then, now, AA_TOLERANCE);
            let rc = c
                .iter()
                .find(|c| c.pair == "pp-provider-path page_pool rs/c");
            rc.map(|c| c.verdict)
        };
        let steady = run(&[303.0; 5], "");
        // Within the tolerance: pass; beyond it: fail.
        assert_eq!(verdict(&steady, &run(&[304.0; 5], "")), Some(Judged::Pass));
        assert_eq!(verdict(&steady, &run(&[306.0; 5], "")), Some(Judged::Fail));
        // One odd round of five does not make a pair unsteady.
        let odd = run(&[303.0, 303.0, 360.0, 303.0, 303.0], "");
        assert_eq!(verdict(&odd, &steady), Some(Judged::Pass));
        // A pair that moves from round to round, or has too few rounds, is
        // not judged; one that turned noisy in the second run is.
        let moving = run(&[300.0, 330.0, 360.0, 390.0, 420.0], "");
        assert_eq!(verdict(&moving, &steady), Some(Judged::Unsteady));
        assert_eq!(
            verdict(&run(&[303.0; 3], ""), &steady),
            Some(Judged::Unsteady)
        );
        assert_eq!(verdict(&steady, &moving), Some(Judged::Fail));
        // Missing in the second run: fail; new in it: not compared.
        let other = run(&[303.0; 5], "")
            .into_iter()
            .filter(|p| p.arms[0] != "rs");
        assert_eq!(
            verdict(&steady, &other.collect::<Vec<_>>()),
            Some(Judged::Fail)
        );
        let with_new = run(
            &[303.0; 5],
            "PP provider-path rs-fl 1\nPP provider-path c-fl 1\n",
        );
        let c = ratio_changes(&steady, &with_new, AA_TOLERANCE);
        assert!(c
            .iter()
            .any(|c| c.verdict == Judged::New && c.pair.contains("rs-fl/c-fl")));
    }

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[1.0, 3.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert!(relative_iqr(&[0.0]).is_nan());
    }

    #[test]
    fn per_page_costs() {
        let samples = parse_samples(
            "PIN 4k 2M fd 1024 1\nPIN 4k 2M fast 512 1\nPIN hugetlb 2M fd 16 1\nPIN hugetlb 2M fast 32 1\n",
        );
        let t = per_page_table(&pairs(&samples));
        // 1024 us over 512 pages: 2000 ns a page; hugetlb's 31.2 ns is 64x cheaper.
        assert!(t.contains("4k 2M"), "{t}");
        let line = t.lines().find(|l| l.starts_with("hugetlb 2M")).unwrap();
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[2..], ["31.2", "62.5", "-", "64.0x"]);
    }

    #[test]
    fn stats_of_even_and_empty() {
        assert_eq!(stats(&[]), None);
        let s = stats(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.5, 1.0, 4.0, 4));
    }

    fn programs() -> (UdmabufBench, PagePoolBench) {
        let ub = UdmabufBench {
            program: "/o/ub".into(),
            importer: "/w/dmabuf_import_bench.ko".into(),
        };
        let pp = PagePoolBench {
            script: "/r/bench/page_pool_mp.py".into(),
            module: "/t/bench_page_pool.ko".into(),
        };
        (ub, pp)
    }

    #[test]
    fn script_alternates_arms() {
        let (ub, pp) = programs();
        let rounds = Rounds { min: 2, max: 7 };
        let s = guest_script(Path::new("/o"), Path::new("/k"), &ub, &pp, rounds);
        assert!(s.contains("cd /k/mm\n"));
        // Even rounds in the arms' order, odd ones reversed, A/A controls
        // run like their arm.
        let (even, odd) = s.split_once("\telse\n").unwrap();
        let order = |part: &str| -> Vec<String> {
            part.lines()
                .filter(|l| l.trim_start().starts_with("pin 4k 2 "))
                .map(|l| l.split_whitespace().nth(3).unwrap().to_string())
                .collect()
        };
        assert_eq!(
            order(even),
            ["fd", "fast", "folios", "fast-aa", "folios-aa"]
        );
        assert_eq!(order(odd), ["folios-aa", "fast-aa", "folios", "fast", "fd"]);
        assert!(s.contains("\t\tpin hugetlb 512 fast-aa -a -M -H\n"), "{s}");
        // The importer is loaded around udmabuf_bench only; each round runs
        // 1/min of its repetitions.
        assert!(s.contains(
            "\n\tinsmod /w/dmabuf_import_bench.ko\n\t/o/ub --raw --split 2\n\trmmod dmabuf_import_bench\n"
        ));
        assert!(s.contains(
            "\tpython3 /r/bench/page_pool_mp.py /k /t/bench_page_pool.ko $n 200000 none c rs c-fl rs-fl c-aa none-aa c-fl-aa\n"
        ));
        // Rounds are marked, at least 2, then until `stop`, at most 7.
        assert!(s.contains("\techo \"ROUND $n\"\n"));
        assert!(s.contains("\techo \"ROUND-END $n\"\n"));
        assert!(s.contains("while [ $n -lt 7 ]"));
        let wait = "\t[ $n -ge 2 ] && [ $n -lt 7 ] || continue\n\
                    \twhile [ ! -e /o/judged-$n ]; do sleep 1; done\n\
                    \t[ -e /o/stop ] && break\n";
        assert!(s.contains(wait), "{s}");
        assert!(s.trim_end().ends_with("touch /o/done"));
        // Progress goes to the console, saved as fd 3.
        assert!(s.contains("exec 3>&1 > /o/samples.txt"));
        assert!(s.contains(">&3\n"));
        // It is valid sh.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("guest.sh");
        std::fs::write(&path, &s).unwrap();
        let ok = std::process::Command::new("sh")
            .arg("-n")
            .arg(&path)
            .status()
            .unwrap();
        assert!(ok.success(), "{s}");
    }

    /// Runs the guest script's loop over rounds with `round` replaced by
    /// one printing `value` (sh, of $1) for the C provider and 100 for no
    /// provider, a pair, against the host's
    /// watcher; returns the rounds run and whether the host said stop.
    fn rounds_against_watcher(rounds: Rounds, value: &str) -> (u32, bool) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let (ub, pp) = programs();
        let script = guest_script(out, Path::new("/k"), &ub, &pp, rounds);
        let rounds_loop = &script[script.find("\nn=0\n").unwrap() + 1..];
        let stub = format!(
            "exec > {}/samples.txt\n\
             round() {{ echo \"ROUND $1\"; echo \"PP fast-path c {value}\"; echo \"PP fast-path none 100\"; echo \"ROUND-END $1\"; }}\n\
             {rounds_loop}",
            out.display()
        );
        let running = AtomicBool::new(true);
        let status = std::thread::scope(|scope| {
            scope.spawn(|| watch_rounds(out, rounds, 0.005, &running));
            let status = std::process::Command::new("sh")
                .args(["-c", &stub])
                .status()
                .unwrap();
            running.store(false, Ordering::Relaxed);
            status
        });
        assert!(status.success());
        assert!(out.join("done").exists());
        let text = std::fs::read_to_string(out.join("samples.txt")).unwrap();
        let log = std::fs::read_to_string(out.join("rounds.log")).unwrap_or_default();
        assert!(log.starts_with("after round"), "{log}");
        (rounds_done(&text), out.join("stop").exists())
    }

    #[test]
    fn guest_stops_when_the_host_finds_ratios_stable() {
        let r = Rounds { min: 2, max: 6 };
        // The same value every round: stable at the first judged round.
        assert_eq!(rounds_against_watcher(r, "100"), (2, true));
        let r = Rounds { min: 3, max: 6 };
        assert_eq!(rounds_against_watcher(r, "100"), (3, true));
        // Growing by half each round: never stable, up to the cap.
        assert_eq!(rounds_against_watcher(r, "$((100 + $1 * 50))"), (6, false));
    }

    #[test]
    fn controls_follow_the_pairs_baselines() {
        assert_eq!(
            with_controls(&PIN_ARMS.map(|(a, _)| a)),
            ["fd", "fast", "folios", "fast-aa", "folios-aa"]
        );
        assert_eq!(
            with_controls(&PAGE_POOL_ARMS),
            ["none", "c", "rs", "c-fl", "rs-fl", "c-aa", "none-aa", "c-fl-aa"]
        );
        // udmabuf_bench's arms: c, rs and the control of c.
        assert_eq!(with_controls(&["c", "rs"]), ["c", "rs", "c-aa"]);
        assert_eq!(pin_opts("folios-aa"), Some("-P"));
        assert_eq!(pin_opts("x"), None);
    }

    #[test]
    fn clock_choice() {
        let never = || -> bool { panic!("icount needs no KVM probe") };
        assert_eq!(Clock::choose(Some(Mode::Icount), never), Clock::Icount);
        assert_eq!(Clock::choose(None, || false), Clock::Icount);
        assert_eq!(Clock::choose(None, || true), Clock::WallKvm);
        assert_eq!(Clock::choose(Some(Mode::Wall), || false), Clock::WallTcg);
        assert_eq!(Clock::choose(Some(Mode::Wall), || true), Clock::WallKvm);
        assert_eq!(
            Clock::Icount.vng_args(),
            ["--qemu-opts=-icount shift=0,sleep=off"]
        );
        assert!(Clock::WallTcg.vng_args().is_empty());
        assert!(!Clock::Icount.kvm() && Clock::WallKvm.kvm());
        assert_eq!(Clock::Icount.aa_tolerance(), Some(0.005));
        assert_eq!(Clock::WallKvm.aa_tolerance(), None);
        assert_eq!(
            serde_json::to_string(&Clock::WallTcg).unwrap(),
            "\"wall-tcg\""
        );
        let back: Clock = serde_json::from_str("\"icount\"").unwrap();
        assert_eq!(back, Clock::Icount);
    }

    #[test]
    fn samples_carry_their_round() {
        let text = "\
PIN 4k 2M fd 10 1
ROUND 0
PIN 4k 2M fd 11 1
PP fast-path c 5.5
ROUND-END 0
ROUND 1
UDMABUF 4k-2M create+close c-aa 3
ROUND-END 1
ROUND 2
PIN 4k 2M fd 12
";
        let samples = parse_samples(text);
        let rounds: Vec<u32> = samples.iter().map(|s| s.round).collect();
        assert_eq!(rounds, [0, 0, 0, 0, 0, 1]);
        assert_eq!(samples[5].arm, "c-aa");
        // The partial last line is no sample, and round 2 is not done.
        assert_eq!(rounds_done(text), 2);
        assert_eq!(rounds_done(""), 0);
        // Results of before rounds were recorded still read.
        let old = r#"{"what":"pin-get","case":"4k 2M","arm":"fd","value":1.0}"#;
        let s: Sample = serde_json::from_str(old).unwrap();
        assert_eq!(s.round, 0);
    }

    /// Samples of one measure: (arm, round, value).
    fn samples_of(what: &str, v: &[(&str, u32, f64)]) -> Vec<Sample> {
        v.iter()
            .map(|&(arm, round, value)| Sample {
                what: what.into(),
                case: "4k 64M".into(),
                arm: arm.into(),
                value,
                round,
            })
            .collect()
    }

    #[test]
    fn aa_controls_beside_each_ratio() {
        let mut samples = samples_of(
            "pin-get",
            &[
                ("fd", 0, 3627.0),
                ("fast", 0, 2556.0),
                ("fast-aa", 0, 2565.0),
                ("folios", 0, 4000.0),
                ("folios-aa", 0, 4000.0),
            ],
        );
        // A control below resolution: NaN, not judged.
        samples.extend(samples_of(
            "pin-put",
            &[("fd", 0, 1.0), ("fast", 0, 0.0), ("fast-aa", 0, 0.0)],
        ));
        let pairs = pairs(&samples);
        let find = |what: &str, base: &str| {
            pairs
                .iter()
                .find(|p| p.what == what && p.arms[1] == base)
                .unwrap()
        };
        let fast = find("pin-get", "fast");
        let c = fast.control.as_ref().unwrap();
        assert_eq!(c.arm, "fast-aa");
        assert_eq!(c.ratio, 2565.0 / 2556.0);
        assert!((c.spread() - 9.0 / 2556.0).abs() < 1e-12);
        // 0.35%: within 0.5%, and outside a tighter tolerance.
        assert_eq!(Verdict::of(Some(c), Some(0.005)), Verdict::Pass);
        assert_eq!(Verdict::of(Some(c), Some(0.003)), Verdict::Fail);
        assert_eq!(Verdict::of(Some(c), None), Verdict::Reported);
        assert_eq!(Verdict::of(None, Some(0.005)), Verdict::Missing);
        let put = find("pin-put", "fast");
        assert_eq!(
            Verdict::of(put.control.as_ref(), Some(0.005)),
            Verdict::Unresolved
        );
        // Exactly 0.5% passes.
        let edge = Control {
            arm: "x-aa".into(),
            stats: stats(&[1.0]).unwrap(),
            ratio: 1.005,
        };
        assert_eq!(Verdict::of(Some(&edge), Some(0.005)), Verdict::Pass);

        let t = table(&pairs, Some(0.005));
        let line = t
            .lines()
            .find(|l| l.starts_with("pin-get") && l.contains("fast:"))
            .unwrap();
        assert!(line.ends_with("1.419   1.004   0.4% ok"), "{line}");
        let line = t
            .lines()
            .find(|l| l.starts_with("pin-get") && l.contains("folios:"))
            .unwrap();
        assert!(line.ends_with("1.000   0.0% ok"), "{line}");
        let line = t.lines().find(|l| l.starts_with("pin-put")).unwrap();
        assert!(line.ends_with("NaN      - n/r"), "{line}");

        let summary = controls_summary(&pairs, Some(0.005));
        assert!(
            summary.starts_with("A/A controls: 2 within 0.5% of 1, 0 outside, 1 below resolution; largest spread 0.35%"),
            "{summary}"
        );
        let summary = controls_summary(&pairs, Some(0.001));
        assert!(summary.contains("1 outside"), "{summary}");
        assert!(
            summary.contains("  FAIL pin-get 4k 64M: fast-aa / fast = 1.0035\n"),
            "{summary}"
        );
        let summary = controls_summary(&pairs, None);
        assert!(
            summary.starts_with("A/A controls (not judged with this clock): 2 measured"),
            "{summary}"
        );
        // Pairs sharing a baseline share its control: listed once.
        let shared = samples_of(
            "pp-provider-path",
            &[
                ("none", 0, 1.0),
                ("c", 0, 2.0),
                ("rs", 0, 2.0),
                ("none-aa", 0, 1.0),
            ],
        );
        let p = super::pairs(&shared);
        assert_eq!(p.len(), 3);
        assert_eq!(controls(&p, Some(0.005)).len(), 1);
        assert!(controls_summary(&p, Some(0.005)).contains("; 1 pairs without a control"));
    }

    #[test]
    fn ratios_settle() {
        let pp = |v: &[(&str, u32, f64)]| {
            samples_of("pp-provider-path", v)
                .into_iter()
                .map(|s| Sample {
                    case: "page_pool".into(),
                    ..s
                })
                .collect::<Vec<_>>()
        };
        // Each round at another level, the ratio c/none always 2: stable,
        // though the pooled medians move.
        let mut s = pp(&[
            ("none", 0, 100.0),
            ("c", 0, 200.0),
            ("none", 1, 300.0),
            ("c", 1, 600.0),
        ]);
        assert_eq!(max_ratio_change(&s, 1), None);
        assert_eq!(max_ratio_change(&s, 2), Some(0.0));
        let p = pairs(&s);
        let c = p.iter().find(|p| p.arms == ["c", "none"]).unwrap();
        assert_eq!(c.ratio, 2.0);
        assert_eq!(c.stats[0].median, 400.0);
        // Round 2 at ratio 2.2: the median of 2, 2, 2.2 stays 2.
        s.extend(pp(&[("none", 2, 100.0), ("c", 2, 220.0)]));
        assert_eq!(max_ratio_change(&s, 3), Some(0.0));
        // Round 3 too: the median of 2, 2, 2.2, 2.2 moves to 2.1.
        s.extend(pp(&[("none", 3, 100.0), ("c", 3, 220.0)]));
        let c = max_ratio_change(&s, 4).unwrap();
        assert!((c - 0.05).abs() < 1e-9, "{c}");
        // Samples of a round not finished are not counted.
        assert_eq!(max_ratio_change(&s, 3), Some(0.0));
        // An A/A control's ratio counts too.
        let mut aa = pp(&[("none", 0, 100.0), ("none-aa", 0, 100.0), ("c", 0, 100.0)]);
        aa.extend(pp(&[
            ("none", 1, 100.0),
            ("none-aa", 1, 150.0),
            ("c", 1, 100.0),
        ]));
        let c = max_ratio_change(&aa, 2).unwrap();
        assert!((c - 0.25).abs() < 1e-9, "{c}");
        // Pins whose baseline is below 100 us (1 us resolution) do not count.
        let pins = samples_of(
            "pin-get",
            &[
                ("fd", 0, 3.0),
                ("fast", 0, 2.0),
                ("fd", 1, 4.0),
                ("fast", 1, 2.0),
            ],
        );
        assert_eq!(max_ratio_change(&pins, 2), None);
        let pins = samples_of(
            "pin-get",
            &[
                ("fd", 0, 300.0),
                ("fast", 0, 200.0),
                ("fd", 1, 330.0),
                ("fast", 1, 200.0),
            ],
        );
        // Ratios 1.5 then 1.65: the median 1.575 is 5% above 1.5.
        assert!((max_ratio_change(&pins, 2).unwrap() - 0.05).abs() < 1e-9);

        let r = Rounds { min: 3, max: 10 };
        assert!(!should_stop(2, Some(0.0), r, 0.005));
        assert!(should_stop(3, Some(0.005), r, 0.005));
        assert!(!should_stop(3, Some(0.0051), r, 0.005));
        assert!(!should_stop(3, None, r, 0.005));
    }
}
