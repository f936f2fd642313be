//! `vm`: boot the built kernel under virtme-ng, run the selftests, collect
//! KUnit from dmesg and the pin counters, and judge the run.

use crate::config::{KnownFailure, Kselftest, Selected};
use crate::ctx::Ctx;
use crate::ktap::{self, Counts, Test};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What NIPA and the kernel print when something went wrong.
pub const CRASH_MARKERS: &[&str] = &[
    "] RIP: ",
    "] Call Trace:",
    "BUG:",
    "KASAN:",
    "unreferenced object 0x",
    "Kernel panic",
    // WARN() ("WARNING: CPU:") and lockdep ("WARNING: possible circular
    // locking dependency detected", "WARNING: suspicious RCU usage", ...).
    "WARNING: ",
    "UBSAN:",
    // A Rust panic (overflow checks, debug assertions).
    "panicked at",
];

/// The guest's results over all boots: the main boot first, then one boot
/// per distinct extra command line of the selftests (see [`plan_boots`]).
pub struct VmRun {
    pub kvm: bool,
    pub boots: Vec<Boot>,
    /// The selftests of every boot, in boot order.
    pub kselftests: Vec<Test>,
    /// KUnit suites, read from the main boot only.
    pub kunit: Vec<Test>,
    /// Per selftest: seconds taken and pins acquired/released while it ran.
    pub stats: Vec<TestStat>,
    /// Known failures of the base that did fail: (test path, reason).
    pub known: Vec<(String, String)>,
    pub crashes: Vec<String>,
    pub problems: Vec<String>,
}

/// One boot of the guest.
pub struct Boot {
    /// 1 for the main boot, then 2, 3, ...
    pub n: usize,
    /// Kernel arguments added to `vm.cmdline` (none for the main boot).
    pub cmdline: Vec<String>,
    /// The selftests it ran, by name.
    pub tests: Vec<String>,
    /// Its raw output: work/vm, work/vm-2, ...
    pub out: PathBuf,
    /// (nr_foll_pin_acquired, nr_foll_pin_released) before the first selftest
    /// and at the end.
    pub pins_before: Option<(u64, u64)>,
    pub pins_after: Option<(u64, u64)>,
}

/// The selftests of one boot and the kernel arguments they add to `vm.cmdline`.
#[derive(Debug)]
pub struct BootPlan {
    pub cmdline: Vec<String>,
    pub tests: Vec<Kselftest>,
}

/// Groups the selftests by their `cmdline`, keeping their order: the main
/// boot (no extra arguments, always there for KUnit) first, then one boot per
/// distinct command line, in the order they first appear.
pub fn plan_boots(tests: &[Kselftest]) -> Vec<BootPlan> {
    let mut boots = vec![BootPlan {
        cmdline: Vec::new(),
        tests: Vec::new(),
    }];
    for t in tests {
        match boots.iter_mut().find(|b| b.cmdline == t.cmdline) {
            Some(b) => b.tests.push(t.clone()),
            None => boots.push(BootPlan {
                cmdline: t.cmdline.clone(),
                tests: vec![t.clone()],
            }),
        }
    }
    boots
}

/// Boots `bzimage` once per [`BootPlan`] and runs the configured tests; never
/// fails on test results (see `VmRun::problems`), only when the guest cannot
/// run at all.
/// The `profile`'s timeout_factor stretches the guest's and every test's
/// timeout (the debug profile's checkers are slow), and its overrides
/// replace tests' commands.
pub fn run(ctx: &Ctx, bzimage: &Path, kselftests: &Path, profile: &Selected) -> Result<VmRun> {
    for o in profile.overrides {
        eprintln!("  {}: `{}` in this profile: {}", o.name, o.cmd, o.reason);
    }
    if !bzimage.exists() {
        bail!(
            "no kernel at {}: run `cargo xtask build` first",
            bzimage.display()
        );
    }
    let work = ctx.root.join("work");
    remove_boot_dirs(&work)?;
    let plans = plan_boots(&ctx.cfg.tests.kselftest);
    let kvm = kvm_works(ctx, bzimage, &boot_dir(&work, 1)?);
    eprintln!(
        "  booting under {} ({} CPUs, {} memory)",
        if kvm { "KVM" } else { "TCG (no usable KVM)" },
        ctx.cfg.vm.cpus,
        ctx.cfg.vm.memory
    );
    let mut boots = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let n = i + 1;
        if plans.len() > 1 {
            let what = if plan.cmdline.is_empty() {
                "vm.cmdline".to_string()
            } else {
                format!("extra cmdline {}", plan.cmdline.join(" "))
            };
            let count = plan.tests.len();
            let s = if count == 1 { "" } else { "s" };
            eprintln!("  boot {n} of {}: {what}, {count} test{s}", plans.len());
        }
        let out = boot_dir(&work, n)?;
        let timeout = ctx.cfg.vm.timeout * profile.timeout_factor;
        boots.push(run_boot(
            ctx,
            bzimage,
            kselftests,
            kvm,
            &for_profile(plan, profile),
            timeout,
            n,
            out,
        )?);
    }
    Ok(merge(kvm, boots, &ctx.cfg.tests.known_failure))
}

