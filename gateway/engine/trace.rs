//! The rule trace (`statusgate explain --trace`, and the examples gate when an example fails):
//! for each rule of a profile, in order, whether it was a candidate for the status, the first
//! condition that failed with the value it saw, or that it matched; then the decision.
//!
//! It is written by the live matcher: `CompiledProfile::evaluate` takes an optional
//! `&mut RuleTrace` and records what its own condition checks returned, so the trace cannot
//! drift from what the proxy does. The proxy passes none: then nothing here runs and nothing is
//! allocated ([`Failed`] borrows everything it shows and is only formatted into a trace).

use std::borrow::Cow;
use std::fmt;

use http::HeaderName;

use crate::matcher::{Matcher, MediaPattern, StatusSet};
use crate::BodySkip;

/// The first condition of a rule that did not hold, with the value it saw.
#[derive(Debug)]
pub enum Failed<'a> {
    Method {
        seen: &'a str,
        wanted: &'a [String],
    },
    Path {
        seen: &'a str,
        glob: &'a str,
    },
    PathPrefix {
        seen: &'a str,
        prefix: &'a str,
    },
    RequestHeader {
        name: &'a HeaderName,
        seen: Option<&'a str>,
        wanted: &'a Matcher,
    },
    Header {
        name: &'a HeaderName,
        seen: Option<&'a str>,
        wanted: &'a Matcher,
    },
    ContentType {
        seen: &'a str,
        wanted: &'a [MediaPattern],
    },
    Json {
        path: &'a str,
        seen: Option<Cow<'a, str>>,
        wanted: &'a Matcher,
    },
    Xml {
        path: &'a str,
        seen: Option<&'a str>,
        wanted: &'a Matcher,
    },
    /// A body condition (`json`/`xml` at `key`) with no body to read: not read (no rule
    /// before it needed the body, a bodyless response) or skipped for `skip`.
    NoBody {
        key: &'static str,
        path: &'a str,
        skip: Option<BodySkip>,
    },
}

/// `"value"` (escaped as Rust writes strings, so control characters show) or `(absent)`.
struct Seen<'s>(Option<&'s str>);

impl fmt::Display for Seen<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v:?}"),
            None => f.write_str("(absent)"),
        }
    }
}

impl fmt::Display for Failed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failed::Method { seen, wanted } => write!(f, "method = {seen:?}, wanted {}", wanted.join(", ")),
            Failed::Path { seen, glob } => write!(f, "path = {seen:?}, wanted glob {glob}"),
            Failed::PathPrefix { seen, prefix } => write!(f, "path = {seen:?}, wanted prefix {prefix}"),
            Failed::RequestHeader { name, seen, wanted } => {
                write!(f, "request header {name} = {}, wanted {wanted}", Seen(*seen))
            }
            Failed::Header { name, seen, wanted } => write!(f, "header {name} = {}, wanted {wanted}", Seen(*seen)),
            Failed::ContentType { seen, wanted } => {
                write!(f, "content_type = {seen:?}, wanted ")?;
                for (i, p) in wanted.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                Ok(())
            }
            Failed::Json { path, seen, wanted } => {
                write!(f, "json {path} = {}, wanted {wanted}", Seen(seen.as_deref()))
            }
            Failed::Xml { path, seen, wanted } => write!(f, "xml {path} = {}, wanted {wanted}", Seen(*seen)),
            Failed::NoBody { key, path, skip } => match skip {
                Some(s) => write!(f, "{key} {path}: the body was not used ({})", s.name()),
                None => write!(f, "{key} {path}: the body was not read"),
            },
        }
    }
}

/// What happened to one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Its `when.status` does not hold for the upstream status.
    NotCandidate {
        status: u16,
        wanted: String,
    },
    /// A candidate whose first failing condition is this (formatted [`Failed`]).
    Failed(String),
    Matched,
    /// A candidate after the rule that matched: never looked at.
    NotEvaluated {
        matched: String,
    },
}

