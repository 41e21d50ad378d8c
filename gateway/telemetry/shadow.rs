//! Shadow profiles' record: for one route of the serving snapshot, how many upstream responses
//! its shadow profile was compared on, how often and how (active code -> shadow code) the two
//! decisions diverged, and the last few divergent requests with both decisions, for the admin's
//! `GET /-/shadow`. The proxy compares (after the client's response is written) and calls
//! `ShadowStats::compared`; what counts as a divergence is `DecisionView::diverges`. The store
//! is bounded: pairs by the canonical set (codes outside it are `0`, "other"), the recent list
//! by `RECENT`. It lives as long as the snapshot it was made for: a reload starts a new one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::{json, Value};

use crate::engine::{BodyPlan, Decision, HeaderEdit};

/// Divergent requests kept per route, newest last.
pub const RECENT: usize = 16;
/// One divergence in `LOG_EVERY` is logged (the first one included), with its request id.
pub const LOG_EVERY: u64 = 100;

/// What a decision amounts to for comparison: final status, rule, problem type and the headers
/// it sets (`set`/`add`/`remove` edits, listed as text and sorted in `GET /-/shadow`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionView {
    pub status: u16,
    pub rule: Option<String>,
    pub problem_type: Option<String>,
    /// The edits as decided: put into words only when the record is listed.
    pub headers: Vec<HeaderEdit>,
}

fn problem_type<'a>(d: &'a Decision<'_>) -> Option<&'a str> {
    match &d.body {
        BodyPlan::Problem(p) => Some(&p.type_uri),
        BodyPlan::Passthrough => None,
    }
}

fn edit_text(e: &HeaderEdit) -> String {
    let value = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    match e {
        HeaderEdit::Set(n, v) => format!("set {n}: {}", value(v)),
        HeaderEdit::Append(n, v) => format!("add {n}: {}", value(v)),
        HeaderEdit::Remove(n) => format!("remove {n}"),
    }
}

impl DecisionView {
    /// Whether two decisions differ in status, rule, problem type or header edits (in any
    /// order). Allocates nothing.
    pub fn diverges(active: &Decision<'_>, shadow: &Decision<'_>) -> bool {
        active.status != shadow.status
            || active.rule != shadow.rule
            || problem_type(active) != problem_type(shadow)
            || active.headers.len() != shadow.headers.len()
            || !active.headers.iter().all(|e| shadow.headers.contains(e))
    }

    /// Takes what it keeps out of the decision (the problem type and the edits move, nothing
    /// is put into words until listed).
    pub fn of(d: Decision<'_>) -> DecisionView {
        DecisionView {
            status: d.status,
            rule: d.rule.map(str::to_owned),
            problem_type: match d.body {
                BodyPlan::Problem(p) => Some(p.type_uri),
                BodyPlan::Passthrough => None,
            },
            headers: d.headers,
        }
    }

    /// The edits as text (`set name: value`, `add ...`, `remove name`), sorted.
    pub fn header_texts(&self) -> Vec<String> {
        let mut headers: Vec<String> = self.headers.iter().map(edit_text).collect();
        headers.sort_unstable();
        headers
    }

    fn to_json(&self) -> Value {
        json!({
            "status": self.status,
            "rule": self.rule,
            "problem_type": self.problem_type,
            "headers": self.header_texts(),
        })
    }
}

/// One divergent request.
#[derive(Debug, Clone)]
struct Divergence {
    request_id: String,
    at: SystemTime,
    upstream_status: u16,
    active: DecisionView,
    shadow: DecisionView,
}

#[derive(Debug, Default)]
struct Divergences {
    /// (active code, shadow code) -> count; codes are labels of the canonical set (0: other).
    pairs: BTreeMap<(u16, u16), u64>,
    total: u64,
    recent: VecDeque<Divergence>,
}

/// One route's shadow record.
#[derive(Debug)]
pub struct ShadowStats {
    pub active_profile: String,
    pub shadow_profile: String,
    since: SystemTime,
    compared: AtomicU64,
    /// Responses the shadow could not be compared on: its body read failed or ran out of time
    /// while only the shadow needed it (the client's answer was unaffected).
    not_compared: AtomicU64,
    divergences: Mutex<Divergences>,
}

impl ShadowStats {
    pub fn new(active_profile: &str, shadow_profile: &str) -> ShadowStats {
        ShadowStats {
            active_profile: active_profile.to_owned(),
            shadow_profile: shadow_profile.to_owned(),
            since: SystemTime::now(),
            compared: AtomicU64::new(0),
            not_compared: AtomicU64::new(0),
            divergences: Mutex::new(Divergences::default()),
        }
    }