/// What one boot produced, before [`merge`].
struct BootResult {
    boot: Boot,
    kselftests: Vec<Test>,
    kunit: Vec<Test>,
    stats: Vec<TestStat>,
    crashes: Vec<String>,
    problems: Vec<String>,
    /// The guest script ran to its end.
    done: bool,
}

/// `plan` with every test's timeout multiplied by the profile's factor, and
/// its overrides' commands.
fn for_profile(plan: &BootPlan, profile: &Selected) -> BootPlan {
    let mut tests = plan.tests.clone();
    for t in &mut tests {
        t.timeout *= profile.timeout_factor;
        if let Some(o) = profile.overrides.iter().find(|o| o.name == t.name) {
            t.cmd = o.cmd.clone();
        }
    }
    BootPlan {
        cmdline: plan.cmdline.clone(),
        tests,
    }
}

/// Boot `n` (1: the main boot) with `plan`'s arguments: runs its selftests and
/// checks what concerns this boot alone. Only the main boot's KUnit counts.
#[allow(clippy::too_many_arguments)]
fn run_boot(
    ctx: &Ctx,
    bzimage: &Path,
    ksft: &Path,
    kvm: bool,
    plan: &BootPlan,
    timeout: u64,
    n: usize,
    out: PathBuf,
) -> Result<BootResult> {
    let script = out.join("guest.sh");
    std::fs::write(&script, guest_script(&out, ksft, &plan.tests))
        .with_context(|| format!("cannot write {}", script.display()))?;
    let log = ctx.log(&format!("vm-guest{}", boot_suffix(n)));
    let exit = vng(ctx, bzimage, &out, kvm, &plan.cmdline)
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .timeout(Duration::from_secs(timeout))
        .run_unchecked(&log)?;

    let mut problems = Vec::new();
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    let done = out.join("done").exists();
    if exit.timed_out {
        problems.push(format!(
            "the guest did not finish within {timeout} s (vm.timeout x the profile's timeout_factor) and was killed (console: {})",
            log.display()
        ));
    } else if !done {
        problems.push(format!(
            "the guest stopped before the tests finished (exit {:?}); console: {}",
            exit.code,
            log.display()
        ));
    }
    let dmesg = {
        let d = read("dmesg");
        // A guest that died leaves no dmesg file; its console still has the log.
        if d.is_empty() {
            std::fs::read_to_string(&log).unwrap_or_default()
        } else {
            d
        }
    };
    let kselftests = ktap::parse_kselftest(&read("kselftest.tap"));
    // kmemleak's report, when the kernel has it (the debug profile).
    let mut crashes = crash_lines(&dmesg);
    crashes.extend(crash_lines(&read("kmemleak")));
    let pins_after = parse_pins(&read("vmstat.after"));
    let pins_before = parse_pins(&read("vmstat.before"));
    let mut stats = parse_stats(&read("times.tsv"));
    pin_deltas(pins_before, &mut stats);

    for t in &plan.tests {
        if !kselftests.iter().any(|k| k.name.ends_with(&t.name)) {
            problems.push(format!("expected selftest {} did not run", t.name));
        }
    }
    // KUnit runs at every boot; only the main boot's is read and required.
    let (kunit, required) = match n {
        1 => (ktap::parse_kunit_dmesg(&dmesg), &ctx.cfg.tests.kunit[..]),
        _ => (Vec::new(), &[][..]),
    };
    for s in required {
        if !kunit.iter().any(|k| &k.name == s) {
            problems.push(format!("expected KUnit suite {s} did not run"));
        }
    }
    for st in &stats {
        if let Some((a, r)) = st.pins.filter(|(a, r)| a != r) {
            problems.push(format!(
                "{} left pins unbalanced: +{a} acquired, +{r} released",
                st.name
            ));
        }
    }
    if !crashes.is_empty() {
        problems.push(format!(
            "checker or crash reports in {} (dmesg, kmemleak):\n    {}",
            out.display(),
            crashes.join("\n    ")
        ));
    }
    match pins_after {
        Some((acq, rel)) if acq != rel => problems.push(format!(
            "pins leaked: nr_foll_pin_acquired {acq} != nr_foll_pin_released {rel}"
        )),
        Some(_) => {}
        None if done => {
            problems.push("no nr_foll_pin_* counters in the guest's /proc/vmstat".into())
        }
        None => {}
    }
    Ok(BootResult {
        boot: Boot {
            n,
            cmdline: plan.cmdline.clone(),
            tests: plan.tests.iter().map(|t| t.name.clone()).collect(),
            out,
            pins_before,
            pins_after,
        },
        kselftests,
        kunit,
        stats,
        crashes,
        problems,
        done,
    })
}

