//! `series.toml`: the base tree, the sub-series, the kernel config, the tests and the guest.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesToml {
    pub base: Base,
    pub kernel: Kernel,
    #[serde(default)]
    pub series: Vec<SubSeries>,
    pub tests: Tests,
    pub vm: Vm,
    /// Build profiles other than `default`, by name: `[profile.debug]`.
    #[serde(default)]
    pub profile: BTreeMap<String, Profile>,
}

/// A build profile: the same series and tests, with more config fragments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Config fragments applied after `kernel.config`.
    pub config: Vec<String>,
    /// Test and guest timeouts are multiplied by this (checkers are slow).
    #[serde(default = "one")]
    pub timeout_factor: u64,
    /// Selftests run with another command in this profile.
    #[serde(default)]
    pub test: Vec<TestOverride>,
}

/// A selftest's command in one profile, and why it differs.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct TestOverride {
    /// The `tests.kselftest` name.
    pub name: String,
    pub cmd: String,
    pub reason: String,
}

fn one() -> u64 {
    1
}

/// The profile a command builds and tests: its name (its build directory)
/// and what it adds to the default one.
pub struct Selected<'a> {
    pub name: &'a str,
    pub config: &'a [String],
    pub timeout_factor: u64,
    pub overrides: &'a [TestOverride],
}

impl SeriesToml {
    /// The profile called `name`: `default` (the series' own config) or one
    /// of the `[profile.<name>]` tables.
    pub fn select_profile<'a>(&'a self, name: &'a str) -> Result<Selected<'a>> {
        if name == "default" {
            return Ok(Selected {
                name,
                config: &[],
                timeout_factor: 1,
                overrides: &[],
            });
        }
        let Some(p) = self.profile.get(name) else {
            let known: Vec<&str> = self.profile.keys().map(String::as_str).collect();
            bail!(
                "no profile {name:?} in series.toml: use default or one of [profile.*]: {}",
                known.join(", ")
            );
        };
        Ok(Selected {
            name,
            config: &p.config,
            timeout_factor: p.timeout_factor,
            overrides: &p.test,
        })
    }
}

/// The base tree: a Debian `linux-source` binary package, made into a git commit.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Base {
    /// Human name, e.g. "Linux 7.3.4".
    pub name: String,
    pub package: String,
    pub version: String,
    pub sha256: String,
    /// Debian mirror and suite the package is downloaded from.
    pub mirror: String,
    pub suite: String,
    /// Path of the source tarball inside the package.
    pub tarball: String,
    /// Hash of the base commit made from the tarball; the same on every machine.
    pub commit: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kernel {
    /// Config fragments, applied in order on top of `tinyconfig`.
    pub config: Vec<String>,
    /// Extra `make` variables for every kernel make call (e.g. `LLVM=-19`).
    #[serde(default)]
    pub make: Vec<String>,
    /// Selftest targets to build and install.
    pub selftest_targets: Vec<String>,
}

