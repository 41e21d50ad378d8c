//! The redaction filter: the one pass every problem member rendered from upstream data goes
//! through (detail, instance, vendor_code, vendor_request_id, and every string inside the
//! extensions), whatever the rule that rendered it.
//!
//! What it does, in order:
//!
//! 1. Removes stack frames and trace markers, each with the line break and indentation before
//!    it, so the message they followed stays whole:
//!    - .NET and Java frames: `at Namespace.Type.Method(...)` (with a trailing
//!      ` in C:\x\y.cs:line 12` or ` ~[app.jar:1.0]`), wherever they stand, on their own line or
//!      flattened into one; a lone ` in C:\x\y.cs:line 12`;
//!      `--- End of inner exception stack trace ---` and the other `--- End of ... ---` markers;
//!      ` ---> Inner.Exception: ...` to the end of its line; `... 12 more` and
//!      `... 12 common frames omitted`; `Caused by: ...` and `Suppressed: ...` lines.
//!    - Python: `Traceback (most recent call last):`, each `File "x.py", line 3, in f` with the
//!      indented source line under it, the chained-exception sentences ("During handling of
//!      the above exception...", "The above exception was the direct cause...").
//!    - Go: `goroutine 1 [running]:`, function lines followed by their `\t/path/x.go:12 +0x1d`
//!      line, `created by ...` lines, `[signal ...]` lines, and any other `/path/x.go:12`.
//! 2. Removes an exception type name that starts a line followed by `: ` (keeping the message):
//!    qualified names ending in Exception, Error or Throwable (`System.NullReferenceException: `,
//!    `java.lang.NullPointerException: `); after a Python traceback also bare ones
//!    (`ValueError: `); Go's `panic: ` prefix.
//! 3. Replaces any other qualified exception type name, and every match of the operator's
//!    `patterns`, with the `replacement` text (default `[redacted]`).
//! 4. If anything above matched: trims the end of each line, drops the empty lines, trims the
//!    whole; a member left empty becomes the replacement text. The member counts as redacted.
//! 5. Always (counted or not): removes the C0 control characters other than tab, LF and CR,
//!    and DEL, which XML 1.0 forbids even escaped and which no client should see.
//!
//! The builtin set can be turned off (`builtin: false`); the control-character pass cannot.

use std::borrow::Cow;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::Value;

use super::problem::ProblemBody;

/// The text that stands in for what was replaced, by default.
pub const DEFAULT_REPLACEMENT: &str = "[redacted]";

/// A qualified exception type name (at least one dot), e.g. `System.IO.IOException`.
const QUALIFIED_TYPE: &str = r"(?:[A-Za-z_][\w$]*\.)+[\w$]*(?:Exception|Error|Throwable)";

struct Builtin {
    /// Any of the patterns below: one scan that lets ordinary messages through untouched.
    any: Regex,
    /// Removed outright (step 1 and 2).
    remove: Vec<Regex>,
    /// Removed when the text held a Python traceback.
    python_names: Regex,
    python_marker: Regex,
    /// Replaced (step 3).
    types: Regex,
}