/// One report over all boots, in boot order; an extra boot's problems name
/// it. Known failures are judged on the tests of every boot together.
fn merge(kvm: bool, boots: Vec<BootResult>, known_failure: &[KnownFailure]) -> VmRun {
    let all_done = boots.iter().all(|b| b.done);
    let mut run = VmRun {
        kvm,
        boots: Vec::new(),
        kselftests: Vec::new(),
        kunit: Vec::new(),
        stats: Vec::new(),
        known: Vec::new(),
        crashes: Vec::new(),
        problems: Vec::new(),
    };
    for b in boots {
        let n = b.boot.n;
        run.problems.extend(b.problems.into_iter().map(|p| match n {
            1 => p,
            _ => format!("boot {n}: {p}"),
        }));
        run.kselftests.extend(b.kselftests);
        run.kunit.extend(b.kunit);
        run.stats.extend(b.stats);
        run.crashes.extend(b.crashes);
        run.boots.push(b.boot);
    }
    let mut known_seen = vec![false; known_failure.len()];
    for t in run.kselftests.iter().chain(&run.kunit) {
        for (path, f) in t.failures() {
            let path = path.trim_start_matches("selftests: ").to_string();
            match known_failure.iter().position(|k| k.matches(&path)) {
                Some(i) => {
                    known_seen[i] = true;
                    run.known.push((path, known_failure[i].reason.clone()));
                }
                None => run
                    .problems
                    .push(format!("not ok: {path} ({:?})", f.outcome)),
            }
        }
    }
    if all_done {
        for (k, seen) in known_failure.iter().zip(known_seen) {
            if !seen {
                run.problems.push(format!(
                    "known failure {:?} did not fail: remove it from series.toml",
                    k.test
                ));
            }
        }
    }
    run
}

/// "" for the main boot, "-2", "-3", ... for the extra ones.
fn boot_suffix(n: usize) -> String {
    if n == 1 {
        String::new()
    } else {
        format!("-{n}")
    }
}

/// Boot `n`'s output directory (work/vm, work/vm-2, ...), created.
fn boot_dir(work: &Path, n: usize) -> Result<PathBuf> {
    let dir = work.join(format!("vm{}", boot_suffix(n)));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.canonicalize()?)
}

