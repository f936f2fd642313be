//! Stage timing and the final report: stages, tests, pin counters, verdict.

use crate::ctx::Ctx;
use crate::vm::VmRun;
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

pub struct Report {
    stages: Vec<(String, Duration)>,
}

impl Report {
    pub fn new() -> Self {
        Report { stages: Vec::new() }
    }

    /// Runs one stage, printing its start and duration.
    pub fn stage<T>(&mut self, name: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("==> {name}");
        let start = Instant::now();
        let res = f();
        let took = start.elapsed();
        self.stages.push((name.to_string(), took));
        match &res {
            Ok(_) => eprintln!("<== {name} done in {}", human(took)),
            Err(_) => eprintln!("<== {name} FAILED after {}", human(took)),
        }
        res.map_err(|e| e.context(format!("stage `{name}` failed")))
    }

    /// Prints and saves the report; fails if the guest run found problems.
    pub fn finish(&self, ctx: &Ctx, run: Option<&VmRun>) -> Result<()> {
        let text = self.render(run);
        println!("{text}");
        let dir = ctx.root.join("work");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("report.txt"), &text)?;
        if let Some(run) = run {
            let json = serde_json::json!({
                "stages": self.stages.iter().map(|(n, d)| (n.clone(), d.as_secs_f64())).collect::<Vec<_>>(),
                "kvm": run.kvm,
                "kselftests": run.kselftests,
                "kunit": run.kunit,
                "known_failures": run.known,
                // The main boot's counters at its end; every boot's in "boots".
                "pins": run.boots.first().and_then(|b| b.pins_after),
                "boots": run.boots.iter().map(|b| serde_json::json!({
                    "boot": b.n,
                    "cmdline": ctx.cfg.vm.cmdline.iter().chain(&b.cmdline).collect::<Vec<_>>(),
                    "extra_cmdline": b.cmdline,
                    "kselftests": b.tests,
                    "out": b.out,
                    "pins_before": b.pins_before,
                    "pins_after": b.pins_after,
                })).collect::<Vec<_>>(),
                "crashes": run.crashes,
                "problems": run.problems,
            });
            std::fs::write(
                dir.join("report.json"),
                serde_json::to_string_pretty(&json)?,
            )?;
            if !run.problems.is_empty() {
                bail!(
                    "{} problem(s) in the guest run (raw logs in {}):\n  - {}",
                    run.problems.len(),
                    run.boots
                        .iter()
                        .map(|b| b.out.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    run.problems.join("\n  - ")
                );
            }
        }
        Ok(())
    }

    fn render(&self, run: Option<&VmRun>) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "\n{:<14} {:>9}", "stage", "time");
        for (n, d) in &self.stages {
            let _ = writeln!(s, "{:<14} {:>9}", n, human(*d));
        }
        let Some(run) = run else { return s };
        let rows = run.rows();
        let w = rows
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(10)
            .max(10);
        let _ = writeln!(
            s,
            "\n{:<9} {:<w$} {:>5} {:>5} {:>5} {:>6} {:>15}  result",
            "kind", "suite", "pass", "fail", "skip", "time", "pins (+acq/+rel)"
        );
        let mut total = crate::ktap::Counts::default();
        for r in &rows {
            total.pass += r.counts.pass;
            total.fail += r.counts.fail;
            total.skip += r.counts.skip;
            let _ = writeln!(
                s,
                "{:<9} {:<w$} {:>5} {:>5} {:>5} {:>6} {:>15}  {}",
                r.kind,
                r.name,
                r.counts.pass,
                r.counts.fail,
                r.counts.skip,
                r.secs.map_or("-".into(), |t| format!("{t}s")),
                r.pins.map_or("-".into(), |(a, r)| format!("+{a}/+{r}")),
                r.verdict
            );
        }
        for (path, reason) in &run.known {
            let _ = writeln!(s, "known failure of the base: {path}: {reason}");
        }
        for b in run.boots.iter().filter(|b| b.n > 1) {
            let _ = writeln!(
                s,
                "boot {}: vm.cmdline + {} (the rows marked \"(boot {})\")",
                b.n,
                b.cmdline.join(" "),
                b.n
            );
        }
        let _ = writeln!(s, "\nguest: {}", if run.kvm { "KVM" } else { "TCG" });
        if let Some((a, r, balanced)) = run.pins() {
            let n = run.boots.len();
            let _ = writeln!(
                s,
                "pins: nr_foll_pin_acquired +{a}, nr_foll_pin_released +{r} ({n} boot{}): {}",
                if n == 1 { "" } else { "s" },
                if balanced { "balanced" } else { "LEAKED" }
            );
        }
        let _ = writeln!(
            s,
            "{}: {} passed, {} failed, {} skipped",
            if run.problems.is_empty() {
                "PASS"
            } else {
                "FAIL"
            },
            total.pass,
            total.fail,
            total.skip
        );
        s
    }
}

pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