/// One sub-series, sent to one tree, with b4-style tracking.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubSeries {
    pub name: String,
    /// Cover letter subject (without the `[PATCH 0/N]` prefix) and body.
    pub subject: String,
    pub cover: String,
    /// b4 change-id, e.g. `20261121-pin-user-pages-fd-0123456789ab`.
    pub change_id: String,
    /// Subject prefixes such as `net-next` or `RFC`.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Names of sub-series this one applies on top of.
    #[serde(default)]
    pub prerequisites: Vec<String>,
    /// Patch files in `patches/<name>/`, in order.
    #[serde(default)]
    pub patches: Vec<String>,
    /// A fix sub-series: every patch carries a `Fixes:` tag, it comes before
    /// the feature sub-series and they name it as a prerequisite.
    #[serde(default)]
    pub fixes: bool,
    /// The tree the sub-series is sent to (e.g. `mm-hotfixes`, `stable`,
    /// `iommufd`, `net`, `net-next`); required for a fix sub-series.
    pub tree: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tests {
    /// KUnit suites that must appear in dmesg.
    pub kunit: Vec<String>,
    /// Selftest programs run in the guest, in order.
    pub kselftest: Vec<Kselftest>,
    /// Failures of the unpatched base, with their cause: reported, not fatal.
    #[serde(default)]
    pub known_failure: Vec<KnownFailure>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct KnownFailure {
    /// Test path as the report prints it; `*` matches any run of characters.
    pub test: String,
    pub reason: String,
}

impl KnownFailure {
    pub fn matches(&self, path: &str) -> bool {
        glob_match(&self.test, path)
    }
}

/// `*`-only glob matching.
fn glob_match(pattern: &str, s: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == s,
        Some((head, rest)) => {
            let Some(s) = s.strip_prefix(head) else {
                return false;
            };
            (0..=s.len())
                .filter(|&i| s.is_char_boundary(i))
                .any(|i| glob_match(rest, &s[i..]))
        }
    }
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Kselftest {
    /// Name in the report, e.g. `mm:gup_test-a`.
    pub name: String,
    /// Directory below the kselftest install directory.
    pub dir: String,
    /// Shell command run in that directory.
    pub cmd: String,
    /// Seconds before the test is killed and reported as TIMEOUT.
    #[serde(default = "default_test_timeout")]
    pub timeout: u64,
    /// Kernel arguments the test needs on top of `vm.cmdline`. Tests without
    /// any run in the main boot; those with the same arguments run together
    /// in one more boot of their own.
    #[serde(default)]
    pub cmdline: Vec<String>,
}

fn default_test_timeout() -> u64 {
    300
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    /// Guest memory, as vng takes it (e.g. `4G`).
    pub memory: String,
    pub cpus: u32,
    /// Extra kernel command line for the guest.
    #[serde(default)]
    pub cmdline: Vec<String>,
    /// Seconds for the whole guest run, boot included (for each boot).
    pub timeout: u64,
}

impl SeriesToml {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        let cfg: Self = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let b = &self.base;
        if b.sha256.len() != 64 || !b.sha256.bytes().all(|c| c.is_ascii_hexdigit()) {
            bail!("base.sha256 must be 64 hex digits, got {:?}", b.sha256);
        }
        if b.commit.len() != 40 || !b.commit.bytes().all(|c| c.is_ascii_hexdigit()) {
            bail!(
                "base.commit must be a 40-hex git commit, got {:?}",
                b.commit
            );
        }
        if self.kernel.config.is_empty() {
            bail!("kernel.config must name at least one config fragment");
        }
        let mut seen = HashSet::new();
        for s in &self.series {
            if !valid_name(&s.name) {
                bail!("series name {:?} must be [a-z0-9-]+", s.name);
            }
            for p in &s.prerequisites {
                if !seen.contains(p.as_str()) {
                    bail!(
                        "series {:?}: prerequisite {:?} must be a sub-series listed before it",
                        s.name,
                        p
                    );
                }
            }
            if !seen.insert(s.name.as_str()) {
                bail!("series {:?} is listed twice", s.name);
            }
            if s.change_id.is_empty() || s.subject.is_empty() {
                bail!(
                    "series {:?}: change_id and subject must not be empty",
                    s.name
                );
            }
            if s.fixes && s.tree.is_none() {
                bail!(
                    "series {:?}: a fix sub-series needs the tree it is sent to, e.g. tree = \"mm-hotfixes\"",
                    s.name
                );
            }
            if let Some(t) = s.tree.as_deref().filter(|t| !valid_name(t)) {
                bail!("series {:?}: tree {t:?} must be [a-z0-9-]+", s.name);
            }
            let mut patches = HashSet::new();
            for p in &s.patches {
                if p == crate::series::COVER_LETTER {
                    bail!("series {:?}: list the patches only, not {p}", s.name);
                }
                if !p.ends_with(".patch") || p.contains('/') || !patches.insert(p) {
                    bail!(
                        "series {:?}: bad or repeated patch file name {:?}",
                        s.name,
                        p
                    );
                }
            }
        }
        self.validate_fixes_first()?;
        let mut names = HashSet::new();
        for t in &self.tests.kselftest {
            if !names.insert(t.name.as_str()) {
                bail!("tests.kselftest: name {:?} is used twice", t.name);
            }
            if t.name.contains(char::is_whitespace) || t.name.contains('\'') {
                bail!(
                    "tests.kselftest {:?}: the name must have no spaces or quotes",
                    t.name
                );
            }
            if t.timeout == 0 {
                bail!("tests.kselftest {:?}: timeout must be > 0", t.name);
            }
            if let Some(a) = t
                .cmdline
                .iter()
                .find(|a| a.is_empty() || a.contains(char::is_whitespace))
            {
                bail!(
                    "tests.kselftest {:?}: cmdline argument {a:?} must be one non-empty word, e.g. \"udmabuf_rs.account_memlock=1\"",
                    t.name
                );
            }
        }
        if self.vm.cpus == 0 || self.vm.timeout == 0 {
            bail!("vm.cpus and vm.timeout must be > 0");
        }
        for (name, p) in &self.profile {
            if name == "default" || !valid_name(name) {
                bail!("profile {name:?}: the name must be [a-z0-9-]+ and not \"default\"");
            }
            if p.config.is_empty() || p.timeout_factor == 0 {
                bail!("profile {name:?}: config must name a fragment and timeout_factor be > 0");
            }
            for o in &p.test {
                if !self.tests.kselftest.iter().any(|t| t.name == o.name) {
                    bail!(
                        "profile {name:?}: test {:?} is not a tests.kselftest",
                        o.name
                    );
                }
                if o.reason.trim().is_empty() {
                    bail!("profile {name:?}: test {:?} needs a reason", o.name);
                }
            }
        }
        Ok(())
    }
}