/// Removes the output of earlier runs (work/vm and any work/vm-<n>), so that
/// no boot's directory is left over from a run with more boots.
fn remove_boot_dirs(work: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(work) else {
        return Ok(());
    };
    for e in entries {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let numbered = name
            .strip_prefix("vm-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()));
        if name == "vm" || numbered {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {} (remove it by hand)", path.display()))?;
        }
    }
    Ok(())
}

/// Turns the pin counters the guest recorded after each selftest into what
/// each one acquired and released, counting from `before`.
fn pin_deltas(before: Option<(u64, u64)>, stats: &mut [TestStat]) {
    let mut prev = before;
    for st in stats {
        let now = st.pins;
        st.pins = match (prev, now) {
            (Some((a0, r0)), Some((a, r))) => Some((a.saturating_sub(a0), r.saturating_sub(r0))),
            _ => None,
        };
        prev = now.or(prev);
    }
}

/// virtme-ng booting `bzimage` with `vm.cmdline` and then `extra` appended.
pub fn vng(ctx: &Ctx, bzimage: &Path, out: &Path, kvm: bool, extra: &[String]) -> crate::proc::Cmd {
    let mut c = ctx
        .cmd("vng")
        .arg("--verbose")
        .arg("--run")
        .arg(bzimage)
        .args(["--user", "root"])
        .args(["--memory", &ctx.cfg.vm.memory])
        .args(["--cpus", &ctx.cfg.vm.cpus.to_string()])
        .arg("--rwdir")
        .arg(out);
    for a in ctx.cfg.vm.cmdline.iter().chain(extra) {
        c = c.arg("--append").arg(a);
    }
    if !kvm {
        c = c.arg("--disable-kvm");
    }
    c
}

/// KVM is used when a guest actually boots with it: /dev/kvm can exist and
/// still refuse a normal guest (a nested or PVM host).
pub fn kvm_works(ctx: &Ctx, bzimage: &Path, out: &Path) -> bool {
    if std::env::var_os("PINFD_NO_KVM").is_some() || !Path::new("/dev/kvm").exists() {
        return false;
    }
    let marker = out.join("kvm-ok");
    let started = Instant::now();
    let ok = vng(ctx, bzimage, out, true, &[])
        .arg("--exec")
        .arg(format!("touch {}", marker.display()))
        // A KVM boot to a shell takes seconds; a broken KVM hangs silently.
        .timeout(Duration::from_secs(30))
        .run_unchecked(&ctx.log("vm-kvm-probe"))
        .map(|e| e.code == Some(0))
        .unwrap_or(false);
    let ok = ok && marker.exists();
    eprintln!(
        "  KVM probe: {} ({:.0} s)",
        if ok { "works" } else { "not usable" },
        started.elapsed().as_secs_f64()
    );
    ok
}

/// The guest side: runs each selftest in kselftest runner format (so the
/// same parser reads it), then saves dmesg and the pin counters.
pub fn guest_script(out: &Path, ksft: &Path, tests: &[Kselftest]) -> String {
    let runs: String = tests
        .iter()
        .map(|t| {
            format!(
                "run '{}' '{}' {} '{}'\n",
                t.name,
                t.dir,
                t.timeout,
                t.cmd.replace('\'', r"'\''")
            )
        })
        .collect();
    include_str!("guest.sh")
        .replace("@OUT@", &out.display().to_string())
        .replace("@KSFT@", &ksft.display().to_string())
        .replace("@COUNT@", &tests.len().to_string())
        .replace("@TESTS@\n", &runs)
}

/// One line of the guest's times.tsv: name, seconds, "acquired released".
pub struct TestStat {
    pub name: String,
    pub secs: u64,
    /// The pin counters after the test as parsed; [`run`] makes them what
    /// the test acquired and released.
    pub pins: Option<(u64, u64)>,
}

pub fn parse_stats(tsv: &str) -> Vec<TestStat> {
    tsv.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let name = f.next()?.to_string();
            let secs = f.next()?.trim().parse().ok()?;
            let mut p = f
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::parse::<u64>);
            let pins = match (p.next(), p.next()) {
                (Some(Ok(a)), Some(Ok(r))) => Some((a, r)),
                _ => None,
            };
            Some(TestStat { name, secs, pins })
        })
        .collect()
}

pub fn parse_pins(vmstat: &str) -> Option<(u64, u64)> {
    let get = |key: &str| {
        vmstat
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
    };
    Some((get("nr_foll_pin_acquired ")?, get("nr_foll_pin_released ")?))
}

