//! Compiled conditions on single values: status specs, methods, path globs, media types and
//! value matchers (equals / one-of / regex / exists). Matching never allocates.

use regex::Regex;

use crate::spec::ValueMatch;

/// Why a value matcher does not compile; each has its own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("give exactly one of equals, one_of, regex, exists")]
    NotExactlyOne,
    #[error("one_of needs at least one value")]
    EmptyOneOf,
    #[error("invalid regex: {0}")]
    Regex(String),
}

/// A compiled value matcher. `None` input means "absent".
#[derive(Debug, Clone)]
pub enum Matcher {
    Equals { value: String, ignore_case: bool },
    OneOf { values: Vec<String>, ignore_case: bool },
    Regex(Regex),
    Exists(bool),
}

impl Matcher {
    pub fn compile(raw: &ValueMatch) -> Result<Matcher, MatcherError> {
        let ops = [
            raw.equals.is_some(),
            raw.one_of.is_some(),
            raw.regex.is_some(),
            raw.exists.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if ops != 1 {
            return Err(MatcherError::NotExactlyOne);
        }
        if let Some(v) = &raw.equals {
            return Ok(Matcher::Equals {
                value: v.clone(),
                ignore_case: raw.ignore_case,
            });
        }
        if let Some(vs) = &raw.one_of {
            if vs.is_empty() {
                return Err(MatcherError::EmptyOneOf);
            }
            return Ok(Matcher::OneOf {
                values: vs.clone(),
                ignore_case: raw.ignore_case,
            });
        }
        if let Some(r) = &raw.regex {
            let pattern = if raw.ignore_case { format!("(?i){r}") } else { r.clone() };
            return Regex::new(&pattern)
                .map(Matcher::Regex)
                .map_err(|e| MatcherError::Regex(e.to_string()));
        }
        Ok(Matcher::Exists(raw.exists.unwrap_or(true)))
    }

    pub fn matches(&self, v: Option<&str>) -> bool {
        match (self, v) {
            (Matcher::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Matcher::Equals { value, ignore_case }, Some(v)) => eq(value, v, *ignore_case),
            (Matcher::OneOf { values, ignore_case }, Some(v)) => values.iter().any(|x| eq(x, v, *ignore_case)),
            (Matcher::Regex(r), Some(v)) => r.is_match(v),
        }
    }
}

/// What the matcher wants, as a trace shows it: `EndPoint.0022 (ignore_case)`, `one of a, b`,
/// `regex ^APIGW\.`, `present`, `absent`.
impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let case = |f: &mut std::fmt::Formatter<'_>, ignore_case: bool| {
            if ignore_case {
                f.write_str(" (ignore_case)")
            } else {
                Ok(())
            }
        };
        match self {
            Matcher::Equals { value, ignore_case } => {
                f.write_str(value)?;
                case(f, *ignore_case)
            }
            Matcher::OneOf { values, ignore_case } => {
                write!(f, "one of {}", values.join(", "))?;
                case(f, *ignore_case)
            }
            // `ignore_case` compiled as a `(?i)` prefix: shown as written.
            Matcher::Regex(r) => match r.as_str().strip_prefix("(?i)") {
                Some(pattern) => write!(f, "regex {pattern} (ignore_case)"),
                None => write!(f, "regex {}", r.as_str()),
            },
            Matcher::Exists(true) => f.write_str("present"),
            Matcher::Exists(false) => f.write_str("absent"),
        }
    }
}

fn eq(a: &str, b: &str, ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

/// Status condition: codes and classes; empty = any.
#[derive(Debug, Clone, Default)]
pub struct StatusSet {
    pub codes: Vec<u16>,
    pub classes: Vec<u8>,
}

impl StatusSet {
    pub fn is_any(&self) -> bool {
        self.codes.is_empty() && self.classes.is_empty()
    }

    pub fn contains(&self, status: u16) -> bool {
        self.is_any() || self.codes.contains(&status) || self.classes.contains(&((status / 100) as u8))
    }
}

/// `404, 5xx` (or `any`), as the rule's `when.status` wrote it.
impl std::fmt::Display for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_any() {
            return f.write_str("any");
        }
        let codes = self.codes.iter().map(u16::to_string);
        let classes = self.classes.iter().map(|c| format!("{c}xx"));
        f.write_str(&codes.chain(classes).collect::<Vec<_>>().join(", "))
    }
}

/// Why a path glob does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GlobError {
    #[error("`{0}` must start with /")]
    NotAbsolute(String),
    #[error("{0}")]
    Regex(String),
}

/// A `content_type` pattern that is not a media type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a media type like application/json")]
pub struct MediaError(pub String);

/// `/v1/*/vpc-endpoints/**`: `*` is one segment, `**` is any remainder.
#[derive(Debug, Clone)]
pub struct PathGlob {
    re: Regex,
    glob: String,
}

impl PathGlob {
    pub fn compile(glob: &str) -> Result<PathGlob, GlobError> {
        if !glob.starts_with('/') {
            return Err(GlobError::NotAbsolute(glob.to_owned()));
        }
        let mut re = String::from("^");
        let mut rest = glob;
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix("**") {
                re.push_str(".*");
                rest = r;
            } else if let Some(r) = rest.strip_prefix('*') {
                re.push_str("[^/]*");
                rest = r;
            } else {
                let end = rest.find('*').unwrap_or(rest.len());
                re.push_str(&regex::escape(&rest[..end]));
                rest = &rest[end..];
            }
        }
        re.push('$');
        Regex::new(&re)
            .map(|re| PathGlob {
                re,
                glob: glob.to_owned(),
            })
            .map_err(|e| GlobError::Regex(e.to_string()))
    }

    pub fn matches(&self, path: &str) -> bool {
        self.re.is_match(path)
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.glob
    }
}