fn builtin() -> &'static Builtin {
    static BUILTIN: OnceLock<Builtin> = OnceLock::new();
    BUILTIN.get_or_init(|| {
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("builtin redaction pattern {s}: {e}"));
        // Ends a removed line: its line break, or the end of the text.
        const EOL: &str = r"[ \t]*(?:\r?\n|$)";
        let remove: Vec<Regex> = vec![
                // Python.
                re(&format!(r"(?m)^[ \t]*Traceback \(most recent call last\):{EOL}")),
                re(&format!(
                    r#"(?m)^[ \t]*File "[^"\r\n]*", line \d+(?:, in [^\r\n]*)?(?:\r?\n[ \t]{{4,}}[^\r\n]*)?{EOL}"#
                )),
                re(&format!(
                    r"(?m)^[ \t]*(?:During handling of the above exception, another exception occurred|The above exception was the direct cause of the following exception):{EOL}"
                )),
                // Go.
                re(&format!(r"(?m)^[ \t]*goroutine \d+ \[[^\]\r\n]*\]:{EOL}")),
                re(&format!(
                    r"(?m)^[^\s(][^\r\n]*\([^\r\n]*\)[ \t]*\r?\n[ \t]+[^\r\n]*\.go:\d+(?: \+0x[0-9a-fA-F]+)?{EOL}"
                )),
                re(&format!(
                    r"(?m)^[ \t]*created by [^\r\n]*(?:\r?\n[ \t]+[^\r\n]*\.go:\d+(?: \+0x[0-9a-fA-F]+)?)?{EOL}"
                )),
                re(&format!(r"(?m)^[ \t]*\[signal [^\]\r\n]*\]{EOL}")),
                re(r"[ \t]*[^\s]*\.go:\d+(?: \+0x[0-9a-fA-F]+)?"),
                re(r"(?m)^[ \t]*panic: (?:\[recovered\] )?"),
                // .NET and Java frames, with the break and indentation before them.
                re(r"(?:(?:\r?\n)?[ \t]+|^|\r?\n)at (?:[\w$<>`+\[\]/@~-]+\.)+[\w$<>`+~-]+(?:\[[^\]\r\n]*\])?\([^()\r\n]*\)(?: in [^\r\n]*?:line \d+)?(?: ~?\[[^\]\r\n]*\])?"),
                re(r"[ \t]+in (?:[A-Za-z]:)?[\\/][^\r\n]*?:line \d+"),
                re(r"(?:\r?\n)?[ \t]*--- End of [^\r\n]*?---"),
                re(r"[ \t]*--->[^\r\n]*"),
                re(r"(?:\r?\n)?[ \t]*\.\.\. \d+ (?:more|common frames omitted)"),
                re(r"(?:\r?\n)?[ \t]*(?:Caused by|Suppressed): [^\r\n]*"),
                // A type name opening a line, with its colon: the message after it stays.
                re(&format!(r"(?m)^[ \t]*{QUALIFIED_TYPE}:[ \t]*")),
        ];
        let types = re(&format!(r"\b{QUALIFIED_TYPE}\b"));
        let all: Vec<String> = remove
            .iter()
            .chain([&types])
            .map(|r| format!("(?:{})", r.as_str()))
            .collect();
        Builtin {
            any: re(&all.join("|")),
            remove,
            python_names: re(
                r"(?m)^[ \t]*[A-Za-z_][\w.]*(?:Error|Exception|Warning|Exit|Interrupt|StopIteration):[ \t]*",
            ),
            python_marker: re(r"Traceback \(most recent call last\):"),
            types,
        }
    })
}

/// The compiled filter, one per canonical profile.
#[derive(Debug, Clone)]
pub struct Redaction {
    builtin: bool,
    patterns: Vec<Regex>,
    replacement: String,
}

impl Default for Redaction {
    fn default() -> Self {
        Redaction {
            builtin: true,
            patterns: Vec::new(),
            replacement: DEFAULT_REPLACEMENT.to_owned(),
        }
    }
}

/// An operator pattern that does not compile: its index in `patterns` and the regex error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redaction pattern {index}: {message}")]
pub struct PatternError {
    pub index: usize,
    pub message: String,
}