/// Reports of an allocation that failed, as fault injection makes them:
/// they dump the stack, but are not bugs.
const ALLOCATION_FAILURES: &[&str] = &[
    "page allocation failure: order:",
    "vmalloc error: size",
    "percpu: allocation failed, size=",
];

/// The lines of `dmesg` with crash markers, leaving out the stack dumps of
/// [`ALLOCATION_FAILURES`]: from their header to the end of the dump
/// (`</TASK>`), within 80 lines.
pub fn crash_lines(dmesg: &str) -> Vec<String> {
    let mut in_allocation_failure = 0;
    dmesg
        .lines()
        .filter(|l| {
            if ALLOCATION_FAILURES.iter().any(|h| l.contains(h)) {
                in_allocation_failure = 80;
                return false;
            }
            if in_allocation_failure > 0 {
                in_allocation_failure -= 1;
                if l.contains("</TASK>") {
                    in_allocation_failure = 0;
                }
                return false;
            }
            CRASH_MARKERS.iter().any(|m| l.contains(m))
        })
        .take(20)
        .map(str::to_string)
        .collect()
}

/// One row of the summary: a selftest program or a KUnit suite.
pub struct Row {
    pub kind: &'static str,
    pub name: String,
    pub counts: Counts,
    pub verdict: &'static str,
    pub secs: Option<u64>,
    /// Pins acquired and released while it ran.
    pub pins: Option<(u64, u64)>,
}

impl VmRun {
    /// The selftests in boot order (an extra boot's marked with its
    /// number), then the KUnit suites.
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        for t in &self.kselftests {
            let name = t.name.trim_start_matches("selftests: ").to_string();
            let stat = self.stats.iter().find(|s| s.name == name);
            let boot = self.boots.iter().find(|b| b.tests.contains(&name));
            rows.push(Row {
                kind: "kselftest",
                counts: t.counts(),
                verdict: self.verdict(t),
                name: match boot {
                    Some(b) if b.n > 1 => format!("{name} (boot {})", b.n),
                    _ => name,
                },
                secs: stat.map(|s| s.secs),
                pins: stat.and_then(|s| s.pins),
            });
        }
        for t in &self.kunit {
            rows.push(Row {
                kind: "kunit",
                name: t.name.clone(),
                counts: t.counts(),
                verdict: self.verdict(t),
                secs: None,
                pins: None,
            });
        }
        rows
    }
}

impl VmRun {
    /// Pins acquired and released over the boots, and whether each boot
    /// ended with its counters equal; None when no boot has the counters.
    pub fn pins(&self) -> Option<(u64, u64, bool)> {
        let counted: Vec<_> = self
            .boots
            .iter()
            .filter_map(|b| b.pins_before.zip(b.pins_after))
            .collect();
        if counted.is_empty() {
            return None;
        }
        let acquired = counted
            .iter()
            .map(|((a0, _), (a, _))| a.saturating_sub(*a0));
        let released = counted
            .iter()
            .map(|((_, r0), (_, r))| r.saturating_sub(*r0));
        let balanced = self
            .boots
            .iter()
            .all(|b| b.pins_after.is_none_or(|(a, r)| a == r));
        Some((acquired.sum(), released.sum(), balanced))
    }

