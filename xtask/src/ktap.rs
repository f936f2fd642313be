//! Test results from the guest: the kselftest runner's TAP output and KUnit's
//! KTAP in dmesg, parsed into a tree of [`Test`]s.
//!
//! Both inputs become a stream of classified lines, each with a nesting depth,
//! fed to one stack machine ([`Parser`]). The depth is a pair: the number of
//! `# ` prefixes (the kselftest runner and run_vmtests.sh prefix every line of
//! a child's output), then the indentation (KTAP nests subtests by indenting;
//! in dmesg it is measured after the printk prefix, from the `KTAP version`
//! line). A nested block ends at the next TAP line of a shallower depth; a
//! result line there is the block's own result. Like
//! tools/testing/kunit/kunit_parser.py, indentation is trusted only to open and
//! close blocks: a result indented deeper than the open block still belongs to
//! it. Lines that are not TAP (logs, comments, unrelated kernel messages) are
//! ignored wherever they appear. A block that never gets its result line, or
//! gets fewer results than its plan `1..N`, is [`Outcome::Incomplete`].

use serde::Serialize;

/// How one test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Outcome {
    Pass,
    Fail,
    Skip,
    /// `# XFAIL`: failed as expected.
    XFail,
    /// `# TODO`: not expected to pass yet.
    Todo,
    Timeout,
    Error,
    /// The output stopped before this test's result (or its plan) was complete.
    Incomplete,
}

impl Outcome {
    /// Fail, Timeout, Error and Incomplete are failures; XFail and Todo are not.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Fail | Outcome::Timeout | Outcome::Error | Outcome::Incomplete
        )
    }
}

/// One test: a kselftest program, a KUnit suite, a test case, a parameter...
#[derive(Debug, Clone, Serialize)]
pub struct Test {
    pub name: String,
    pub outcome: Outcome,
    /// Text after the directive keyword (`# SKIP no hugepages` gives "no hugepages").
    pub directive_reason: Option<String>,
    pub children: Vec<Test>,
    /// The plan `1..N` of this test's children, if any.
    pub expected: Option<usize>,
    /// Remarks of the parser, `; `-separated: a trailing comment that is no
    /// directive (`# exit=1`), "no result line", "expected N results, got M",
    /// an out-of-sequence test number.
    pub note: Option<String>,
}

/// Leaf results: XFail counts as a pass, Todo as a skip.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pass: usize,
    pub fail: usize,
    pub skip: usize,
}

impl Counts {
    fn of(outcome: Outcome) -> Counts {
        let mut c = Counts::default();
        match outcome {
            Outcome::Pass | Outcome::XFail => c.pass = 1,
            Outcome::Skip | Outcome::Todo => c.skip = 1,
            _ => c.fail = 1,
        }
        c
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.pass += o.pass;
        self.fail += o.fail;
        self.skip += o.skip;
    }
}

impl Test {
    fn new(name: impl Into<String>) -> Test {
        Test {
            name: name.into(),
            outcome: Outcome::Incomplete,
            directive_reason: None,
            children: Vec::new(),
            expected: None,
            note: None,
        }
    }

    fn add_note(&mut self, note: impl AsRef<str>) {
        let note = note.as_ref();
        match &mut self.note {
            Some(n) => {
                n.push_str("; ");
                n.push_str(note);
            }
            None => self.note = Some(note.to_string()),
        }
    }

    /// Leaf results below this test (a test with no children counts itself).
    /// A failed test whose children all passed (it crashed after its last
    /// result, or exited non-zero) adds one failure of its own, as in
    /// kunit_parser.py.
    pub fn counts(&self) -> Counts {
        if self.children.is_empty() {
            return Counts::of(self.outcome);
        }
        let mut c = Counts::default();
        for t in &self.children {
            c += t.counts();
        }
        if self.outcome.is_failure() && c.fail == 0 {
            c.fail += 1;
        }
        c
    }

    /// Walk the tree: yields (path like "suite.sub.case", &Test) for every failed
    /// test, parents before children. A parent that is a plain `Fail` is left
    /// out when a failed descendant already explains it.
    pub fn failures(&self) -> Vec<(String, &Test)> {
        let mut out = Vec::new();
        self.collect_failures(&self.name, &mut out);
        out
    }

    fn collect_failures<'a>(&'a self, path: &str, out: &mut Vec<(String, &'a Test)>) {
        let explained =
            self.outcome == Outcome::Fail && self.children.iter().any(Test::any_failure);
        if self.outcome.is_failure() && !explained {
            out.push((path.to_string(), self));
        }
        for c in &self.children {
            c.collect_failures(&format!("{path}.{}", c.name), out);
        }
    }

    fn any_failure(&self) -> bool {
        self.outcome.is_failure() || self.children.iter().any(Test::any_failure)
    }
}

/// Parse kselftest runner output. Returns the top-level tests (one per test program).
pub fn parse_kselftest(output: &str) -> Vec<Test> {
    let mut p = Parser::new();
    for line in output.lines() {
        let (mut s, mut prefixes) = (line.trim_end(), 0);
        while !s.starts_with("# Subtest:") {
            match s.strip_prefix("# ") {
                Some(rest) => s = rest,
                None if s == "#" => s = "",
                None => break,
            }
            prefixes += 1;
        }
        let body = s.trim_start();
        let depth = (prefixes, indent(&s[..s.len() - body.len()]));
        let line = match body.strip_prefix("selftests: ") {
            // The runner's `# selftests: mm: gup_test` before a program's output.
            Some(_) if prefixes > 0 => Line::Header(body),
            _ => classify(body),
        };
        p.feed(depth, line);
    }
    p.finish()
}

