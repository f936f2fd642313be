//! `vm`: boot the built kernel under virtme-ng, run the selftests, collect
//! KUnit from dmesg and the pin counters, and judge the run.

use crate::config::Kselftest;
use crate::ctx::Ctx;
use crate::ktap::{self, Counts, Test};
use anyhow::{bail, Result};
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
    "WARNING: CPU:",
];

pub struct VmRun {
    pub kvm: bool,
    pub out: PathBuf,
    pub kselftests: Vec<Test>,
    pub kunit: Vec<Test>,
    /// Per selftest: seconds taken and pin counters after it.
    pub stats: Vec<TestStat>,
    /// Known failures of the base that did fail: (test path, reason).
    pub known: Vec<(String, String)>,
    pub pins: Option<(u64, u64)>,
    pub pins_before: Option<(u64, u64)>,
    pub crashes: Vec<String>,
    pub problems: Vec<String>,
}

/// Boots `bzimage` and runs the configured tests; never fails on test
/// results (see `VmRun::problems`), only when the guest cannot run at all.
pub fn run(ctx: &Ctx, bzimage: &Path, kselftests: &Path) -> Result<VmRun> {
    if !bzimage.exists() {
        bail!(
            "no kernel at {}: run `cargo xtask build` first",
            bzimage.display()
        );
    }
    let out = ctx.root.join("work/vm");
    if out.exists() {
        std::fs::remove_dir_all(&out)?;
    }
    std::fs::create_dir_all(&out)?;
    let out = out.canonicalize()?;
    let script = out.join("guest.sh");
    std::fs::write(
        &script,
        guest_script(&out, kselftests, &ctx.cfg.tests.kselftest),
    )?;

    let kvm = kvm_works(ctx, bzimage, &out);
    eprintln!(
        "  booting under {} ({} CPUs, {} memory)",
        if kvm { "KVM" } else { "TCG (no usable KVM)" },
        ctx.cfg.vm.cpus,
        ctx.cfg.vm.memory
    );
    let log = ctx.log("vm-guest");
    let exit = vng(ctx, bzimage, &out, kvm)
        .arg("--exec")
        .arg(format!("sh {}", script.display()))
        .timeout(Duration::from_secs(ctx.cfg.vm.timeout))
        .run_unchecked(&log)?;

    let mut problems = Vec::new();
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap_or_default();
    if exit.timed_out {
        problems.push(format!(
            "the guest did not finish within vm.timeout = {} s and was killed (console: {})",
            ctx.cfg.vm.timeout,
            log.display()
        ));
    } else if !out.join("done").exists() {
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
    let kunit = ktap::parse_kunit_dmesg(&dmesg);
    let crashes = crash_lines(&dmesg);
    let pins = parse_pins(&read("vmstat.after"));
    let pins_before = parse_pins(&read("vmstat.before"));
    let stats = parse_stats(&read("times.tsv"));

    for t in &ctx.cfg.tests.kselftest {
        if !kselftests.iter().any(|k| k.name.ends_with(&t.name)) {
            problems.push(format!("expected selftest {} did not run", t.name));
        }
    }
    for s in &ctx.cfg.tests.kunit {
        if !kunit.iter().any(|k| &k.name == s) {
            problems.push(format!("expected KUnit suite {s} did not run"));
        }
    }
    let mut known = Vec::new();
    let mut known_seen = vec![false; ctx.cfg.tests.known_failure.len()];
    for t in kselftests.iter().chain(&kunit) {
        for (path, f) in t.failures() {
            let path = path.trim_start_matches("selftests: ").to_string();
            match ctx
                .cfg
                .tests
                .known_failure
                .iter()
                .position(|k| k.matches(&path))
            {
                Some(i) => {
                    known_seen[i] = true;
                    known.push((path, ctx.cfg.tests.known_failure[i].reason.clone()));
                }
                None => problems.push(format!("not ok: {path} ({:?})", f.outcome)),
            }
        }
    }
    if out.join("done").exists() {
        for (k, seen) in ctx.cfg.tests.known_failure.iter().zip(known_seen) {
            if !seen {
                problems.push(format!(
                    "known failure {:?} did not fail: remove it from series.toml",
                    k.test
                ));
            }
        }
    }
    let mut prev = pins_before;
    for st in &stats {
        if let (Some((a0, r0)), Some((a, r))) = (prev, st.pins) {
            if a - a0 != r - r0 {
                problems.push(format!(
                    "{} left pins unbalanced: +{} acquired, +{} released",
                    st.name,
                    a - a0,
                    r - r0
                ));
            }
        }
        prev = st.pins.or(prev);
    }
    if !crashes.is_empty() {
        problems.push(format!(
            "crash markers in dmesg ({}):\n    {}",
            out.join("dmesg").display(),
            crashes.join("\n    ")
        ));
    }
    match pins {
        Some((acq, rel)) if acq != rel => problems.push(format!(
            "pins leaked: nr_foll_pin_acquired {acq} != nr_foll_pin_released {rel}"
        )),
        Some(_) => {}
        None if out.join("done").exists() => {
            problems.push("no nr_foll_pin_* counters in the guest's /proc/vmstat".into())
        }
        None => {}
    }
    Ok(VmRun {
        kvm,
        out,
        kselftests,
        kunit,
        stats,
        known,
        pins,
        pins_before,
        crashes,
        problems,
    })
}

pub fn vng(ctx: &Ctx, bzimage: &Path, out: &Path, kvm: bool) -> crate::proc::Cmd {
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
    for a in &ctx.cfg.vm.cmdline {
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
    let ok = vng(ctx, bzimage, out, true)
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

pub fn crash_lines(dmesg: &str) -> Vec<String> {
    dmesg
        .lines()
        .filter(|l| CRASH_MARKERS.iter().any(|m| l.contains(m)))
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
    pub fn rows(&self) -> Vec<Row> {
        let mut rows = Vec::new();
        let mut prev = self.pins_before;
        for t in &self.kselftests {
            let name = t.name.trim_start_matches("selftests: ").to_string();
            let stat = self.stats.iter().find(|s| s.name == name);
            let pins = match (prev, stat.and_then(|s| s.pins)) {
                (Some((a0, r0)), Some((a, r))) => Some((a - a0, r - r0)),
                _ => None,
            };
            prev = stat.and_then(|s| s.pins).or(prev);
            rows.push(Row {
                kind: "kselftest",
                counts: t.counts(),
                verdict: self.verdict(t),
                name,
                secs: stat.map(|s| s.secs),
                pins,
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
        let t = vec![Kselftest {
            name: "mm:gup_test-a".into(),
            dir: "mm".into(),
            cmd: "./gup_test -a -m 'x'".into(),
            timeout: 60,
        }];
        let s = guest_script(Path::new("/o"), Path::new("/k"), &t);
        assert!(s.contains("echo \"1..1\""));
        assert!(s.contains("out=/o\nksft=/k\n"));
        assert!(s.contains("run 'mm:gup_test-a' 'mm' 60 './gup_test -a -m '\\''x'\\'''\n"));
        assert!(s.trim_end().ends_with("touch \"$out/done\""));
    }
}