    /// FAIL, or "known" when every failure is a known failure of the base.
    fn verdict(&self, t: &Test) -> &'static str {
        let failures = t.failures();
        if failures.is_empty() && !t.outcome.is_failure() {
            return if t.outcome == ktap::Outcome::Skip {
                "SKIP"
            } else {
                "ok"
            };
        }
        let known = |p: &str| {
            let p = p.trim_start_matches("selftests: ");
            self.known.iter().any(|(k, _)| k == p)
        };
        if !failures.is_empty() && failures.iter().all(|(p, _)| known(p)) {
            "known"
        } else {
            "FAIL"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn selftest(name: &str, cmdline: &[&str]) -> Kselftest {
        Kselftest {
            name: name.into(),
            dir: "mm".into(),
            cmd: "./t".into(),
            timeout: 60,
            cmdline: cmdline.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn boots_group_tests_by_cmdline() {
        let t = [
            selftest("a", &["x=1"]),
            selftest("b", &[]),
            selftest("c", &["y=1"]),
            selftest("d", &["x=1"]),
            selftest("e", &[]),
            selftest("f", &["x=1", "y=1"]),
        ];
        let plans = plan_boots(&t);
        let got: Vec<_> = plans
            .iter()
            .map(|p| {
                let names: Vec<_> = p.tests.iter().map(|t| t.name.as_str()).collect();
                (p.cmdline.join(" "), names.join(","))
            })
            .collect();
        let want = [("", "b,e"), ("x=1", "a,d"), ("y=1", "c"), ("x=1 y=1", "f")];
        let want: Vec<_> = want.map(|(c, n)| (c.to_string(), n.to_string())).into();
        assert_eq!(got, want);
        // The main boot is there for KUnit even with no selftest of its own.
        let plans = plan_boots(&[selftest("a", &["x=1"])]);
        assert_eq!(plans.len(), 2);
        assert!(plans[0].cmdline.is_empty() && plans[0].tests.is_empty());
        assert_eq!(plan_boots(&[]).len(), 1);
    }

    #[test]
    fn pin_counters_become_per_test() {
        let mut s = parse_stats("a\t1\t100 90\nb\t2\t\nc\t3\t130 125\n");
        pin_deltas(Some((10, 10)), &mut s);
        let pins: Vec<_> = s.iter().map(|s| s.pins).collect();
        assert_eq!(pins, [Some((90, 80)), None, Some((30, 35))]);
        let mut s = parse_stats("a\t1\t100 90\n");
        pin_deltas(None, &mut s);
        assert_eq!(s[0].pins, None);
    }

    /// A boot's result as `run_boot` leaves it, from the guest's files.
    fn boot_result(n: usize, cmdline: &[&str], tap: &str, times: &str) -> BootResult {
        let kselftests = ktap::parse_kselftest(tap);
        let pins_before = Some((5, 5));
        let mut stats = parse_stats(times);
        let pins_after = stats.last().and_then(|s| s.pins);
        pin_deltas(pins_before, &mut stats);
        BootResult {
            boot: Boot {
                n,
                cmdline: cmdline.iter().map(|a| a.to_string()).collect(),
                tests: stats.iter().map(|s| s.name.clone()).collect(),
                out: PathBuf::from(format!("/w/vm{}", boot_suffix(n))),
                pins_before,
                pins_after,
            },
            kselftests,
            kunit: Vec::new(),
            stats,
            crashes: Vec::new(),
            problems: vec![format!("problem of boot {n}")],
            done: true,
        }
    }

    #[test]
    fn boots_merge_in_order() {
        let main = boot_result(
            1,
            &[],
            "TAP version 13\n1..2\n# selftests: mm:a\nok 1 selftests: mm:a\n\
             # selftests: mm:b\nnot ok 2 selftests: mm:b # exit=1\n",
            "mm:a\t4\t105 105\nmm:b\t6\t125 125\n",
        );
        let extra = boot_result(
            2,
            &["x=1"],
            "TAP version 13\n1..1\n# selftests: mm:c\nok 1 selftests: mm:c\n",
            "mm:c\t9\t45 40\n",
        );
        let known = [KnownFailure {
            test: "mm:b".into(),
            reason: "base bug".into(),
        }];
        let run = merge(false, vec![main, extra], &known);
        assert_eq!(run.known, [("mm:b".to_string(), "base bug".to_string())]);
        assert_eq!(
            run.problems,
            ["problem of boot 1", "boot 2: problem of boot 2"]
        );
        let rows: Vec<_> = run
            .rows()
            .into_iter()
            .map(|r| (r.name, r.secs, r.pins, r.verdict))
            .collect();
        assert_eq!(
            rows,
            [
                ("mm:a".to_string(), Some(4), Some((100, 100)), "ok"),
                ("mm:b".to_string(), Some(6), Some((20, 20)), "known"),
                ("mm:c (boot 2)".to_string(), Some(9), Some((40, 35)), "ok"),
            ]
        );
        // Summed over the boots; boot 2 ended with 45 acquired, 40 released.
        assert_eq!(run.pins(), Some((160, 155, false)));
        // A known failure that passed in every boot is flagged.
        let known = [KnownFailure {
            test: "mm:z".into(),
            reason: String::new(),
        }];
        let run = merge(false, vec![boot_result(1, &[], "", "")], &known);
        assert!(
            run.problems[1].contains("\"mm:z\" did not fail"),
            "{:?}",
            run.problems
        );
        // No counters at the end of any boot: no pins line.
        assert_eq!(run.pins(), None);
    }

    #[test]
    fn only_boot_dirs_are_removed() {
        let work = tempfile::tempdir().unwrap();
        for d in ["vm", "vm-2", "vm-13", "vm-", "vm-x", "logs", "linux"] {
            std::fs::create_dir(work.path().join(d)).unwrap();
        }
        remove_boot_dirs(work.path()).unwrap();
        let mut left: Vec<_> = std::fs::read_dir(work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["linux", "logs", "vm-", "vm-x"]);
        assert_eq!(
            boot_dir(work.path(), 3).unwrap().file_name().unwrap(),
            "vm-3"
        );
        remove_boot_dirs(&work.path().join("missing")).unwrap();
    }

    #[test]
    fn pins_parse() {
        let v = "nr_foll_pin_acquired 3072\nnr_foll_pin_released 3071\n";
        assert_eq!(parse_pins(v), Some((3072, 3071)));
        assert_eq!(parse_pins("nr_free_pages 5\n"), None);
    }

    #[test]
    fn stats_parse() {
        let s = parse_stats("mm:gup_test\t3\t10 10 \niommu:iommufd\t11\t\nbad line\n");
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].secs, s[0].pins), (3, Some((10, 10))));
        assert_eq!(s[1].pins, None);
    }