/// Parse KUnit KTAP found in a dmesg dump. Returns the top-level suites (of all
/// runs: built-in suites at boot, then one run per module loaded later).
pub fn parse_kunit_dmesg(dmesg: &str) -> Vec<Test> {
    let mut p = Parser::new();
    // Indentation of the current run's `KTAP version` line; nothing before the first counts.
    let mut base = None;
    for line in dmesg.lines() {
        let s = strip_printk(line);
        let body = s.trim_start();
        let ws = indent(&s[..s.len() - body.len()]);
        let line = classify(body);
        if matches!(line, Line::Version) && base.is_none_or(|b| ws <= b) {
            base = Some(ws);
        }
        if let Some(b) = base {
            p.feed((0, ws.saturating_sub(b)), line);
        }
    }
    p.finish()
}

/// Strips the printk prefix: `<6>`, `[    1.234567]`, `[    T1]` / `[ C0]` and
/// the space after them.
fn strip_printk(line: &str) -> &str {
    fn bracket(s: &str, ok: impl Fn(&str) -> bool) -> Option<&str> {
        let (inner, rest) = s.strip_prefix('[')?.split_once(']')?;
        ok(inner.trim()).then_some(rest)
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut s = line.trim_end();
    if let Some((level, rest)) = s.strip_prefix('<').and_then(|r| r.split_once('>')) {
        if digits(level) {
            s = rest;
        }
    }
    let time = |t: &str| t.contains('.') && t.split('.').all(digits);
    if let Some(rest) = bracket(s, time) {
        s = rest;
        let caller = |c: &str| c.strip_prefix(['T', 'C']).is_some_and(digits);
        if let Some(rest) = bracket(s.strip_prefix(' ').unwrap_or(s), caller) {
            s = rest;
        }
        s = s.strip_prefix(' ').unwrap_or(s);
    }
    s
}

/// Width of leading whitespace, a tab counting 8.
fn indent(ws: &str) -> usize {
    ws.chars().map(|c| if c == '\t' { 8 } else { 1 }).sum()
}

/// A line, classified.
#[derive(Debug)]
enum Line<'a> {
    /// `KTAP version 1`, `TAP version 13`
    Version,
    /// `# Subtest: name`
    Subtest(&'a str),
    /// `1..N`
    Plan(usize),
    Result(ResultLine<'a>),
    /// Names the next test at the enclosing level (kselftest runner header).
    Header(&'a str),
    Other,
}

/// `ok 3 name # SKIP reason`
#[derive(Debug)]
struct ResultLine<'a> {
    ok: bool,
    num: usize,
    desc: &'a str,
    /// Text after ` # `, if any.
    comment: Option<&'a str>,
}

/// A leading number ending at a space or the end of `s`, and the rest.
fn number(s: &str) -> Option<(usize, &str)> {
    let end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n = s[..end].parse().ok()?;
    let rest = &s[end..];
    (rest.is_empty() || rest.starts_with(' ')).then_some((n, rest))
}

/// Classifies a line whose nesting prefix and indentation are already removed.
fn classify(s: &str) -> Line<'_> {
    if let Some(v) = s
        .strip_prefix("KTAP version ")
        .or(s.strip_prefix("TAP version "))
    {
        if number(v).is_some_and(|(_, rest)| rest.is_empty()) {
            return Line::Version;
        }
    }
    if let Some(name) = s.strip_prefix("# Subtest: ") {
        return Line::Subtest(name.trim());
    }
    if let Some((n, _)) = s.strip_prefix("1..").and_then(number) {
        return Line::Plan(n);
    }
    let (ok, rest) = match s.strip_prefix("not ok ") {
        Some(rest) => (false, rest),
        None => match s.strip_prefix("ok ") {
            Some(rest) => (true, rest),
            None => return Line::Other,
        },
    };
    let Some((num, rest)) = number(rest) else {
        return Line::Other;
    };
    let rest = rest.trim();
    let rest = rest.strip_prefix("- ").unwrap_or(rest);
    let (desc, comment) = if let Some(c) = rest.strip_prefix('#') {
        ("", Some(c))
    } else if let Some((d, c)) = rest.split_once(" # ") {
        (d, Some(c))
    } else {
        (rest.strip_suffix(" #").unwrap_or(rest), None)
    };
    let comment = comment.map(str::trim).filter(|c| !c.is_empty());
    Line::Result(ResultLine {
        ok,
        num,
        desc: desc.trim(),
        comment,
    })
}

/// Outcome, directive reason and note of a result line.
fn judge(r: &ResultLine) -> (Outcome, Option<String>, Option<String>) {
    let plain = if r.ok { Outcome::Pass } else { Outcome::Fail };
    let Some(c) = r.comment else {
        return (plain, None, None);
    };
    let (word, reason) = c.split_once(char::is_whitespace).unwrap_or((c, ""));
    let outcome = match word.trim_end_matches(':').to_ascii_uppercase().as_str() {
        "SKIP" | "SKIPPED" => Outcome::Skip,
        "TODO" => Outcome::Todo,
        "XFAIL" => Outcome::XFail,
        "TIMEOUT" => Outcome::Timeout,
        "ERROR" => Outcome::Error,
        _ => return (plain, None, Some(c.to_string())),
    };
    let reason = reason.trim();
    (
        outcome,
        (!reason.is_empty()).then(|| reason.to_string()),
        None,
    )
}

/// Gives `t` its result line (`None`: it never came) and checks its plan.
fn settle(t: &mut Test, r: Option<&ResultLine>) {
    match r {
        Some(r) => {
            if !r.desc.is_empty() {
                t.name = r.desc.to_string();
            }
            let (outcome, reason, note) = judge(r);
            t.outcome = outcome;
            t.directive_reason = reason;
            if let Some(n) = note {
                t.add_note(n);
            }
        }
        None => {
            t.outcome = Outcome::Incomplete;
            t.add_note("no result line");
        }
    }
    let seen = t.children.len();
    if let Some(n) = t.expected.filter(|&n| seen < n) {
        // Skip, Timeout, Error... already say why results are missing.
        if matches!(t.outcome, Outcome::Pass | Outcome::Fail) {
            t.outcome = Outcome::Incomplete;
        }
        t.add_note(format!("expected {n} results, got {seen}"));
    }
}

/// (`# ` prefixes, indentation)
type Depth = (usize, usize);
const ROOT: Depth = (0, 0);

/// An open block: the top level, or a (sub)test whose children are still coming.
struct Level {
    depth: Depth,
    /// From `# Subtest: name`.
    name: Option<String>,
    plan: Option<usize>,
    children: Vec<Test>,
    /// Highest test number seen in the current TAP document (numbering restarts
    /// when a second document follows at the same level).
    last: usize,
    /// A closed nested block waiting for its result line at this level.
    pending: Option<Pending>,
    /// Name for the next child, from a runner header.
    hint: Option<String>,
}

struct Pending {
    test: Test,
    /// Named by `# Subtest:`: a result line with another name is not its own.
    from_header: bool,
}

impl Level {
    fn new(depth: Depth) -> Level {
        Level {
            depth,
            name: None,
            plan: None,
            children: Vec::new(),
            last: 0,
            pending: None,
            hint: None,
        }
    }

    fn fresh(&self) -> bool {
        self.plan.is_none() && self.children.is_empty() && self.pending.is_none()
    }

    fn add(&mut self, mut t: Test) {
        if t.name.is_empty() {
            t.name = format!("#{}", self.children.len() + 1);
        }
        self.children.push(t);
    }

    /// Records the pending block as incomplete: its result line never came.
    fn flush(&mut self) {
        if let Some(Pending { mut test, .. }) = self.pending.take() {
            settle(&mut test, None);
            self.add(test);
            self.last += 1;
        }
    }

    /// Before the level is closed: flush, and a test announced by a runner
    /// header that printed nothing parseable and never finished is incomplete.
    fn settle_tail(&mut self) {
        self.flush();
        if let Some(h) = self.hint.take() {
            let mut t = Test::new(h);
            t.add_note("no result line");
            self.add(t);
            self.last += 1;
        }
    }
}

/// The stack machine shared by both input formats.
struct Parser {
    /// Never empty: `stack[0]` is the top level, at depth [`ROOT`].
    stack: Vec<Level>,
    /// Top-level tests of finished runs.
    done: Vec<Test>,
}

impl Parser {
    fn new() -> Parser {
        Parser {
            stack: vec![Level::new(ROOT)],
            done: Vec::new(),
        }
    }

    fn top(&mut self) -> &mut Level {
        self.stack
            .last_mut()
            .expect("the stack holds the top level")
    }

    fn feed(&mut self, depth: Depth, line: Line) {
        match line {
            Line::Version => self.version(depth),
            Line::Subtest(name) => self.subtest(depth, name),
            Line::Plan(n) => self.plan(depth, n),
            Line::Result(r) => self.result(depth, &r),
            Line::Header(h) => {
                let level = self.stack.iter_mut().rev().find(|l| l.depth.0 < depth.0);
                if let Some(level) = level {
                    level.hint = Some(h.to_string());
                }
            }
            Line::Other => {}
        }
    }

    fn version(&mut self, depth: Depth) {
        if depth == ROOT {
            // A new run (e.g. a module's KUnit suites after the built-in ones).
            if self.stack.len() > 1 || !self.stack[0].fresh() {
                self.finish_run();
            }
            return;
        }
        self.unwind(depth);
        let top = self.top();
        if top.depth == depth && !top.fresh() {
            if depth.1 == 0 {
                // Another TAP document in the same program's output
                // (a script running two test binaries): continue the level.
                top.flush();
                top.last = 0;
            } else {
                // A sibling block starts: the previous one lost its result line.
                self.close_top();
            }
        }
        self.open(depth);
    }

    fn subtest(&mut self, depth: Depth, name: &str) {
        if depth == ROOT {
            return;
        }
        self.unwind(depth);
        let top = self.top();
        if top.depth == depth && !(top.name.is_none() && top.fresh()) {
            self.close_top();
        }
        self.open(depth);
        self.top().name = Some(name.to_string());
    }

    fn plan(&mut self, depth: Depth, n: usize) {
        self.unwind(depth);
        self.open(depth);
        let top = self.top();
        // A second plan at one level belongs to a second document there.
        top.plan = Some(top.plan.map_or(n, |p| p + n));
    }

    fn result(&mut self, depth: Depth, r: &ResultLine) {
        self.unwind(depth);
        if self.top().depth.0 < depth.0 {
            self.open(depth);
        }
        let level = self.top();
        let own = level
            .pending
            .as_ref()
            .is_some_and(|p| !p.from_header || r.desc.is_empty() || r.desc == p.test.name);
        if !own {
            level.flush();
        }
        let mut test = level
            .pending
            .take()
            .map_or_else(|| Test::new(""), |p| p.test);
        settle(&mut test, Some(r));
        if let Some(h) = level.hint.take().filter(|_| test.name.is_empty()) {
            test.name = h;
        }
        if test.name.is_empty() {
            test.name = format!("#{}", r.num);
        }
        if r.num != level.last + 1 {
            test.add_note(format!("numbered {}, expected {}", r.num, level.last + 1));
        }
        level.last = level.last.max(r.num);
        level.add(test);
    }

    /// Closes the nested levels deeper than `depth`.
    fn unwind(&mut self, depth: Depth) {
        while self.stack.len() > 1 && self.top().depth > depth {
            self.close_top();
        }
    }

    /// Opens levels down to `depth` (one per missing `# ` prefix).
    fn open(&mut self, depth: Depth) {
        while self.top().depth.0 + 1 < depth.0 {
            let d = (self.top().depth.0 + 1, 0);
            self.stack.push(Level::new(d));
        }
        if self.top().depth < depth {
            self.stack.push(Level::new(depth));
        }
    }

    /// Closes the innermost level: it becomes its parent's pending block.
    fn close_top(&mut self) {
        let mut level = self.stack.pop().expect("a nested level");
        level.settle_tail();
        let parent = self.top();
        parent.flush();
        let from_header = level.name.is_some();
        let name = level
            .name
            .or_else(|| parent.hint.take())
            .unwrap_or_default();
        let mut test = Test::new(name);
        test.children = level.children;
        test.expected = level.plan;
        parent.pending = Some(Pending { test, from_header });
    }

    /// Ends the current run; a top-level plan that fell short gets one
    /// incomplete placeholder.
    fn finish_run(&mut self) {
        self.unwind(ROOT);
        let mut root = std::mem::replace(&mut self.stack[0], Level::new(ROOT));
        root.settle_tail();
        let seen = root.children.len();
        if let Some(n) = root.plan.filter(|&n| seen < n) {
            let mut t = Test::new(format!("({} not reported)", n - seen));
            t.add_note(format!("expected {n} results, got {seen}"));
            root.children.push(t);
        }
        self.done.append(&mut root.children);
    }

    fn finish(mut self) -> Vec<Test> {
        self.finish_run();
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Outcome::*;

    // Real samples from Linux 7.3.4; see tests/fixtures/README.
    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!("../tests/fixtures/", $name))
        };
    }

    /// One line per test: indentation, name, outcome, (reason), [note].
    fn show(tests: &[Test]) -> String {
        fn walk(t: &Test, depth: usize, out: &mut String) {
            out.push_str(&format!(
                "{:w$}{} {:?}",
                "",
                t.name,
                t.outcome,
                w = depth * 2
            ));
            if let Some(r) = &t.directive_reason {
                out.push_str(&format!(" ({r})"));
            }
            if let Some(n) = &t.note {
                out.push_str(&format!(" [{n}]"));
            }
            out.push('\n');
            for c in &t.children {
                walk(c, depth + 1, out);
            }
        }
        let mut out = String::new();
        for t in tests {
            walk(t, 0, &mut out);
        }
        out
    }

    fn total(tests: &[Test]) -> Counts {
        let mut c = Counts::default();
        for t in tests {
            c += t.counts();
        }
        c
    }

    fn counts(pass: usize, fail: usize, skip: usize) -> Counts {
        Counts { pass, fail, skip }
    }

    /// (path, outcome) of every failure below the top-level tests.
    fn failures(tests: &[Test]) -> Vec<(String, Outcome)> {
        let all = tests.iter().flat_map(|t| t.failures());
        all.map(|(p, t)| (p, t.outcome)).collect()
    }

    /// Prefixes every line with `# `, as the kselftest runner does to a program's output.
    fn prefixed(output: &str) -> String {
        output.lines().map(|l| format!("# {l}\n")).collect()
    }

    #[test]
    fn kunit_all_passed() {
        let t = parse_kunit_dmesg(fixture!("test_is_test_passed-all_passed.log"));
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].name.as_str(), t[0].outcome, t[0].expected),
            ("sysctl_test", Pass, Some(8))
        );
        assert_eq!(
            (t[1].name.as_str(), t[1].outcome, t[1].expected),
            ("example", Pass, Some(2))
        );
        assert_eq!(
            t[0].children[7].name,
            "sysctl_test_dointvec_single_greater_int_max"
        );
        assert_eq!(total(&t), counts(10, 0, 0));
        assert!(failures(&t).is_empty());
        // No plan for the suites, same results (kunit_parser.py: passed=10).
        let t = parse_kunit_dmesg(fixture!("test_is_test_passed-missing_plan.log"));
        assert_eq!(t[0].expected, None);
        assert_eq!(total(&t), counts(10, 0, 0));
    }

    #[test]
    fn kunit_nested() {
        let t = parse_kunit_dmesg(fixture!("test_is_test_passed-all_passed_nested.log"));
        let want = "\
sysctl_test Pass
  sysctl_test_dointvec_null_tbl_data Pass
  example Pass
    example_simple_test Pass
    example_mock_test Pass
  sysctl_test_dointvec_table_len_is_zero Pass
  sysctl_test_dointvec_table_read_but_position_set Pass
example Pass
  example_simple_test Pass
  example_mock_test Pass
";
        assert_eq!(show(&t), want);
        assert_eq!(total(&t), counts(7, 0, 0));
    }

    #[test]
    fn kunit_failure() {
        let t = parse_kunit_dmesg(fixture!("test_is_test_passed-failure.log"));
        assert_eq!(t[0].outcome, Pass);
        assert_eq!(t[1].outcome, Fail);
        assert_eq!(t[1].children[0].outcome, Fail);
        assert_eq!(t[1].children[1].outcome, Pass);
        assert_eq!(
            (t[0].counts(), t[1].counts()),
            (counts(8, 0, 0), counts(1, 1, 0))
        );
        // The failing case explains its suite's failure.
        assert_eq!(
            failures(&t),
            [("example.example_simple_test".to_string(), Fail)]
        );
    }

    #[test]
    fn kunit_failure_nested_without_subtest_headers() {
        // Results indented deeper than their block, as in kunit_parser.py's test.
        let t = parse_kunit_dmesg(fixture!("test_is_test_passed-failure-nested.log"));
        let want = "\
subtest 1 Fail
  test 1 Pass
subtest 2 Fail
  subsubtest 1 Fail
";
        assert_eq!(show(&t), want);
        // A failed parent whose children passed counts once (kunit_parser.py: failed=2).
        assert_eq!(total(&t), counts(1, 2, 0));
        let want = [
            ("subtest 1".to_string(), Fail),
            ("subtest 2.subsubtest 1".to_string(), Fail),
        ];
        assert_eq!(failures(&t), want);
    }

    #[test]
    fn kunit_no_tests() {
        assert!(
            parse_kunit_dmesg(fixture!("test_is_test_passed-no_tests_run_with_header.log"))
                .is_empty()
        );
        assert!(
            parse_kunit_dmesg(fixture!("test_is_test_passed-no_tests_run_no_header.log"))
                .is_empty()
        );
        assert!(parse_kunit_dmesg("").is_empty());
        let t = parse_kunit_dmesg(fixture!("test_is_test_passed-no_tests_no_plan.log"));
        assert_eq!(show(&t), "suite Pass\n  case Pass\n");
    }

    #[test]
    fn kunit_prefixes_and_interleaved_lines() {
        let want = "\
kunit-resource-test Pass
  kunit_resource_test_init_resources Pass
  kunit_resource_test_alloc_resource Pass
  kunit_resource_test_destroy_resource Pass
  kunit_resource_test_cleanup_resources Pass
  kunit_resource_test_proper_free_ordering Pass
kunit-try-catch-test Pass
  kunit_test_try_catch_successful_try_no_catch Pass
  kunit_test_try_catch_unsuccessful_try_does_catch Pass
string-stream-test Pass
  string_stream_test_empty_on_creation Pass
  string_stream_test_not_empty_after_add Pass
  string_stream_test_get_string Pass
";
        for log in [
            fixture!("test_config_printk_time.log"),
            fixture!("test_multiple_prefixes.log"),
            fixture!("test_interrupted_tap_output.log"),
            fixture!("test_pound_sign.log"),
            fixture!("test_pound_no_prefix.log"),
            fixture!("test_output_with_prefix_isolated_correctly.log"),
        ] {
            let t = parse_kunit_dmesg(log);
            assert_eq!(show(&t), want);
            assert_eq!(total(&t), counts(10, 0, 0));
        }
    }

    #[test]
    fn kunit_kernel_panic() {
        let t = parse_kunit_dmesg(fixture!("test_kernel_panic_interrupt.log"));
        assert_eq!(t.len(), 3);
        let s = &t[2];
        assert_eq!(
            (s.name.as_str(), s.outcome, s.expected),
            ("string-stream-test", Incomplete, Some(3))
        );
        assert_eq!(
            s.note.as_deref(),
            Some("no result line; expected 3 results, got 1")
        );
        assert_eq!(s.children.len(), 1);
        assert_eq!(total(&t), counts(8, 1, 0));
        assert_eq!(
            failures(&t),
            [("string-stream-test".to_string(), Incomplete)]
        );
    }

    #[test]
    fn kunit_skips() {
        let t = parse_kunit_dmesg(fixture!("test_skip_tests.log"));
        let case = &t[1].children[1];
        assert_eq!(
            (case.outcome, case.directive_reason.as_deref()),
            (Skip, Some("this test should be skipped"))
        );
        assert_eq!(t[1].outcome, Pass);
        assert_eq!(total(&t), counts(4, 0, 1));

        let t = parse_kunit_dmesg(fixture!("test_skip_all_tests.log"));
        assert_eq!(
            (t[0].outcome, t[0].directive_reason.as_deref()),
            (Skip, None)
        );
        assert_eq!(
            t[0].children[0].directive_reason.as_deref(),
            Some("all tests skipped")
        );
        assert_eq!(total(&t), counts(0, 0, 5));
        assert!(failures(&t).is_empty());
    }

    #[test]
    fn kunit_hyphen_and_attributes() {
        let t = parse_kunit_dmesg(fixture!("test_strip_hyphen.log"));
        assert_eq!(show(&t), "sysctl_test Pass\n  sysctl_test_dointvec_null_tbl_data Pass\nexample Pass\n  example_simple_test Pass\n");
        let t = parse_kunit_dmesg(fixture!("test_parse_attributes.log"));
        assert_eq!(show(&t), "suite Pass\n  test Pass\n");
        assert_eq!(t[0].expected, Some(1));
    }

    /// A 7.3 boot: built-in suites (one parameterised case), unrelated kernel lines anywhere.
    const DMESG: &str = "\
[    0.000000] Linux version 7.3.4 (builder@virtme) (gcc (Debian 14.2.0-19) 14.2.0) #1 SMP PREEMPT_DYNAMIC
[    0.000000] Command line: console=ttyS0 kunit.enable=1
[    0.523410] Freeing SMP alternatives memory: 44K
[    1.102345] KTAP version 1
[    1.102350] 1..2
[    1.102712]     KTAP version 1
[    1.102713]     # Subtest: pin_user_pages_fd
[    1.102714]     # module: pinfd_kunit
[    1.102715]     1..3
[    1.103001]     ok 1 pinfd_basic
[    1.103500] virtio_blk virtio1: [vda] 2097152 512-byte logical blocks (1.07 GB/1.00 GiB)
[    1.104120]     # pinfd_bad_fd: EXPECTATION FAILED at mm/pinfd_kunit.c:57
[    1.104120]     Expected ret == -EBADF, but
[    1.104120]         ret == 0 (0x0)
[    1.104125]     not ok 2 pinfd_bad_fd
[    1.104200]         KTAP version 1
[    1.104201]         # Subtest: pinfd_sizes
[    1.104300]         ok 1 4K
[    1.104350] random: crng init done
[    1.104400]         ok 2 2M # SKIP THP disabled
[    1.104401]         ok 3 1G # SKIP no gigantic pages
[    1.104402]     # pinfd_sizes: pass:1 fail:0 skip:2 total:3
[    1.104403]     ok 3 pinfd_sizes
[    1.104404] # pin_user_pages_fd: pass:1 fail:1 skip:0 total:3
[    1.104405] # Totals: pass:2 fail:1 skip:2 total:5
[    1.104406] not ok 1 pin_user_pages_fd
[    1.104500]     KTAP version 1
[    1.104501]     # Subtest: rust_doctests_kernel
[    1.104502]     1..2
[    1.104600]     ok 1 rust_doctest_kernel_page_pool_rs_0
[    1.104650] ACPI: \\_SB_.LNKC: Enabled at IRQ 11
[    1.104700]     ok 2 rust_doctest_kernel_page_pool_rs_1
[    1.104800] # rust_doctests_kernel: pass:2 fail:0 skip:0 total:2
[    1.104801] # Totals: pass:2 fail:0 skip:0 total:2
[    1.104802] ok 2 rust_doctests_kernel
[    1.200000] Run /init as init process
";

    #[test]
    fn kunit_dmesg_one_failing_case() {
        let want = "\
pin_user_pages_fd Fail
  pinfd_basic Pass
  pinfd_bad_fd Fail
  pinfd_sizes Pass
    4K Pass
    2M Skip (THP disabled)
    1G Skip (no gigantic pages)
rust_doctests_kernel Pass
  rust_doctest_kernel_page_pool_rs_0 Pass
  rust_doctest_kernel_page_pool_rs_1 Pass
";
        let t = parse_kunit_dmesg(DMESG);
        assert_eq!(show(&t), want);
        assert_eq!(t[0].children[2].expected, None);
        assert_eq!(
            (t[0].counts(), t[1].counts()),
            (counts(2, 1, 2), counts(2, 0, 0))
        );
        assert_eq!(
            failures(&t),
            [("pin_user_pages_fd.pinfd_bad_fd".to_string(), Fail)]
        );
        let json = serde_json::to_value(&t[0]).unwrap();
        assert_eq!(json["children"][1]["outcome"], "Fail");

        // The same with a log level and a caller id, or without timestamps.
        let variants = [
            DMESG
                .lines()
                .map(|l| format!("<6>{l}\n"))
                .collect::<String>(),
            DMESG
                .lines()
                .map(|l| l.replacen("] ", "][    T1] ", 1) + "\n")
                .collect(),
            DMESG.lines().map(|l| l[15..].to_string() + "\n").collect(),
        ];
        for v in variants {
            assert_eq!(show(&parse_kunit_dmesg(&v)), want);
        }
    }

    #[test]
    fn kunit_dmesg_crash_mid_suite() {
        let dmesg = "\
[    1.102345] KTAP version 1
[    1.102350] 1..3
[    1.102712]     KTAP version 1
[    1.102713]     # Subtest: rust_doctests_kernel
[    1.102715]     1..1
[    1.103001]     ok 1 rust_doctest_kernel_page_pool_rs_0
[    1.103002] ok 1 rust_doctests_kernel
[    1.103100]     KTAP version 1
[    1.103101]     # Subtest: pin_user_pages_fd
[    1.103102]     1..3
[    1.103200]     ok 1 pinfd_basic
[    1.103300]         KTAP version 1
[    1.103301]         # Subtest: pinfd_sizes
[    1.103400]         ok 1 4K
[    1.103500] BUG: kernel NULL pointer dereference, address: 0000000000000008
[    1.103501] #PF: supervisor read access in kernel mode
[    1.103502] Oops: Oops: 0000 [#1] SMP NOPTI
[    1.103503] RIP: 0010:pin_user_pages_fd+0x5a/0x1e0
[    1.103510] Kernel panic - not syncing: Fatal exception
";
        let want = "\
rust_doctests_kernel Pass
  rust_doctest_kernel_page_pool_rs_0 Pass
pin_user_pages_fd Incomplete [no result line; expected 3 results, got 2]
  pinfd_basic Pass
  pinfd_sizes Incomplete [no result line]
    4K Pass
(1 not reported) Incomplete [expected 3 results, got 2]
";
        let t = parse_kunit_dmesg(dmesg);
        assert_eq!(show(&t), want);
        assert_eq!(t[1].counts(), counts(2, 1, 0));
        assert_eq!(total(&t), counts(3, 2, 0));
        let want = [
            ("pin_user_pages_fd".to_string(), Incomplete),
            ("pin_user_pages_fd.pinfd_sizes".to_string(), Incomplete),
            ("(1 not reported)".to_string(), Incomplete),
        ];
        assert_eq!(failures(&t), want);
    }

    #[test]
    fn kunit_missing_result_lines_between_blocks() {
        let dmesg = "\
[    1.0] KTAP version 1
[    1.0] 1..2
[    1.0]     KTAP version 1
[    1.0]     # Subtest: a
[    1.0]     1..2
[    1.0]         KTAP version 1
[    1.0]         # Subtest: param
[    1.0]         ok 1 p0
[    1.0]     ok 2 other
[    1.0]     KTAP version 1
[    1.0]     # Subtest: b
[    1.0]     1..1
[    1.0]     ok 1 b1
[    1.0] ok 2 b
[   12.0] pinfd_kunit: loading out-of-tree module taints kernel.
[   12.1] KTAP version 1
[   12.1] 1..1
[   12.1]     KTAP version 1
[   12.1]     # Subtest: from_module
[   12.1]     1..1
[   12.1]     ok 1 m1
[   12.1] ok 1 from_module
";
        // `param` lost its result line (the next one names another test), then
        // suite `a` lost its own when `b` started; a module's run follows.
        let want = "\
a Incomplete [no result line]
  param Incomplete [no result line]
    p0 Pass
  other Pass
b Pass
  b1 Pass
from_module Pass
  m1 Pass
";
        assert_eq!(show(&parse_kunit_dmesg(dmesg)), want);
    }

    #[test]
    fn kselftest_fixture_nested() {
        let t = parse_kselftest(fixture!("test_is_test_passed-kselftest.log"));
        let want = "\
selftests: membarrier: membarrier_test_single_thread Pass
  sys_membarrier available Pass
  sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected Pass
selftests: membarrier: membarrier_test_multi_thread Pass
  sys_membarrier available Pass
  sys membarrier invalid command test: command = -1, flags = 0, errno = 22. Failed as expected Pass
#3 Skip (selftests: membarrier: membarrier_test_multi_thread)
";
        assert_eq!(show(&t), want);
        assert_eq!(t[0].expected, Some(2));
        assert_eq!(total(&t), counts(4, 0, 1));
    }

    /// Outcomes of harness-selftest.expected's 19 tests, plus the stray
    /// `not ok 1 # Illegal usage...` the harness prints inside test 12.
    fn check_harness(t: &Test) {
        let outcomes: Vec<_> = t.children.iter().map(|c| c.outcome).collect();
        let want = [
            Pass, Fail, Pass, Fail, Pass, Pass, Fail, XFail, Skip, Pass, Pass, Fail, Fail, Pass,
            Pass, Pass, Fail, Fail, Pass, Fail,
        ];
        assert_eq!(outcomes, want);
        let stray = &t.children[11];
        assert_eq!(stray.name, "#1");
        let note = "Illegal usage of low-level ksft APIs in harness test; numbered 1, expected 12";
        assert_eq!(stray.note.as_deref(), Some(note));
        assert_eq!(t.children[12].name, "global.test_result_fail");
        assert_eq!(t.children[12].note, None);
        assert_eq!(t.children[5].note.as_deref(), Some("XPASS unknown"));
        assert_eq!(t.children[8].directive_reason.as_deref(), Some("unknown"));
        assert_eq!(t.expected, Some(19));
        assert_eq!(t.counts(), counts(11, 8, 1));
    }

    #[test]
    fn kselftest_harness_alone() {
        let t = parse_kselftest(fixture!("harness-selftest.expected"));
        assert_eq!(t.len(), 20);
        assert_eq!(total(&t), counts(11, 8, 1));
        assert_eq!(t[17].name, "fixture.timeout");
    }

    #[test]
    fn kselftest_runner_wrapping_harness() {
        let out = format!(
            "TAP version 13\n1..2\n# timeout set to 45\n# selftests: kselftest_harness: harness-selftest\n{}\
             not ok 1 selftests: kselftest_harness: harness-selftest # exit=1\n\
             # timeout set to 45\n# selftests: pinfd: pinfd_smoke\n# pinned 512 pages, released 512\n\
             ok 2 selftests: pinfd: pinfd_smoke\n",
            prefixed(fixture!("harness-selftest.expected"))
        );
        let t = parse_kselftest(&out);
        assert_eq!(t.len(), 2);
        let h = &t[0];
        assert_eq!(
            (h.name.as_str(), h.outcome),
            ("selftests: kselftest_harness: harness-selftest", Fail)
        );
        assert_eq!(h.note.as_deref(), Some("exit=1"));
        check_harness(h);
        // Printed nothing parseable: the runner's line alone.
        assert_eq!(show(&t[1..]), "selftests: pinfd: pinfd_smoke Pass\n");
        let f = failures(&t);
        assert_eq!(f.len(), 8);
        let first = "selftests: kselftest_harness: harness-selftest.global.standalone_fail";
        assert_eq!(f[0], (first.to_string(), Fail));
    }

    #[test]
    fn kselftest_timeout_skip_and_nested_runner() {
        let out = "\
TAP version 13
1..3
# timeout set to 45
# selftests: mm: gup_longterm
# TAP version 13
# 1..4
# # [INFO] detected hugetlb page size: 2048 KiB
# ok 1 R/W longterm GUP pin in MAP_SHARED file mapping ... with memfd
# ok 2 R/W longterm GUP pin in MAP_SHARED file mapping ... with tmpfile
#
not ok 1 selftests: mm: gup_longterm # TIMEOUT 45 seconds
# timeout set to 45
# selftests: mm: hugepage-mremap
# 1..0 # SKIP no hugepages available
ok 2 selftests: mm: hugepage-mremap # SKIP
# timeout set to 180
# selftests: mm: run_vmtests.sh
# TAP version 13
# # -----------------------
# # running ./gup_test -u -n 1
# # -----------------------
# # TAP version 13
# # 1..1
# # # GUP_FAST_BENCHMARK: Time: get:123 put:45 us
# # ok 1 ioctl status 0
# # # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:0 error:0
# # [PASS]
# ok 1 gup_test -u -n 1
# # -----------------------
# # running ./gup_test -a -n 512
# # -----------------------
# # TAP version 13
# # 1..1
# # not ok 1 ioctl status -1
# # [FAIL]
# not ok 2 gup_test -a -n 512 # exit=1
# # SUMMARY: PASS=1 SKIP=0 FAIL=1
# 1..2
not ok 3 selftests: mm: run_vmtests.sh # exit=1
";
        let want = "\
selftests: mm: gup_longterm Timeout (45 seconds) [expected 4 results, got 2]
  R/W longterm GUP pin in MAP_SHARED file mapping ... with memfd Pass
  R/W longterm GUP pin in MAP_SHARED file mapping ... with tmpfile Pass
selftests: mm: hugepage-mremap Skip
selftests: mm: run_vmtests.sh Fail [exit=1]
  gup_test -u -n 1 Pass
    ioctl status 0 Pass
  gup_test -a -n 512 Fail [exit=1]
    ioctl status -1 Fail
";
        let t = parse_kselftest(out);
        assert_eq!(show(&t), want);
        assert_eq!(t[1].expected, Some(0));
        assert_eq!(t[2].expected, Some(2));
        let c: Vec<_> = t.iter().map(Test::counts).collect();
        assert_eq!(c, [counts(2, 1, 0), counts(0, 0, 1), counts(1, 1, 0)]);
        let want = [
            ("selftests: mm: gup_longterm".to_string(), Timeout),
            (
                "selftests: mm: run_vmtests.sh.gup_test -a -n 512.ioctl status -1".to_string(),
                Fail,
            ),
        ];
        assert_eq!(failures(&t), want);
    }

    #[test]
    fn kselftest_directives() {
        let out = "\
TAP version 13
1..1
# selftests: pinfd: directives
# TAP version 13
# 1..8
# ok 1 plain
# ok 2 skipped # SKIP no hugepages
# not ok 3 todo_fail # TODO not implemented yet
# ok 4 xfail_ok # XFAIL known bug
# not ok 5 xfail_notok # xfail
# not ok 6 slow # timeout 30 seconds
# not ok 7 broken # ERROR setup failed
# ok 8 lower # skip lowercase reason
# # Totals: pass:1 fail:0 xfail:2 xpass:0 skip:2 error:1
not ok 1 selftests: pinfd: directives # exit=1
";
        let want = "\
selftests: pinfd: directives Fail [exit=1]
  plain Pass
  skipped Skip (no hugepages)
  todo_fail Todo (not implemented yet)
  xfail_ok XFail (known bug)
  xfail_notok XFail
  slow Timeout (30 seconds)
  broken Error (setup failed)
  lower Skip (lowercase reason)
";
        let t = parse_kselftest(out);
        assert_eq!(show(&t), want);
        assert_eq!(t[0].counts(), counts(3, 2, 3));
        assert!(!Todo.is_failure() && !XFail.is_failure() && !Skip.is_failure());
        assert!(Timeout.is_failure() && Error.is_failure() && Incomplete.is_failure());
        let want = [
            ("selftests: pinfd: directives.slow".to_string(), Timeout),
            ("selftests: pinfd: directives.broken".to_string(), Error),
        ];
        assert_eq!(failures(&t), want);
    }

    #[test]
    fn kselftest_two_documents_in_one_program() {
        // A test script running two kselftest.h binaries: one program, five results.
        let out = "\
TAP version 13
1..1
# selftests: pinfd: run.sh
# TAP version 13
# 1..3
# ok 1 a
# ok 2 b
# ok 3 c
# # Totals: pass:3 fail:0 xfail:0 xpass:0 skip:0 error:0
# TAP version 13
# 1..2
# ok 1 d
# not ok 2 e
ok 1 selftests: pinfd: run.sh
";
        let t = parse_kselftest(out);
        assert_eq!(t.len(), 1);
        assert_eq!(
            (t[0].outcome, t[0].expected, t[0].note.as_deref()),
            (Pass, Some(5), None)
        );
        assert_eq!(t[0].counts(), counts(4, 1, 0));
        let names: Vec<_> = t[0].children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d", "e"]);
        assert!(t[0].children.iter().all(|c| c.note.is_none()));
        assert_eq!(
            failures(&t),
            [("selftests: pinfd: run.sh.e".to_string(), Fail)]
        );
    }

    #[test]
    fn kselftest_truncated() {
        // The guest died inside the second of four programs.
        let out = "\
TAP version 13
1..4
# timeout set to 45
# selftests: pinfd: pinfd_smoke
ok 1 selftests: pinfd: pinfd_smoke
# timeout set to 45
# selftests: mm: gup_test
# TAP version 13
# 1..3
# ok 1 first
";
        let want = "\
selftests: pinfd: pinfd_smoke Pass
selftests: mm: gup_test Incomplete [no result line; expected 3 results, got 1]
  first Pass
(2 not reported) Incomplete [expected 4 results, got 2]
";
        let t = parse_kselftest(out);
        assert_eq!(show(&t), want);
        assert_eq!(total(&t), counts(2, 2, 0));
        assert_eq!(failures(&t).len(), 2);

        // ... or before its program printed anything.
        let t = parse_kselftest(
            "TAP version 13\n1..2\n# timeout set to 45\n# selftests: mm: gup_test\n",
        );
        let want = "\
selftests: mm: gup_test Incomplete [no result line]
(1 not reported) Incomplete [expected 2 results, got 1]
";
        assert_eq!(show(&t), want);
    }

    #[test]
    fn printk_prefixes() {
        for line in [
            "[    1.234567]     ok 1 x",
            "<6>[    1.234567]     ok 1 x",
            "[    1.234567][    T1]     ok 1 x",
            "[ 1234.000001] [  C0]     ok 1 x\r",
            "    ok 1 x",
        ] {
            assert_eq!(strip_printk(line), "    ok 1 x", "{line:?}");
        }
        assert_eq!(strip_printk("[drm] Initialized"), "[drm] Initialized");
    }
}