    /// Counts a response the shadow could not be compared on.
    pub fn not_compared(&self) {
        self.not_compared.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one comparison; for a divergence (`codes`: the pair's labels), keeps it among the
    /// recent ones and returns its number (1 for the first) so that the caller can sample logs.
    pub fn compared(
        &self,
        request_id: &str,
        upstream_status: u16,
        codes: (u16, u16),
        active: Decision<'_>,
        shadow: Decision<'_>,
    ) -> Option<u64> {
        self.compared.fetch_add(1, Ordering::Relaxed);
        if !DecisionView::diverges(&active, &shadow) {
            return None;
        }
        let entry = Divergence {
            request_id: request_id.to_owned(),
            at: SystemTime::now(),
            upstream_status,
            active: DecisionView::of(active),
            shadow: DecisionView::of(shadow),
        };
        let mut d = self.divergences.lock().unwrap_or_else(|p| p.into_inner());
        *d.pairs.entry(codes).or_insert(0) += 1;
        d.total += 1;
        if d.recent.len() == RECENT {
            d.recent.pop_front();
        }
        d.recent.push_back(entry);
        Some(d.total)
    }

    /// The route's summary for `GET /-/shadow`.
    pub fn to_json(&self, route: &str) -> Value {
        let secs = |t: SystemTime| t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let d = self.divergences.lock().unwrap_or_else(|p| p.into_inner());
        let label = |c: u16| if c == 0 { "other".to_owned() } else { c.to_string() };
        json!({
            "route": route,
            "profile": self.active_profile,
            "shadow_profile": self.shadow_profile,
            "since_unix": secs(self.since),
            "compared": self.compared.load(Ordering::Relaxed),
            "not_compared": self.not_compared.load(Ordering::Relaxed),
            "divergences": d.total,
            "by_pair": d.pairs.iter().map(|((a, s), n)| json!({
                "active_code": label(*a),
                "shadow_code": label(*s),
                "count": n,
            })).collect::<Vec<_>>(),
            "recent": d.recent.iter().rev().map(|r| json!({
                "request_id": r.request_id,
                "at_unix": secs(r.at),
                "upstream_status": r.upstream_status,
                "active": r.active.to_json(),
                "shadow": r.shadow.to_json(),
            })).collect::<Vec<_>>(),
        })
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderName, HeaderValue};

    use super::*;
    use crate::engine::ProblemBody;

    fn decision(status: u16, rule: Option<&'static str>, headers: Vec<HeaderEdit>) -> Decision<'static> {
        Decision {
            status,
            reason: "",
            rule,
            rule_index: None,
            headers,
            body: BodyPlan::Passthrough,
            body_skip: None,
            redactions: 0,
        }
    }

    fn set(n: &'static str, v: &'static str) -> HeaderEdit {
        HeaderEdit::Set(HeaderName::from_static(n), HeaderValue::from_static(v))
    }

    #[test]
    fn divergence_is_status_rule_problem_type_or_header_edits_in_any_order() {
        let a = decision(429, Some("t"), vec![set("retry-after", "1"), set("x-a", "b")]);
        let same = decision(429, Some("t"), vec![set("x-a", "b"), set("retry-after", "1")]);
        assert!(!DecisionView::diverges(&a, &same));
        assert!(DecisionView::diverges(&a, &decision(400, Some("t"), a.headers.clone())));
        assert!(DecisionView::diverges(&a, &decision(429, None, a.headers.clone())));
        assert!(DecisionView::diverges(
            &a,
            &decision(429, Some("t"), vec![set("retry-after", "2"), set("x-a", "b")])
        ));
        let mut typed = a.clone();
        typed.body = BodyPlan::Problem(Box::new(ProblemBody {
            type_uri: "urn:x".into(),
            title: String::new(),
            status: 429,
            detail: None,
            instance: None,
            upstream_status: None,
            vendor_code: None,
            request_id: String::new(),
            vendor_request_id: None,
            origin: crate::engine::Origin::Upstream,
            extensions: Vec::new(),
            retryable: true,
        }));
        assert!(DecisionView::diverges(&a, &typed));
    }

    #[test]
    fn the_recent_list_keeps_the_last_sixteen_and_pairs_count_every_divergence() {
        let s = ShadowStats::new("a.yaml", "b.yaml");
        let a = decision(400, None, vec![]);
        let b = decision(429, Some("t"), vec![set("x-b", "2"), set("retry-after", "1")]);
        for i in 0..40 {
            let n = s.compared(&format!("r{i}"), 400, (400, 429), a.clone(), b.clone());
            assert_eq!(n, Some(i + 1));
        }
        assert_eq!(s.compared("same", 400, (400, 400), a.clone(), a.clone()), None);
        let j = s.to_json("r");
        assert_eq!(j["compared"], 41);
        assert_eq!(j["divergences"], 40);
        assert_eq!(j["by_pair"][0]["count"], 40);
        let recent = j["recent"].as_array().unwrap();
        assert_eq!(recent.len(), RECENT);
        assert_eq!(recent[0]["request_id"], "r39");
        assert_eq!(recent[0]["shadow"]["rule"], "t");
        assert_eq!(
            recent[0]["shadow"]["headers"],
            json!(["set retry-after: 1", "set x-b: 2"]),
            "the edits are listed as text, sorted"
        );
    }
}