impl SeriesToml {
    /// Fix sub-series come first, so that each applies on the base and the
    /// fixes before it only (prerequisites must be listed earlier). Feature
    /// sub-series name the fixes they need; `check` applies every
    /// sub-series on its prerequisites alone.
    fn validate_fixes_first(&self) -> Result<()> {
        let Some(first) = self.series.iter().find(|s| !s.fixes) else {
            return Ok(());
        };
        match self.series.iter().skip_while(|s| s.fixes).find(|s| s.fixes) {
            Some(late) => bail!(
                "series {:?} is a fix sub-series listed after the feature sub-series {:?}: list fixes first",
                late.name,
                first.name
            ),
            None => Ok(()),
        }
    }

    /// The prerequisites of a sub-series, transitively.
    pub fn prerequisites_of(&self, name: &str) -> HashSet<&str> {
        let mut out = HashSet::new();
        let mut todo = vec![name];
        while let Some(n) = todo.pop() {
            for s in self.series.iter().filter(|s| s.name == n) {
                for p in &s.prerequisites {
                    if out.insert(p.as_str()) {
                        todo.push(p);
                    }
                }
            }
        }
        out
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn good() -> SeriesToml {
        SeriesToml::parse(GOOD).unwrap()
    }

    pub(crate) const GOOD: &str = r#"
[base]
name = "Linux 7.3.4"
package = "linux-source-7.3"
version = "7.3.4-1~bpo13+1"
sha256 = "703e369ddd4cce971452f5a593ee55df3a5c10c83caf0fa0df039633ed181ee3"
mirror = "http://deb.debian.org/debian"
suite = "trixie-backports"
tarball = "usr/src/linux-source-7.3.tar.xz"
commit = "27f69a956349d225d519daca8ca553ed3192462c"

[kernel]
config = ["kconfig/series.config"]
make = ["LLVM=-19"]
selftest_targets = ["mm"]

[[series]]
name = "mm"
subject = "mm/gup: add pin_user_pages_fd()"
cover = "Body."
change_id = "20261121-pin-user-pages-fd-0123456789ab"
patches = ["0001-a.patch"]

[[series]]
name = "net"
subject = "rust: net: page_pool"
cover = "Body."
change_id = "20261121-rust-page-pool-0123456789ab"
prerequisites = ["mm"]

[tests]
kunit = ["rust_doctests_kernel"]
[[tests.kselftest]]
name = "mm:gup_test-a"
dir = "mm"
cmd = "./gup_test -a"

[vm]
memory = "4G"
cpus = 2
timeout = 1200
"#;

    fn err(text: &str) -> String {
        format!("{:#}", SeriesToml::parse(text).unwrap_err())
    }

    #[test]
    fn parses_good_config() {
        let c = SeriesToml::parse(GOOD).unwrap();
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].patches, vec!["0001-a.patch"]);
        assert_eq!(c.tests.kselftest[0].timeout, 300);
        assert_eq!(c.series[1].prerequisites, vec!["mm"]);
        assert!(c.tests.kselftest[0].cmdline.is_empty());
        let cmd = "cmd = \"./gup_test -a\"";
        let c = SeriesToml::parse(&GOOD.replace(cmd, &format!("{cmd}\ncmdline = [\"a=1\"]")));
        assert_eq!(c.unwrap().tests.kselftest[0].cmdline, vec!["a=1"]);
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&GOOD.replace("cpus = 2", "cpus = 2\nmemroy = \"1G\""));
        assert!(e.contains("unknown field `memroy`"), "{e}");
        let e = err(&GOOD.replace("[kernel]", "[kernel]\nconfigs = []"));
        assert!(e.contains("unknown field `configs`"), "{e}");
    }

    #[test]
    fn missing_section_is_named() {
        let start = GOOD.find("[vm]").unwrap();
        let e = err(&GOOD[..start]);
        assert!(e.contains("missing field `vm`"), "{e}");
    }

    #[test]
    fn wrong_type_is_reported() {
        let e = err(&GOOD.replace("cpus = 2", "cpus = \"two\""));
        assert!(e.contains("cpus"), "{e}");
    }

    #[test]
    fn bad_values_are_rejected() {
        assert!(err(&GOOD.replace("703e369d", "zzzz369d")).contains("sha256"));
        assert!(err(&GOOD.replace("27f69a95", "27f6")).contains("base.commit"));
        assert!(
            err(&GOOD.replace("prerequisites = [\"mm\"]", "prerequisites = [\"dma-buf\"]"))
                .contains("prerequisite \"dma-buf\"")
        );
        assert!(err(&GOOD.replace("name = \"net\"", "name = \"mm\"")).contains("twice"));
        assert!(err(&GOOD.replace("name = \"net\"", "name = \"Net!\"")).contains("[a-z0-9-]"));
        assert!(err(&GOOD.replace("0001-a.patch", "../x.patch")).contains("patch file name"));
        assert!(
            err(&GOOD.replace("cmd = \"./gup_test -a\"", "cmd = \"x\"\ntimeout = 0"))
                .contains("timeout")
        );
        let cmd = "cmd = \"./gup_test -a\"";
        assert!(
            err(&GOOD.replace(cmd, &format!("{cmd}\ncmdline = [\"a=1 b=2\"]")))
                .contains("cmdline argument \"a=1 b=2\"")
        );
    }

    #[test]
    fn fix_sub_series() {
        let fix = "[[series]]\nname = \"mm-fixes\"\nsubject = \"fixes\"\ncover = \"Body.\"\nchange_id = \"20261201-mm-fixes-0123456789ab\"\nfixes = true\ntree = \"mm-hotfixes\"\n\n";
        let first = GOOD.find("[[series]]").unwrap();
        let with = |fix: &str, prereq: &str| {
            let mut t = GOOD.to_string();
            t.insert_str(first, fix);
            t.replacen(
                "patches = [\"0001-a.patch\"]",
                &format!("patches = [\"0001-a.patch\"]\nprerequisites = [{prereq}]"),
                1,
            )
        };
        // mm names the fix, net names mm: both have it.
        let c = SeriesToml::parse(&with(fix, "\"mm-fixes\"")).unwrap();
        assert!(c.series[0].fixes && c.series[0].tree.as_deref() == Some("mm-hotfixes"));
        assert!(c.prerequisites_of("net").contains("mm-fixes"));
        // A feature need not name a fix it does not need.
        let c = SeriesToml::parse(&with(fix, "")).unwrap();
        assert!(!c.prerequisites_of("net").contains("mm-fixes"));
        let e = err(&with(
            &fix.replace("tree = \"mm-hotfixes\"\n", ""),
            "\"mm-fixes\"",
        ));
        assert!(e.contains("needs the tree"), "{e}");
        let e = err(&with(&fix.replace("mm-hotfixes", "MM"), "\"mm-fixes\""));
        assert!(e.contains("tree \"MM\""), "{e}");
        // A fix after a feature sub-series.
        let mut late = GOOD.to_string();
        let vm = late.find("[tests]").unwrap();
        late.insert_str(vm, fix);
        let e = err(&late);
        assert!(
            e.contains("listed after the feature sub-series \"mm\""),
            "{e}"
        );
        assert!(
            err(&GOOD.replace("cover = \"Body.\"", "cover = \"Body.\"\nfixess = true"))
                .contains("unknown field `fixess`")
        );
    }

    #[test]
    fn known_failure_globs() {
        let k = KnownFailure {
            test: "iommu:iommufd.*.dmabuf_simple".into(),
            reason: String::new(),
        };
        assert!(k.matches("iommu:iommufd.iommufd_ioas.mock_domain.dmabuf_simple"));
        assert!(!k.matches("iommu:iommufd.iommufd_ioas.mock_domain.dmabuf_revoke"));
        assert!(!k.matches("mm:gup_test"));
        assert!(glob_match("*", "") && glob_match("a*", "a") && !glob_match("a", "ab"));
    }

    #[test]
    fn profiles() {
        let debug = "\n[profile.debug]\nconfig = [\"kconfig/debug.config\"]\ntimeout_factor = 4\n";
        let c = SeriesToml::parse(&format!("{GOOD}{debug}")).unwrap();
        let p = c.select_profile("debug").unwrap();
        assert_eq!((p.config.len(), p.timeout_factor), (1, 4));
        let d = c.select_profile("default").unwrap();
        assert!(d.config.is_empty() && d.timeout_factor == 1);
        let e = format!("{:#}", c.select_profile("kasan").err().unwrap());
        assert!(e.contains("one of [profile.*]: debug"), "{e}");
        let e = err(&format!("{GOOD}{}", debug.replace("debug]", "default]")));
        assert!(e.contains("not \"default\""), "{e}");
        assert!(err(&format!("{GOOD}{}", debug.replace("= 4", "= 0"))).contains("timeout_factor"));
        let over = "[[profile.debug.test]]\nname = \"mm:gup_test-a\"\ncmd = \"./gup_test -b\"\nreason = \"slow\"\n";
        let c = SeriesToml::parse(&format!("{GOOD}{debug}{over}")).unwrap();
        assert_eq!(
            c.select_profile("debug").unwrap().overrides[0].cmd,
            "./gup_test -b"
        );
        let e = err(&format!(
            "{GOOD}{debug}{}",
            over.replace("gup_test-a", "nope")
        ));
        assert!(e.contains("\"mm:nope\" is not a tests.kselftest"), "{e}");
        let e = err(&format!(
            "{GOOD}{debug}{}",
            over.replace("\"slow\"", "\"\"")
        ));
        assert!(e.contains("needs a reason"), "{e}");
        let no_factor = debug.replace("timeout_factor = 4\n", "");
        let c = SeriesToml::parse(&format!("{GOOD}{no_factor}")).unwrap();
        assert_eq!(c.select_profile("debug").unwrap().timeout_factor, 1);
    }

    #[test]
    fn not_toml_at_all() {
        assert!(err("[base\nname=").contains("TOML parse error"));
    }
}