/// `application/json`, `*/xml`, `application/*+json`, `text/*`.
#[derive(Debug, Clone)]
pub struct MediaPattern {
    main: String,
    sub: String,
}

impl std::fmt::Display for MediaPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.main, self.sub)
    }
}

impl MediaPattern {
    pub fn compile(p: &str) -> Result<MediaPattern, MediaError> {
        let p = p.trim().to_ascii_lowercase();
        let Some((main, sub)) = p.split_once('/') else {
            return Err(MediaError(p));
        };
        if main.is_empty() || sub.is_empty() {
            return Err(MediaError(p));
        }
        Ok(MediaPattern {
            main: main.into(),
            sub: sub.into(),
        })
    }

    /// `content_type` is the raw header value (parameters allowed).
    pub fn matches(&self, content_type: &str) -> bool {
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let Some((main, sub)) = essence.split_once('/') else {
            return false;
        };
        let main_ok = self.main == "*" || self.main.eq_ignore_ascii_case(main);
        let sub_ok = if self.sub == "*" {
            true
        } else if let Some(suffix) = self.sub.strip_prefix("*+") {
            // `*+json` matches `problem+json` and also plain `json`
            sub.eq_ignore_ascii_case(suffix)
                || (sub.len() > suffix.len() + 1
                    && sub.as_bytes()[sub.len() - suffix.len() - 1] == b'+'
                    && sub[sub.len() - suffix.len()..].eq_ignore_ascii_case(suffix))
        } else {
            self.sub.eq_ignore_ascii_case(sub)
        };
        main_ok && sub_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(f: impl FnOnce(&mut ValueMatch)) -> Matcher {
        let mut v = ValueMatch::default();
        f(&mut v);
        Matcher::compile(&v).unwrap()
    }

    #[test]
    fn value_matchers() {
        let m = vm(|v| {
            v.equals = Some("EndPoint.0022".into());
            v.ignore_case = true
        });
        assert!(m.matches(Some("Endpoint.0022")));
        assert!(!m.matches(Some("EndPoint.0023")));
        assert!(!m.matches(None));
        let m = vm(|v| v.one_of = Some(vec!["a".into(), "b".into()]));
        assert!(m.matches(Some("b")) && !m.matches(Some("B")));
        let m = vm(|v| v.regex = Some("^APIGW\\.".into()));
        assert!(m.matches(Some("APIGW.0101")) && !m.matches(Some("EndPoint.1")));
        let m = vm(|v| v.exists = Some(false));
        assert!(m.matches(None) && !m.matches(Some("")));
        assert_eq!(m.to_string(), "absent");
        let m = vm(|v| {
            v.one_of = Some(vec!["a".into(), "b".into()]);
            v.ignore_case = true
        });
        assert_eq!(m.to_string(), "one of a, b (ignore_case)");
        assert_eq!(vm(|v| v.regex = Some("^x".into())).to_string(), "regex ^x");
        let m = vm(|v| {
            v.regex = Some("^x".into());
            v.ignore_case = true
        });
        assert_eq!(m.to_string(), "regex ^x (ignore_case)");
        let both = ValueMatch {
            equals: Some("x".into()),
            regex: Some("y".into()),
            ..Default::default()
        };
        assert!(Matcher::compile(&both).is_err());
        let bad_regex = ValueMatch {
            regex: Some("(".into()),
            ..Default::default()
        };
        assert!(Matcher::compile(&bad_regex).is_err());
    }

    #[test]
    fn globs() {
        let g = PathGlob::compile("/v1/*/vpc-endpoints").unwrap();
        assert!(g.matches("/v1/p1/vpc-endpoints"));
        assert!(!g.matches("/v1/p1/x/vpc-endpoints"));
        let g = PathGlob::compile("/api/**").unwrap();
        assert!(g.matches("/api/tasks/task-1"));
        assert!(!g.matches("/apix"));
        assert!(PathGlob::compile("api").is_err());
    }

    /// Every example of docs/configuration.md's paragraph on `path:` globs.
    #[test]
    fn globs_as_documented() {
        let cases: &[(&str, &str, bool)] = &[
            ("/v1/*/x", "/v1/p/x", true),
            ("/v1/*/x", "/v1/p/q/x", false),
            ("/files/*.json", "/files/a.json", true),
            ("/api/**", "/api/", true),
            ("/api/**", "/api/x/y", true),
            ("/api/**", "/api", false),
            ("/api/**", "/apix", false),
            ("/a/**/b", "/a/x/y/b", true),
            ("/a/**/b", "/a/b", false),
            ("/a**", "/a", true),
            ("/a**", "/ab", true),
            ("/a**", "/a/b", true),
            ("/API/*", "/api/x", false),
        ];
        for (glob, path, want) in cases {
            assert_eq!(PathGlob::compile(glob).unwrap().matches(path), *want, "{glob} ~ {path}");
        }
    }

    #[test]
    fn media_types() {
        let p = MediaPattern::compile("application/*+json").unwrap();
        assert!(p.matches("application/problem+json; charset=utf-8"));
        assert!(p.matches("application/json"));
        assert!(!p.matches("application/xml"));
        assert!(MediaPattern::compile("*/xml").unwrap().matches("text/xml"));
        assert!(MediaPattern::compile("json").is_err());
    }

    #[test]
    fn status_sets() {
        let s = StatusSet {
            codes: vec![404],
            classes: vec![5],
        };
        assert!(s.contains(404) && s.contains(503) && !s.contains(400));
        assert!(StatusSet::default().contains(200));
        assert_eq!(s.to_string(), "404, 5xx");
        assert_eq!(StatusSet::default().to_string(), "any");
    }
}