    #[test]
    fn allocation_failures_are_not_crashes() {
        let d = "\
[    5.0] python3: page allocation failure: order:0, mode:0xcc0(GFP_KERNEL), nodemask=(null)
[    5.0] CPU: 1 UID: 0 PID: 300 Comm: python3 Not tainted 7.3.4+ #1
[    5.0] Call Trace:
[    5.0]  <TASK>
[    5.0]  dump_stack_lvl+0x5d/0x80
[    5.0]  </TASK>
[    5.0] Mem-Info:
[    6.0] percpu: allocation failed, size=16 align=8 atomic=0, alloc from reserved chunk failed
[    6.0] Call Trace:
[    6.1]  </TASK>
[    7.0] WARNING: CPU: 0 PID: 1 at mm/gup.c:100 pin_user_pages_fd+0x10/0x20
[    7.1] Call Trace:
";
        let c = crash_lines(d);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].contains("WARNING: CPU: 0") && c[1].contains("Call Trace"));
        // A dump without its end stops being excused after 80 lines.
        let open = format!(
            "x: vmalloc error: size 8192\n{}BUG: KASAN: x\n",
            "[ 1.0] x\n".repeat(80)
        );
        assert_eq!(crash_lines(&open).len(), 1);
    }

    #[test]
    fn crash_markers_found() {
        let d = "[    1.0] ok\n[    2.0] BUG: KASAN: use-after-free in pin_user_pages_fd\n[    2.1] Call Trace:\n[    2.2]  <TASK>\n";
        let c = crash_lines(d);
        assert_eq!(c.len(), 2);
        assert!(c[0].contains("use-after-free") && c[1].contains("Call Trace"));
        assert!(crash_lines("[    1.0] all fine\n").is_empty());
        assert_eq!(crash_lines("[    1.0] RIP: 0010:foo\n").len(), 1);
    }

    #[test]
    fn guest_script_runs_each_test() {
        let mut t = vec![selftest("mm:gup_test-a", &[])];
        t[0].cmd = "./gup_test -a -m 'x'".into();
        let s = guest_script(Path::new("/o"), Path::new("/k"), &t);
        assert!(s.contains("echo \"1..1\""));
        assert!(s.contains("out=/o\nksft=/k\n"));
        assert!(s.contains("run 'mm:gup_test-a' 'mm' 60 './gup_test -a -m '\\''x'\\'''\n"));
        assert!(s.trim_end().ends_with("touch \"$out/done\""));
    }
}