impl Redaction {
    /// Compiles the operator's settings; every bad pattern is reported.
    pub fn compile(
        builtin: bool,
        patterns: &[&str],
        replacement: Option<&str>,
    ) -> Result<Redaction, Vec<PatternError>> {
        let mut compiled = Vec::new();
        let mut errors = Vec::new();
        for (index, p) in patterns.iter().enumerate() {
            match regex::RegexBuilder::new(p).size_limit(1 << 20).build() {
                Ok(r) => compiled.push(r),
                Err(e) => errors.push(PatternError {
                    index,
                    message: e.to_string(),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Redaction {
            builtin,
            patterns: compiled,
            replacement: strip_controls(replacement.unwrap_or(DEFAULT_REPLACEMENT)).into_owned(),
        })
    }

    /// The filtered text and whether a redaction pattern matched (control characters alone do
    /// not count).
    pub fn filter<'s>(&self, s: &'s str) -> (Cow<'s, str>, bool) {
        let mut text = Cow::Borrowed(s);
        let mut redacted = false;
        let mut apply = |text: &mut Cow<'s, str>, re: &Regex, with: &str| {
            if re.is_match(text) {
                *text = Cow::Owned(re.replace_all(text, regex::NoExpand(with)).into_owned());
                redacted = true;
            }
        };
        if self.builtin && may_match_builtin(s) && builtin().any.is_match(s) {
            let b = builtin();
            let python = b.python_marker.is_match(s);
            for re in &b.remove {
                apply(&mut text, re, "");
            }
            if python {
                apply(&mut text, &b.python_names, "");
            }
            apply(&mut text, &b.types, &self.replacement);
        }
        for re in &self.patterns {
            apply(&mut text, re, &self.replacement);
        }
        if redacted {
            let tidy: Vec<&str> = text
                .lines()
                .map(str::trim_end)
                .filter(|l| !l.trim().is_empty())
                .collect();
            let tidy = tidy.join("\n");
            let tidy = tidy.trim();
            text = Cow::Owned(if tidy.is_empty() {
                self.replacement.clone()
            } else {
                tidy.to_owned()
            });
        }
        let text = match strip_controls(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(o) => Cow::Owned(o),
        };
        (text, redacted)
    }

    fn member(&self, s: &mut String) -> bool {
        let (out, redacted) = self.filter(s);
        if let Cow::Owned(o) = out {
            *s = o;
        }
        redacted
    }

    /// Filters every string in a JSON value (an extension member, an example body); true if a
    /// redaction pattern matched one.
    pub fn value(&self, v: &mut Value) -> bool {
        match v {
            Value::String(s) => self.member(s),
            Value::Array(items) => items.iter_mut().fold(false, |any, i| self.value(i) | any),
            Value::Object(map) => map.values_mut().fold(false, |any, i| self.value(i) | any),
            _ => false,
        }
    }

    /// Filters the members of a problem that come from upstream data; returns how many a
    /// redaction pattern changed (each extension counts once, however many strings it holds).
    pub fn problem(&self, p: &mut ProblemBody) -> u32 {
        let mut count = 0;
        for s in [
            &mut p.detail,
            &mut p.instance,
            &mut p.vendor_code,
            &mut p.vendor_request_id,
        ]
        .into_iter()
        .flatten()
        {
            count += u32::from(self.member(s));
        }
        for (_, v) in &mut p.extensions {
            count += u32::from(self.value(v));
        }
        count
    }
}

/// A necessary condition for the builtin patterns, cheaper than the regex for the short
/// codes and ids that fill most problem members: every builtin pattern needs a space or tab,
/// except a qualified type name (`Exception`, `Error`, `Throwable`), a Go file position
/// (`.go:`) and `--->`.
fn may_match_builtin(s: &str) -> bool {
    let b = s.as_bytes();
    memchr::memchr2(b' ', b'\t', b).is_some()
        || ["Exception", "Error", "Throwable", ".go:", "--->"]
            .iter()
            .any(|lit| memchr::memmem::find(b, lit.as_bytes()).is_some())
}

/// Removes C0 controls other than tab, LF and CR, and DEL.
pub fn strip_controls(s: &str) -> Cow<'_, str> {
    let bad = |c: char| (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{7f}';
    // Controls are ASCII, and no byte of a multi-byte UTF-8 sequence is below 0x80: a byte
    // scan (vectorized) finds them exactly.
    let bad_byte = |b: u8| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f;
    if s.bytes().any(bad_byte) {
        Cow::Owned(s.chars().filter(|&c| !bad(c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_without_blanks_are_still_filtered_where_a_pattern_needs_no_blank() {
        assert_eq!(clean("EndPoint.0022"), ("EndPoint.0022".to_owned(), false));
        for s in [
            "System.NullReferenceException",
            "com.x.BadThingError",
            "main.go:12",
            "x--->y",
        ] {
            assert!(clean(s).1, "{s}");
        }
    }

    fn clean(s: &str) -> (String, bool) {
        let (t, r) = Redaction::default().filter(s);
        (t.into_owned(), r)
    }

    #[test]
    fn dotnet_frames_markers_and_type_names_are_removed() {
        let s = "System.NullReferenceException: Object reference not set to an instance of an object.\r\n   at Veeam.Backup.Core.CJob.Run(Guid id, String name) in C:\\src\\Veeam\\CJob.cs:line 212\r\n   at Veeam.Backup.Core.CJob.<>c__DisplayClass5_0.<Start>b__0()\r\n--- End of inner exception stack trace ---\r\n   at System.Threading.Tasks.Task`1.InnerInvoke()\r\n--- End of stack trace from previous location ---";
        assert_eq!(
            clean(s),
            ("Object reference not set to an instance of an object.".into(), true)
        );
        assert_eq!(
            clean("Save failed ---> System.IO.IOException: disk full").0,
            "Save failed"
        );
        assert_eq!(
            clean("Failed at Veeam.Backup.Foo.Bar() in C:\\x\\y.cs:line 12 today").0,
            "Failed today"
        );
        assert_eq!(clean("Failed in C:\\x\\y.cs:line 12").0, "Failed");
        assert_eq!(
            clean("Exception of type 'System.OutOfMemoryException' was thrown.").0,
            "Exception of type '[redacted]' was thrown."
        );
    }

    #[test]
    fn java_frames_causes_and_type_names_are_removed() {
        let s = "java.lang.NullPointerException: name is null\n\tat com.example.Foo.bar(Foo.java:12)\n\tat com.example.Foo$Inner.lambda$run$0(Foo.java:40) ~[app.jar:1.0]\n\tat java.base/java.lang.Thread.run(Thread.java:833)\nCaused by: java.io.IOException: closed\n\tat sun.nio.ch.Net.poll(Native Method)\n\t... 12 more";
        assert_eq!(clean(s), ("name is null".into(), true));
        assert_eq!(clean("java.lang.NullPointerException").0, "[redacted]");
        assert_eq!(
            clean("wrapped java.lang.IllegalStateException here").0,
            "wrapped [redacted] here"
        );
    }

    #[test]
    fn python_tracebacks_and_their_exception_names_are_removed() {
        let s = "Traceback (most recent call last):\n  File \"/app/main.py\", line 3, in <module>\n    run()\n  File \"/app/run.py\", line 9, in run\n    raise ValueError(\"bad value\")\nValueError: bad value";
        assert_eq!(clean(s), ("bad value".into(), true));
        assert_eq!(
            clean("ValueError: bad value"),
            ("ValueError: bad value".into(), false),
            "a bare name without a traceback is kept"
        );
    }

    #[test]
    fn go_panics_and_goroutine_dumps_are_removed() {
        let s = "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a2b3c]\n\ngoroutine 1 [running]:\nmain.(*Server).handle(0xc000010000, {0x0, 0x0})\n\t/src/app/server.go:42 +0x1d\nmain.main()\n\t/src/app/main.go:12 +0x25\ncreated by net/http.(*Server).Serve in goroutine 1\n\t/usr/local/go/src/net/http/server.go:3285 +0x4b4";
        assert_eq!(
            clean(s),
            (
                "runtime error: invalid memory address or nil pointer dereference".into(),
                true
            )
        );
        assert_eq!(clean("failed at /src/app/x.go:12 +0x1d").0, "failed at");
    }

    #[test]
    fn ordinary_messages_pass_unchanged() {
        for s in [
            "There is an error in XML document (1, 1).",
            "Object reference not set to an instance of an object.",
            "The number of requests exceeded the limit. Please try later.",
            "Node [root] does not exist.",
            "Policy validation failed",
            "EndPoint.0022",
            "Meet at 10. Bring the tenant.",
            "ORA-01403: no data found",
        ] {
            let (out, r) = Redaction::default().filter(s);
            assert!(matches!(out, Cow::Borrowed(_)), "{s}");
            assert!(!r, "{s}");
        }
    }

    #[test]
    fn control_characters_go_and_tab_lf_cr_stay() {
        assert_eq!(
            clean("a\u{1}b\u{1b}[31mc\u{7f}\td\r\ne"),
            ("ab[31mc\td\r\ne".into(), false)
        );
    }

    #[test]
    fn operator_patterns_replace_and_builtin_can_be_off() {
        let r = Redaction::compile(false, &[r"secret-\d+", r"\$\{x\}"], Some("<$1>")).unwrap();
        let (out, hit) = r.filter("key secret-42 and ${x}, java.lang.Error: kept");
        assert_eq!(out, "key <$1> and <$1>, java.lang.Error: kept");
        assert!(hit);
        let err = Redaction::compile(true, &["ok", "(unclosed"], None).unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].index, 1);
    }

    #[test]
    fn problem_members_and_nested_extensions_are_counted_once_each() {
        let mut p = ProblemBody {
            type_uri: "about:blank".into(),
            title: "t".into(),
            status: 500,
            detail: Some("java.lang.Error: x\n\tat a.B.c(B.java:1)".into()),
            instance: Some("/x".into()),
            upstream_status: Some(500),
            vendor_code: Some("E\u{1}1".into()),
            request_id: "r".into(),
            vendor_request_id: None,
            origin: crate::Origin::Upstream,
            retryable: false,
            extensions: vec![(
                "causes".into(),
                serde_json::json!([{"m": "at a.B.c(B.java:1)"}, {"m": "System.IO.IOException: y"}]),
            )],
        };
        assert_eq!(Redaction::default().problem(&mut p), 2);
        assert_eq!(p.detail.as_deref(), Some("x"));
        assert_eq!(p.vendor_code.as_deref(), Some("E1"));
        assert_eq!(p.extensions[0].1, serde_json::json!([{"m": "[redacted]"}, {"m": "y"}]));
    }
}