/// One response's trace through a profile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleTrace {
    /// Every rule of the profile, in order, with what happened to it.
    pub steps: Vec<(String, Step)>,
    /// The decision, as `decision: ...` prints it.
    pub decision: String,
}

impl RuleTrace {
    /// Starts a trace for `status`: every rule a non-candidate, the candidates not yet looked at.
    pub(crate) fn begin<'r>(
        &mut self,
        status: u16,
        rules: impl Iterator<Item = (&'r str, &'r StatusSet)>,
        candidates: &[u32],
    ) {
        self.steps = rules
            .map(|(name, set)| {
                (
                    name.to_owned(),
                    Step::NotCandidate {
                        status,
                        wanted: set.to_string(),
                    },
                )
            })
            .collect();
        for &i in candidates {
            if let Some(s) = self.steps.get_mut(i as usize) {
                s.1 = Step::NotEvaluated { matched: String::new() };
            }
        }
    }

    pub(crate) fn failed(&mut self, index: usize, why: &Failed<'_>) {
        if let Some(s) = self.steps.get_mut(index) {
            s.1 = Step::Failed(why.to_string());
        }
    }

    /// Records the match (or none) and the decision line.
    pub(crate) fn decide(&mut self, matched: Option<usize>, status: u16, reason: &str) {
        match matched {
            Some(i) => {
                let name = self.steps.get(i).map(|s| s.0.clone()).unwrap_or_default();
                for (j, s) in self.steps.iter_mut().enumerate() {
                    if j == i {
                        s.1 = Step::Matched;
                    } else if let Step::NotEvaluated { matched } = &mut s.1 {
                        matched.clone_from(&name);
                    }
                }
                self.decision = format!("decision: rule {name} -> {status} {reason}");
            }
            None => self.decision = format!("decision: no rule matched, canonical defaults -> {status} {reason}"),
        }
    }

    /// One line per rule, then the decision line.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .steps
            .iter()
            .map(|(name, step)| match step {
                Step::NotCandidate { status, wanted } => {
                    format!("rule {name}: not a candidate for status {status} (when.status: {wanted})")
                }
                Step::Failed(why) => format!("rule {name}: {why}"),
                Step::Matched => format!("rule {name}: matched"),
                Step::NotEvaluated { matched } => format!("rule {name}: not evaluated (rule {matched} matched first)"),
            })
            .collect();
        out.push(self.decision.clone());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::ValueMatch;

    #[test]
    fn a_failed_condition_shows_the_value_seen_and_the_matcher_wanted() {
        let m = Matcher::compile(&ValueMatch {
            equals: Some("EndPoint.0022".into()),
            ignore_case: true,
            ..Default::default()
        })
        .unwrap();
        let f = Failed::Json {
            path: "/error_code",
            seen: Some(Cow::Borrowed("EndPoint.0023")),
            wanted: &m,
        };
        assert_eq!(
            f.to_string(),
            r#"json /error_code = "EndPoint.0023", wanted EndPoint.0022 (ignore_case)"#
        );
        let name = HeaderName::from_static("x-kind");
        let absent = Failed::Header {
            name: &name,
            seen: None,
            wanted: &m,
        };
        assert_eq!(
            absent.to_string(),
            "header x-kind = (absent), wanted EndPoint.0022 (ignore_case)"
        );
        let crlf = Failed::RequestHeader {
            name: &name,
            seen: Some("a\r\nb"),
            wanted: &m,
        };
        assert_eq!(
            crlf.to_string(),
            r#"request header x-kind = "a\r\nb", wanted EndPoint.0022 (ignore_case)"#,
            "control characters are escaped, one line per rule"
        );
        let skipped = Failed::NoBody {
            key: "xml",
            path: "Error/Code",
            skip: Some(BodySkip::OverCap),
        };
        assert_eq!(skipped.to_string(), "xml Error/Code: the body was not used (over_cap)");
    }
}
