//! Running external commands: one log file per command, a time limit, and a
//! progress line that shows the command's latest output.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::ffi::OsString;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A command to run, described so that its log can say exactly what ran.
pub struct Cmd {
    program: OsString,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    env: Vec<(OsString, OsString)>,
    timeout: Duration,
}

/// How a command ended, when the caller asked to see non-zero exits.
pub struct Exit {
    pub code: Option<i32>,
    pub timed_out: bool,
    pub log: PathBuf,
}

impl Cmd {
    pub fn new(program: impl Into<OsString>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            dir: None,
            env: Vec::new(),
            timeout: Duration::from_secs(600),
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, a: I) -> Self {
        self.args.extend(a.into_iter().map(Into::into));
        self
    }

    pub fn dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.dir = Some(d.into());
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The command line as a shell user would type it.
    pub fn display(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| {
                let s = a.to_string_lossy();
                if s.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
                    format!("'{}'", s.replace('\'', r"'\''"))
                } else {
                    s.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Runs to completion, failing on a non-zero exit or a time-out. The
    /// error names the command, its log and the log's error lines.
    pub fn run(self, log: &Path) -> Result<()> {
        let what = self.display();
        let exit = self.run_unchecked(log)?;
        if exit.timed_out {
            bail!(
                "`{what}` did not finish in time and was killed\n{}\nfull log: {}",
                error_lines(&exit.log),
                exit.log.display()
            );
        }
        if exit.code != Some(0) {
            bail!(
                "`{what}` failed (exit {})\n{}\nfull log: {}",
                exit.code.map_or("by signal".into(), |c| c.to_string()),
                error_lines(&exit.log),
                exit.log.display()
            );
        }
        Ok(())
    }

    /// Runs to completion and returns how it ended. Output goes to `log`, and
    /// its latest line is shown on a progress line while it runs.
    pub fn run_unchecked(self, log: &Path) -> Result<Exit> {
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let what = self.display();
        std::fs::write(
            log,
            format!(
                "$ {what}\n# in {}\n",
                self.dir.as_deref().unwrap_or(Path::new(".")).display()
            ),
        )?;
        let mut expr = duct::cmd(&self.program, &self.args)
            .stderr_to_stdout()
            .stdout_file(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(log)
                    .with_context(|| format!("cannot open {}", log.display()))?,
            );
        // A process group of its own, so that a time-out kills what the
        // command started too (vng leaves qemu running otherwise).
        expr = expr.stdin_null().before_spawn(|c| {
            std::os::unix::process::CommandExt::process_group(c, 0);
            Ok(())
        });
        if let Some(d) = &self.dir {
            expr = expr.dir(d);
        }
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        let handle = expr.unchecked().start().map_err(|e| {
            anyhow::anyhow!(
                "cannot start `{what}`: {e}\n(is {} installed? run `cargo xtask setup`)",
                self.program.to_string_lossy()
            )
        })?;
        let progress = Progress::new(&what);
        let start = Instant::now();
        let mut timed_out = false;
        let output = loop {
            if let Some(out) = handle.try_wait()? {
                break out.clone();
            }
            if start.elapsed() > self.timeout {
                timed_out = true;
                for pid in handle.pids() {
                    // The group's id is the child's pid.
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", "--", &format!("-{pid}")])
                        .status();
                }
                handle.kill()?;
                break handle.wait()?.clone();
            }
            progress.tick(&last_line(log), start.elapsed());
            std::thread::sleep(Duration::from_millis(250));
        };
        progress.finish();
        Ok(Exit {
            code: output.status.code(),
            timed_out,
            log: log.to_path_buf(),
        })
    }

    /// Runs a short command and returns its stdout (stderr goes to the error).
    pub fn output(self) -> Result<String> {
        let what = self.display();
        let mut expr = duct::cmd(&self.program, &self.args)
            .stdout_capture()
            .stderr_capture()
            .stdin_null()
            .unchecked();
        if let Some(d) = &self.dir {
            expr = expr.dir(d);
        }
        for (k, v) in &self.env {
            expr = expr.env(k, v);
        }
        let out = expr
            .run()
            .with_context(|| format!("cannot start `{what}`"))?;
        if !out.status.success() {
            bail!(
                "`{what}` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

/// A spinner on a terminal; a heartbeat line every minute otherwise (CI).
struct Progress {
    bar: Option<ProgressBar>,
    what: String,
    next_heartbeat: std::cell::Cell<Duration>,
}

impl Progress {
    fn new(what: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template("  {spinner} [{elapsed:>4}] {wide_msg}").unwrap(),
            );
            pb
        });
        Progress {
            bar,
            what: short(what, 60),
            next_heartbeat: std::cell::Cell::new(Duration::from_secs(60)),
        }
    }

    fn tick(&self, line: &str, elapsed: Duration) {
        let msg = format!("{}: {}", self.what, short(line, 100));
        match &self.bar {
            Some(pb) => {
                pb.set_message(msg);
                pb.tick();
            }
            None if elapsed >= self.next_heartbeat.get() => {
                eprintln!("  [{:>4}s] {msg}", elapsed.as_secs());
                self.next_heartbeat.set(elapsed + Duration::from_secs(60));
            }
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(pb) = &self.bar {
            pb.finish_and_clear();
        }
    }
}

fn short(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// The last non-empty line of a file, read from its tail only.
fn last_line(path: &Path) -> String {
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// The lines of a log that explain a failure: compiler and make errors, or
/// else the last lines.
pub fn error_lines(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    select_error_lines(&text)
}

fn select_error_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut picked: Vec<usize> = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let is_error = l.contains("error:")
            || l.contains("error[")
            || l.starts_with("ERROR:")
            || l.contains("*** ")
            || l.contains("fatal:")
            || l.contains("Error ");
        if is_error {
            // Keep a line of context after a compiler error (the source line).
            picked.extend(i..(i + 3).min(lines.len()));
        }
    }
    picked.dedup();
    let chosen: Vec<&str> = if picked.is_empty() {
        lines[lines.len().saturating_sub(15)..].to_vec()
    } else {
        let mut seen = std::collections::BTreeSet::new();
        picked.retain(|i| seen.insert(*i));
        picked
            .iter()
            .rev()
            .take(30)
            .rev()
            .map(|&i| lines[i])
            .collect()
    };
    chosen
        .iter()
        .map(|l| format!("    | {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_pick_compiler_errors() {
        let log = "  CC mm/gup.o\nmm/gup.c:10:5: error: unknown type name 'foo'\n   10 | foo x;\n      | ^\n  CC mm/a.o\nmake[2]: *** [scripts/Makefile.build:287: mm/gup.o] Error 1\n";
        let out = select_error_lines(log);
        assert!(out.contains("unknown type name"));
        assert!(out.contains("Error 1"));
        assert!(!out.contains("CC mm/a.o") || out.contains("| ^"));
    }

    #[test]
    fn error_lines_fall_back_to_tail() {
        let log: String = (0..40).map(|i| format!("line {i}\n")).collect();
        let out = select_error_lines(&log);
        assert!(out.contains("line 39") && !out.contains("line 20\n"));
    }

    #[test]
    fn run_logs_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        Cmd::new("sh")
            .args(["-c", "echo hello; echo oops >&2"])
            .run(&log)
            .unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.starts_with("$ sh -c 'echo hello; echo oops >&2'"));
        assert!(text.contains("hello") && text.contains("oops"));

        let e = Cmd::new("sh").args(["-c", "exit 3"]).run(&log).unwrap_err();
        assert!(format!("{e}").contains("exit 3"), "{e}");

        let exit = Cmd::new("sleep")
            .arg("5")
            .timeout(Duration::from_millis(300))
            .run_unchecked(&log)
            .unwrap();
        assert!(exit.timed_out);

        // What the command started is killed with it.
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let exit = Cmd::new("sh")
            .args(["-c", &script])
            .timeout(Duration::from_millis(500))
            .run_unchecked(&log)
            .unwrap();
        assert!(exit.timed_out);
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let proc_dir = format!("/proc/{}", pid.trim());
        let gone = (0..20).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            // A killed child not yet reaped by its parent is a zombie.
            std::fs::read_to_string(format!("{proc_dir}/stat"))
                .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
        });
        assert!(gone, "sleep {} outlived its timed-out parent", pid.trim());

        let e = Cmd::new("definitely-not-a-tool").run(&log).unwrap_err();
        assert!(format!("{e}").contains("cargo xtask setup"), "{e}");
    }
}
