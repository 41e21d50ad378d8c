//! A vendor profile compiled: ordered rules with regexes, paths and templates built, and a
//! status-indexed candidate list, so evaluating a response walks only the rules that can match
//! its status and allocates nothing unless a rule fires. Given a `trace::RuleTrace`, the same
//! walk records each rule's first failed condition (`explain --trace`, failing examples).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use serde_saphyr::Spanned;

use super::body::{BodyDoc, BodyPathError, JsonPath, XmlPath, DEFAULT_BODY_DEPTH, MAX_BODY_DEPTH};
use super::canonical::CanonicalProfile;
use super::matcher::{Matcher, MediaPattern, PathGlob, StatusSet};
use super::problem::{retryable, Origin, ProblemBody};
use super::template::{Scope, Template};
use super::trace::{Failed, RuleTrace};
use super::{safe_header_value, BodyPlan, Decision, HeaderEdit, RequestFacts, UpstreamBody, UpstreamHead};
use crate::diagnostics::{ConfigProblem, HeaderError, PathError, PathKey, ProblemKind, SourcePos};
use crate::spec::{RawProblem, RawProfile, RawRule, StatusSpec, ValueMatchSpec};

/// Default cap on buffered upstream bodies.
pub const DEFAULT_BODY_BUFFER: usize = 64 * 1024;

#[derive(Debug)]
struct CompiledRule {
    name: Arc<str>,
    /// Where the rule is defined (for warnings).
    at: SourcePos,
    status: StatusSet,
    methods: Vec<String>,
    path: Option<PathGlob>,
    path_prefix: Option<String>,
    request_headers: Vec<(HeaderName, Matcher)>,
    headers: Vec<(HeaderName, Matcher)>,
    content_type: Vec<MediaPattern>,
    json: Vec<Keyed<JsonPath>>,
    xml: Vec<Keyed<XmlPath>>,
    action: Action,
    /// Its conditions read the body.
    body_conditions: bool,
    /// Its actions read the body.
    body_actions: bool,
}

/// A body condition: the compiled path, the path as written (for traces) and the matcher.
#[derive(Debug)]
struct Keyed<P> {
    path: P,
    key: String,
    matcher: Matcher,
}

#[derive(Debug)]
struct Action {
    status: Option<u16>,
    /// `retryable:` overriding the problem's default.
    retryable: Option<bool>,
    problem: ProblemTemplate,
    set: Vec<(HeaderName, HeaderTemplate)>,
    add: Vec<(HeaderName, HeaderTemplate)>,
    remove: Vec<HeaderName>,
    keep_body: bool,
}

/// A header edit's value. One without variables (`Retry-After: "2"`) is made once, when the
/// profile compiles: each response then clones it instead of rendering and checking the text.
#[derive(Debug)]
enum HeaderTemplate {
    /// No variables: the value, or `None` when the text can be no header value (no edit).
    Fixed(Option<HeaderValue>),
    Rendered(Template),
}

impl HeaderTemplate {
    fn new(t: Template) -> HeaderTemplate {
        match t.literal() {
            Some(text) => HeaderTemplate::Fixed(safe_header_value(text)),
            None => HeaderTemplate::Rendered(t),
        }
    }

    fn value(&self, scope: &Scope<'_, '_>) -> Option<HeaderValue> {
        match self {
            HeaderTemplate::Fixed(v) => v.clone(),
            HeaderTemplate::Rendered(t) => t.render(scope).as_deref().and_then(safe_header_value),
        }
    }

    fn uses_body(&self) -> bool {
        matches!(self, HeaderTemplate::Rendered(t) if t.uses_body())
    }
}

#[derive(Debug, Default)]
struct ProblemTemplate {
    type_uri: Option<String>,
    title: Option<String>,
    detail: Option<Template>,
    instance: Option<Template>,
    vendor_code: Option<Template>,
    vendor_request_id: Option<Template>,
    extensions: Vec<(String, Template)>,
}

/// How much of a problem body [`CompiledProfile::evaluate_with`] works out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemDetail {
    /// Every member, the templated ones rendered and redacted: what a client is sent.
    Full,
    /// Only the members no template or redaction touches (type, title, status,
    /// upstream_status, request_id, origin, retryable); detail, instance, vendor_code,
    /// vendor_request_id and extensions are left out and nothing is redacted. What a shadow
    /// comparison reads (status, rule, problem type, header edits) is exact; such a problem is
    /// never sent.
    Outline,
}

/// Headers added when the final status is `status` and the response lacks them.
#[derive(Debug, Clone, Default)]
pub struct EnsureHeaders(Vec<(u16, HeaderName, HeaderValue)>);

impl EnsureHeaders {
    pub fn compile(
        file: &Path,
        raw: &BTreeMap<u16, BTreeMap<String, Spanned<String>>>,
        problems: &mut Vec<ConfigProblem>,
    ) -> EnsureHeaders {
        let mut out = Vec::new();
        for (status, headers) in raw {
            for (name, value) in headers {
                let at = SourcePos::of(file, value);
                match (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_str(&value.value),
                ) {
                    (Ok(n), Ok(v)) => out.push((*status, n, v)),
                    (Err(_), _) => problems.push(ConfigProblem::error(at, HeaderError::Name(name.clone()).into())),
                    (Ok(_), Err(_)) => problems.push(ConfigProblem::error(
                        at,
                        HeaderError::Value {
                            name: name.clone(),
                            value: value.value.clone(),
                        }
                        .into(),
                    )),
                }
            }
        }
        EnsureHeaders(out)
    }

    pub fn for_status(&self, status: u16) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.0
            .iter()
            .filter(move |(s, _, _)| *s == status)
            .map(|(_, n, v)| (n, v))
    }
}

#[derive(Debug)]
pub struct CompiledProfile {
    pub source: String,
    rules: Vec<CompiledRule>,
    /// For each status 100..=599, the indices of the rules that may match it, in order.
    by_status: Vec<Box<[u32]>>,
    pub body_buffer: usize,
    /// Nesting limit of the body readers (`body_depth`).
    pub body_depth: usize,
    vendor_request_id_header: HeaderName,
    pub ensure: EnsureHeaders,
}

/// Checks a `body_depth` setting: 1 to `MAX_BODY_DEPTH`.
pub fn check_body_depth(file: &Path, raw: &Spanned<usize>, problems: &mut Vec<ConfigProblem>) -> usize {
    if (1..=MAX_BODY_DEPTH).contains(&raw.value) {
        raw.value
    } else {
        problems.push(ConfigProblem::error(
            SourcePos::of(file, raw),
            ProblemKind::BodyDepth {
                depth: raw.value,
                max: MAX_BODY_DEPTH,
            },
        ));
        DEFAULT_BODY_DEPTH
    }
}

impl CompiledProfile {
    /// A profile with no rules: only the canonical defaults apply.
    pub fn empty(body_buffer: usize) -> CompiledProfile {
        Self::build("(none)".into(), Vec::new(), body_buffer, None, EnsureHeaders::default())
    }

    fn build(
        source: String,
        rules: Vec<CompiledRule>,
        body_buffer: usize,
        vendor_request_id_header: Option<HeaderName>,
        ensure: EnsureHeaders,
    ) -> CompiledProfile {
        let by_status = (100u16..=599)
            .map(|s| {
                rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.status.contains(s))
                    .map(|(i, _)| i as u32)
                    .collect::<Vec<_>>()
                    .into_boxed_slice()
            })
            .collect();
        CompiledProfile {
            source,
            rules,
            by_status,
            body_buffer,
            body_depth: DEFAULT_BODY_DEPTH,
            vendor_request_id_header: vendor_request_id_header.unwrap_or(HeaderName::from_static("x-request-id")),
            ensure,
        }
    }

    pub fn rule_names(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| &*r.name)
    }

    /// Rules that set `status` without setting header `name` themselves.
    pub fn rules_mapping_to_without(&self, status: u16, name: &HeaderName) -> Vec<(&str, &SourcePos)> {
        self.rules
            .iter()
            .filter(|r| r.action.status == Some(status))
            .filter(|r| !r.action.set.iter().chain(&r.action.add).any(|(n, _)| n == name))
            .map(|r| (&*r.name, &r.at))
            .collect()
    }

    /// Compiles a raw profile, collecting every problem with its position.
    pub fn compile(
        file: &Path,
        raw: &RawProfile,
        canonical: &CanonicalProfile,
        default_body_buffer: usize,
        default_body_depth: usize,
    ) -> Result<CompiledProfile, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let body_depth = raw
            .body_depth
            .as_ref()
            .map_or(default_body_depth, |d| check_body_depth(file, d, &mut problems));
        let mut rules = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rule in &raw.rules {
            if !seen.insert(rule.value.name.value.clone()) {
                problems.push(ConfigProblem::error(
                    SourcePos::of(file, &rule.value.name),
                    ProblemKind::Duplicate(rule.value.name.value.clone()),
                ));
            }
            if let Some(r) = compile_rule(file, &rule.value, canonical, &mut problems) {
                rules.push(r);
            }
        }
        let ensure = EnsureHeaders::compile(file, &raw.ensure_headers, &mut problems);
        let vendor_header = match &raw.vendor_request_id_header {
            Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(n) => Some(n),
                Err(_) => {
                    problems.push(ConfigProblem::error(
                        SourcePos::file(file),
                        HeaderError::Name(h.clone()).into(),
                    ));
                    None
                }
            },
            None => None,
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let body_buffer = raw
            .body_buffer
            .as_ref()
            .map_or(default_body_buffer, |b| b.value.0 as usize);
        let mut profile = Self::build(file.display().to_string(), rules, body_buffer, vendor_header, ensure);
        profile.body_depth = body_depth;
        Ok(profile)
    }

    fn candidates(&self, status: u16) -> &[u32] {
        match status {
            100..=599 => &self.by_status[(status - 100) as usize],
            _ => &[],
        }
    }

    /// Whether the decision for this response may depend on its body: true as soon as a rule
    /// whose header-level conditions hold reads the body in its conditions or its actions.
    pub fn needs_body(&self, req: &RequestFacts<'_>, head: &UpstreamHead<'_>) -> bool {
        for &i in self.candidates(head.status) {
            let r = &self.rules[i as usize];
            if r.head_failure(req, head).is_some() {
                continue;
            }
            if r.body_conditions || r.body_actions {
                return true;
            }
            return false;
        }
        false
    }

    /// The canonical response for an upstream response.
    pub fn evaluate<'p>(
        &'p self,
        canonical: &'p CanonicalProfile,
        route_ensure: &'p EnsureHeaders,
        req: &RequestFacts<'_>,
        head: &UpstreamHead<'_>,
        body_in: UpstreamBody<'_>,
    ) -> Decision<'p> {
        self.evaluate_traced(canonical, route_ensure, req, head, body_in, None)
    }

    /// [`evaluate`](Self::evaluate), recording into `trace` (when given) what each rule's
    /// conditions returned: the same checks, in the same order.
    pub fn evaluate_traced<'p>(
        &'p self,
        canonical: &'p CanonicalProfile,
        route_ensure: &'p EnsureHeaders,
        req: &RequestFacts<'_>,
        head: &UpstreamHead<'_>,
        body_in: UpstreamBody<'_>,
        trace: Option<&mut RuleTrace>,
    ) -> Decision<'p> {
        self.evaluate_with(canonical, route_ensure, req, head, body_in, trace, ProblemDetail::Full)
    }

    /// [`evaluate_traced`](Self::evaluate_traced), working out the problem body only as far
    /// as `detail` asks.
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate_with<'p>(
        &'p self,
        canonical: &'p CanonicalProfile,
        route_ensure: &'p EnsureHeaders,
        req: &RequestFacts<'_>,
        head: &UpstreamHead<'_>,
        body_in: UpstreamBody<'_>,
        mut trace: Option<&mut RuleTrace>,
        detail: ProblemDetail,
    ) -> Decision<'p> {
        let bytes = match body_in {
            UpstreamBody::Read(b) => Some(b),
            _ => None,
        };
        let doc = bytes.map(|b| BodyDoc::with_depth(b, self.body_depth));
        let candidates = self.candidates(head.status);
        if let Some(t) = trace.as_deref_mut() {
            t.begin(
                head.status,
                self.rules.iter().map(|r| (&*r.name, &r.status)),
                candidates,
            );
        }
        let mut matched_index = None;
        for &i in candidates {
            let i = i as usize;
            let r = &self.rules[i];
            let failed = r
                .head_failure(req, head)
                .or_else(|| r.body_failure(doc.as_ref(), body_in));
            match failed {
                None => {
                    matched_index = Some(i);
                    break;
                }
                Some(why) => {
                    if let Some(t) = trace.as_deref_mut() {
                        t.failed(i, &why);
                    }
                }
            }
        }
        let matched = matched_index.map(|i| &self.rules[i]);
        let scope = Scope {
            req,
            head,
            body: doc.as_ref(),
        };
        let status = matched
            .and_then(|r| r.action.status)
            .unwrap_or_else(|| canonical.canonicalize(head.status));
        let mut headers = Vec::new();
        if let Some(r) = matched {
            r.action.header_edits(&scope, &mut headers);
        }
        // The route's defaults first: a route is more specific than the profile it uses.
        for ensure in [route_ensure, &self.ensure] {
            for (name, value) in ensure.for_status(status) {
                let set_by_rule = headers
                    .iter()
                    .any(|e| matches!(e, HeaderEdit::Set(n, _) | HeaderEdit::Append(n, _) if n == name));
                if !head.headers.contains_key(name) && !set_by_rule {
                    headers.push(HeaderEdit::Set(name.clone(), value.clone()));
                }
            }
        }
        let keep = matched.is_some_and(|r| r.action.keep_body);
        let mut redactions = 0;
        let body = if status < 400 || keep {
            BodyPlan::Passthrough
        } else {
            let mut p = self.problem(canonical, matched, &scope, status, detail);
            if detail == ProblemDetail::Full {
                redactions = canonical.redaction().problem(&mut p);
            }
            BodyPlan::Problem(Box::new(p))
        };
        let body_skip = match body_in {
            UpstreamBody::Skipped(s) => Some(s),
            _ => doc.as_ref().and_then(BodyDoc::skip),
        };
        if let Some(t) = trace {
            t.decide(matched_index, status, canonical.reason(status));
        }
        Decision {
            status,
            reason: canonical.reason(status),
            rule: matched.map(|r| &*r.name),
            rule_index: matched_index,
            headers,
            body,
            body_skip,
            redactions,
        }
    }

    fn problem(
        &self,
        canonical: &CanonicalProfile,
        rule: Option<&CompiledRule>,
        scope: &Scope<'_, '_>,
        status: u16,
        detail: ProblemDetail,
    ) -> ProblemBody {
        let (type_uri, title) = canonical.problem_type(status);
        let t = rule.map(|r| &r.action.problem);
        let full = detail == ProblemDetail::Full;
        let render = |f: fn(&ProblemTemplate) -> &Option<Template>| {
            t.filter(|_| full)
                .and_then(|t| f(t).as_ref())
                .and_then(|tpl| tpl.render(scope))
        };
        let vendor_request_id = render(|t| &t.vendor_request_id).or_else(|| {
            let v = scope.head.headers.get(&self.vendor_request_id_header)?.to_str().ok()?;
            (full && v != scope.req.request_id).then(|| v.to_owned())
        });
        ProblemBody {
            type_uri: t
                .and_then(|t| t.type_uri.clone())
                .unwrap_or_else(|| type_uri.to_owned()),
            title: t.and_then(|t| t.title.clone()).unwrap_or_else(|| title.to_owned()),
            status,
            detail: render(|t| &t.detail),
            instance: render(|t| &t.instance),
            upstream_status: Some(scope.head.status),
            vendor_code: render(|t| &t.vendor_code),
            request_id: scope.req.request_id.to_owned(),
            vendor_request_id,
            origin: Origin::Upstream,
            retryable: rule
                .and_then(|r| r.action.retryable)
                .unwrap_or_else(|| retryable(status, scope.req.method, false)),
            extensions: t
                .filter(|_| full)
                .map(|t| {
                    t.extensions
                        .iter()
                        .filter_map(|(k, tpl)| Some((k.clone(), tpl.render_value(scope)?)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl CompiledRule {
    /// The first of the rule's header-level conditions that does not hold (method, path,
    /// path prefix, request headers, response headers, content type, in that order).
    fn head_failure<'a>(&'a self, req: &RequestFacts<'a>, head: &UpstreamHead<'a>) -> Option<Failed<'a>> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m.eq_ignore_ascii_case(req.method)) {
            return Some(Failed::Method {
                seen: req.method,
                wanted: &self.methods,
            });
        }
        if let Some(g) = self.path.as_ref().filter(|g| !g.matches(req.path)) {
            return Some(Failed::Path {
                seen: req.path,
                glob: g.as_str(),
            });
        }
        if let Some(p) = self.path_prefix.as_ref().filter(|p| !req.path.starts_with(p.as_str())) {
            return Some(Failed::PathPrefix {
                seen: req.path,
                prefix: p,
            });
        }
        for (name, m) in &self.request_headers {
            let seen = req.headers.get(name).and_then(|v| v.to_str().ok());
            if !m.matches(seen) {
                return Some(Failed::RequestHeader { name, seen, wanted: m });
            }
        }
        for (name, m) in &self.headers {
            let seen = head.headers.get(name).and_then(|v| v.to_str().ok());
            if !m.matches(seen) {
                return Some(Failed::Header { name, seen, wanted: m });
            }
        }
        if !self.content_type.is_empty() {
            let ct = head
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !self.content_type.iter().any(|p| p.matches(ct)) {
                return Some(Failed::ContentType {
                    seen: ct,
                    wanted: &self.content_type,
                });
            }
        }
        None
    }

    /// The first of the rule's body conditions (`json`, then `xml`) that does not hold; with no
    /// body document, the first body condition, saying why the body is missing.
    fn body_failure<'a>(&'a self, doc: Option<&'a BodyDoc<'a>>, body_in: UpstreamBody<'_>) -> Option<Failed<'a>> {
        if !self.body_conditions {
            return None;
        }
        let Some(doc) = doc else {
            let skip = match body_in {
                UpstreamBody::Skipped(s) => Some(s),
                _ => None,
            };
            let (key, path) = match (self.json.first(), self.xml.first()) {
                (Some(j), _) => ("json", j.key.as_str()),
                (None, Some(x)) => ("xml", x.key.as_str()),
                (None, None) => ("json", ""),
            };
            return Some(Failed::NoBody { key, path, skip });
        };
        for k in &self.json {
            let seen = doc.json_text(&k.path);
            if !k.matcher.matches(seen.as_deref()) {
                return Some(Failed::Json {
                    path: &k.key,
                    seen,
                    wanted: &k.matcher,
                });
            }
        }
        for k in &self.xml {
            let seen = doc.xml_text(&k.path);
            if !k.matcher.matches(seen) {
                return Some(Failed::Xml {
                    path: &k.key,
                    seen,
                    wanted: &k.matcher,
                });
            }
        }
        None
    }
}

impl Action {
    fn header_edits(&self, scope: &Scope<'_, '_>, out: &mut Vec<HeaderEdit>) {
        for n in &self.remove {
            out.push(HeaderEdit::Remove(n.clone()));
        }
        for (n, t) in &self.set {
            if let Some(v) = t.value(scope) {
                out.push(HeaderEdit::Set(n.clone(), v));
            }
        }
        for (n, t) in &self.add {
            if let Some(v) = t.value(scope) {
                out.push(HeaderEdit::Append(n.clone(), v));
            }
        }
    }

    fn uses_body(&self) -> bool {
        self.set.iter().chain(&self.add).any(|(_, t)| t.uses_body())
            || [
                &self.problem.detail,
                &self.problem.instance,
                &self.problem.vendor_code,
                &self.problem.vendor_request_id,
            ]
            .into_iter()
            .flatten()
            .any(Template::uses_body)
            || self.problem.extensions.iter().any(|(_, t)| t.uses_body())
    }
}

fn compile_rule(
    file: &Path,
    raw: &RawRule,
    canonical: &CanonicalProfile,
    problems: &mut Vec<ConfigProblem>,
) -> Option<CompiledRule> {
    let before = problems.len();
    let w = &raw.when;
    let mut status = StatusSet::default();
    if let Some(s) = &w.status {
        for spec in &s.value.0 {
            match spec {
                StatusSpec::Code(c) => status.codes.push(*c),
                StatusSpec::Class(k) => status.classes.push(*k),
            }
        }
    }
    let methods = w.method.as_ref().map(|m| m.value.0.clone()).unwrap_or_default();
    let path = w.path.as_ref().and_then(|p| {
        PathGlob::compile(&p.value)
            .map_err(|e| problems.push(ConfigProblem::error(SourcePos::of(file, p), ProblemKind::Glob(e))))
            .ok()
    });
    if let Some(p) = &w.path_prefix {
        if !p.value.starts_with('/') {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, p),
                PathError::NotAbsolute {
                    key: PathKey::RulePrefix,
                    path: p.value.clone(),
                }
                .into(),
            ));
        }
    }
    let content_type = w
        .content_type
        .as_ref()
        .map(|ct| {
            ct.value
                .0
                .iter()
                .filter_map(|c| {
                    MediaPattern::compile(c)
                        .map_err(|e| {
                            problems.push(ConfigProblem::error(SourcePos::of(file, ct), ProblemKind::Media(e)))
                        })
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    let request_headers = header_matchers(file, &w.request_headers, problems);
    let headers = header_matchers(file, &w.headers, problems);
    let json = keyed_matchers(file, &w.json, JsonPath::compile, problems);
    let xml = keyed_matchers(file, &w.xml, XmlPath::compile, problems);

    let t = &raw.then;
    if let Some(s) = &t.status {
        if !canonical.contains(s.value) {
            problems.push(ConfigProblem::error(
                SourcePos::of(file, s),
                ProblemKind::NotCanonical(s.value, codes_list(canonical)),
            ));
        }
    }
    let action = Action {
        status: t.status.as_ref().map(|s| s.value),
        retryable: t.retryable,
        problem: problem_template(file, &t.problem, problems),
        set: header_templates(file, &t.headers.set, problems),
        add: header_templates(file, &t.headers.add, problems),
        remove: t
            .headers
            .remove
            .iter()
            .filter_map(|h| {
                HeaderName::from_bytes(h.value.as_bytes())
                    .map_err(|_| {
                        problems.push(ConfigProblem::error(
                            SourcePos::of(file, h),
                            HeaderError::Name(h.value.clone()).into(),
                        ))
                    })
                    .ok()
            })
            .collect(),
        keep_body: t.keep_body,
    };
    if problems.len() > before {
        return None;
    }
    let body_actions = action.uses_body();
    Some(CompiledRule {
        name: Arc::from(raw.name.value.as_str()),
        at: SourcePos::of(file, &raw.name),
        body_conditions: !json.is_empty() || !xml.is_empty(),
        body_actions,
        status,
        methods,
        path,
        path_prefix: w.path_prefix.as_ref().map(|p| p.value.clone()),
        request_headers,
        headers,
        content_type,
        json,
        xml,
        action,
    })
}

fn codes_list(canonical: &CanonicalProfile) -> String {
    canonical
        .codes()
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

fn matcher(file: &Path, m: &Spanned<ValueMatchSpec>, problems: &mut Vec<ConfigProblem>) -> Option<Matcher> {
    Matcher::compile(&m.value.0)
        .map_err(|e| problems.push(ConfigProblem::error(SourcePos::of(file, m), ProblemKind::Matcher(e))))
        .ok()
}

fn header_matchers(
    file: &Path,
    raw: &BTreeMap<String, Spanned<ValueMatchSpec>>,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(HeaderName, Matcher)> {
    raw.iter()
        .filter_map(|(name, m)| {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| {
                    problems.push(ConfigProblem::error(
                        SourcePos::of(file, m),
                        HeaderError::Name(name.clone()).into(),
                    ))
                })
                .ok();
            let m = matcher(file, m, problems);
            Some((n?, m?))
        })
        .collect()
}

fn keyed_matchers<P>(
    file: &Path,
    raw: &BTreeMap<String, Spanned<ValueMatchSpec>>,
    compile: fn(&str) -> Result<P, BodyPathError>,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<Keyed<P>> {
    raw.iter()
        .filter_map(|(key, m)| {
            let p = compile(key)
                .map_err(|e| problems.push(ConfigProblem::error(SourcePos::of(file, m), ProblemKind::BodyPath(e))))
                .ok();
            let m = matcher(file, m, problems);
            Some(Keyed {
                path: p?,
                key: key.clone(),
                matcher: m?,
            })
        })
        .collect()
}

fn template(file: &Path, s: &Spanned<String>, problems: &mut Vec<ConfigProblem>) -> Option<Template> {
    Template::compile(&s.value)
        .map_err(|e| problems.push(ConfigProblem::error(SourcePos::of(file, s), ProblemKind::Template(e))))
        .ok()
}

fn header_templates(
    file: &Path,
    raw: &BTreeMap<String, Spanned<String>>,
    problems: &mut Vec<ConfigProblem>,
) -> Vec<(HeaderName, HeaderTemplate)> {
    raw.iter()
        .filter_map(|(name, v)| {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| {
                    problems.push(ConfigProblem::error(
                        SourcePos::of(file, v),
                        HeaderError::Name(name.clone()).into(),
                    ))
                })
                .ok();
            let t = template(file, v, problems);
            Some((n?, HeaderTemplate::new(t?)))
        })
        .collect()
}

fn problem_template(file: &Path, raw: &RawProblem, problems: &mut Vec<ConfigProblem>) -> ProblemTemplate {
    let mut opt = |s: &Option<Spanned<String>>| s.as_ref().and_then(|s| template(file, s, problems));
    ProblemTemplate {
        type_uri: raw.type_uri.as_ref().map(|s| s.value.clone()),
        title: raw.title.as_ref().map(|s| s.value.clone()),
        detail: opt(&raw.detail),
        instance: opt(&raw.instance),
        vendor_code: opt(&raw.vendor_code),
        vendor_request_id: opt(&raw.vendor_request_id),
        extensions: raw
            .extensions
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), template(file, v, problems)?)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;
    use crate::diagnostics::ProblemKind;
    use crate::testing::{canonical, compile, get_root, problems};
    use crate::trace::RuleTrace;
    use crate::BodySkip;

    const RULES: &str = "ensure_headers:\n  429: { Retry-After: \"5\" }\nrules:\n  - name: by-header\n    when: { status: 400, headers: { X-Kind: quota } }\n    then: { status: 429 }\n  - name: by-body\n    when: { status: 400, json: { /code: slow } }\n    then: { status: 429, headers: { set: { Retry-After: \"1\" } } }\n  - name: conflict-kept\n    when: { status: 409 }\n    then: { keep_body: true }\n";

    fn eval<'p>(
        p: &'p CompiledProfile,
        c: &'p CanonicalProfile,
        route: &'p EnsureHeaders,
        status: u16,
        headers: &HeaderMap,
        body: UpstreamBody<'_>,
    ) -> Decision<'p> {
        let req = HeaderMap::new();
        let facts = get_root(&req);
        let head = UpstreamHead { status, headers };
        p.evaluate(c, route, &facts, &head, body)
    }

    #[test]
    fn the_body_is_needed_only_when_the_first_rule_whose_head_holds_reads_it() {
        let (_, p) = compile(RULES);
        let req = HeaderMap::new();
        let facts = get_root(&req);
        let mut quota = HeaderMap::new();
        quota.insert("x-kind", HeaderValue::from_static("quota"));
        let none = HeaderMap::new();
        let need = |status, headers| p.needs_body(&facts, &UpstreamHead { status, headers });
        assert!(!need(400, &quota), "by-header decides without the body");
        assert!(need(400, &none), "by-body is the first candidate whose head holds");
        assert!(!need(409, &none));
        assert!(!need(200, &none), "no rule is indexed under 200");
    }

    #[test]
    fn evaluate_picks_the_first_matching_rule_and_adds_missing_ensured_headers() {
        let (_, p) = compile(RULES);
        let c = canonical();
        let route = EnsureHeaders::default();
        let d = eval(
            &p,
            &c,
            &route,
            400,
            &HeaderMap::new(),
            UpstreamBody::Read(br#"{"code":"slow"}"#),
        );
        assert_eq!((d.status, d.rule, d.rule_index), (429, Some("by-body"), Some(1)));
        let retry: Vec<_> = d
            .headers
            .iter()
            .filter(|e| matches!(e, HeaderEdit::Set(n, _) if n == "retry-after"))
            .collect();
        assert_eq!(
            retry.len(),
            1,
            "the rule's Retry-After wins over ensure_headers: {:?}",
            d.headers
        );
        assert!(matches!(d.body, BodyPlan::Problem(_)));

        let mut quota = HeaderMap::new();
        quota.insert("x-kind", HeaderValue::from_static("quota"));
        let d = eval(&p, &c, &route, 400, &quota, UpstreamBody::NotRead);
        assert_eq!(d.rule, Some("by-header"));
        assert_eq!(
            d.headers,
            [HeaderEdit::Set(
                HeaderName::from_static("retry-after"),
                HeaderValue::from_static("5")
            )]
        );
    }

    #[test]
    fn without_a_rule_the_canonical_defaults_decide_and_skips_are_reported() {
        let (_, p) = compile(RULES);
        let c = canonical();
        let route = EnsureHeaders::default();
        let d = eval(&p, &c, &route, 418, &HeaderMap::new(), UpstreamBody::NotRead);
        assert_eq!(
            (d.status, d.rule),
            (400, None),
            "418 is outside the set: the 4xx fallback"
        );
        let d = eval(
            &p,
            &c,
            &route,
            400,
            &HeaderMap::new(),
            UpstreamBody::Skipped(BodySkip::OverCap),
        );
        assert_eq!((d.status, d.rule, d.body_skip), (400, None, Some(BodySkip::OverCap)));
        let d = eval(&p, &c, &route, 409, &HeaderMap::new(), UpstreamBody::NotRead);
        assert_eq!(
            (d.status, d.rule, d.body.clone()),
            (400, Some("conflict-kept"), BodyPlan::Passthrough),
            "409 is outside the set and falls back, keep_body still keeps the body"
        );
        let d = eval(&p, &c, &route, 201, &HeaderMap::new(), UpstreamBody::NotRead);
        assert_eq!((d.status, d.body), (201, BodyPlan::Passthrough));
    }

    #[test]
    fn the_routes_ensured_headers_come_before_the_profiles() {
        let (_, p) = compile(RULES);
        let c = canonical();
        let raw: BTreeMap<u16, BTreeMap<String, Spanned<String>>> =
            crate::yaml::parse_yaml(Path::new("main.yaml"), "429: { Retry-After: \"9\" }").unwrap();
        let mut problems = Vec::new();
        let route = EnsureHeaders::compile(Path::new("main.yaml"), &raw, &mut problems);
        assert!(problems.is_empty());
        let mut quota = HeaderMap::new();
        quota.insert("x-kind", HeaderValue::from_static("quota"));
        let d = eval(&p, &c, &route, 400, &quota, UpstreamBody::NotRead);
        assert_eq!(
            d.headers,
            [HeaderEdit::Set(
                HeaderName::from_static("retry-after"),
                HeaderValue::from_static("9")
            )]
        );
    }

    fn problem_of(d: &Decision<'_>) -> ProblemBody {
        match &d.body {
            BodyPlan::Problem(p) => (**p).clone(),
            other => panic!("a problem body expected, got {other:?}"),
        }
    }

    /// A rule-made problem's `retryable`: the default by final status and method class, and
    /// the rule's override either way.
    #[test]
    fn retryable_defaults_by_status_and_method_and_a_rule_overrides_it() {
        let (_, p) = compile(
            "rules:\n  - name: busy\n    when: { status: 400, headers: { X-Kind: busy } }\n    then: { status: 503 }\n  - name: busy-but-final\n    when: { status: 400, headers: { X-Kind: final } }\n    then: { status: 503, retryable: false }\n  - name: retry-this-400\n    when: { status: 400, headers: { X-Kind: again } }\n    then: { retryable: true }\n",
        );
        let c = canonical();
        let route = EnsureHeaders::default();
        let req = HeaderMap::new();
        let run = |method: &str, status: u16, kind: Option<&'static str>| {
            let mut up = HeaderMap::new();
            if let Some(k) = kind {
                up.insert("x-kind", HeaderValue::from_static(k));
            }
            let facts = RequestFacts {
                method,
                path: "/",
                headers: &req,
                request_id: "r",
            };
            let head = UpstreamHead { status, headers: &up };
            let d = p.evaluate(&c, &route, &facts, &head, UpstreamBody::NotRead);
            let problem = problem_of(&d);
            (d.rule.map(str::to_owned), problem.status, problem.retryable)
        };
        for method in ["GET", "DELETE", "POST", "PATCH"] {
            // No rule: the canonical defaults keep the status (the test canonical set lacks
            // 504, which falls back to 500: not retryable).
            assert_eq!(run(method, 429, None), (None, 429, true), "{method}");
            assert_eq!(run(method, 503, None), (None, 503, true), "{method}");
            assert_eq!(run(method, 502, None), (None, 502, false), "{method}");
            assert_eq!(run(method, 500, None), (None, 500, false), "{method}");
            assert_eq!(run(method, 404, None), (None, 404, false), "{method}");
            assert_eq!(run(method, 504, None), (None, 500, false), "{method}");
            assert_eq!(
                run(method, 400, Some("busy")),
                (Some("busy".into()), 503, true),
                "{method}"
            );
            assert_eq!(
                run(method, 400, Some("final")),
                (Some("busy-but-final".into()), 503, false),
                "{method}: the override wins over 503's default"
            );
            assert_eq!(
                run(method, 400, Some("again")),
                (Some("retry-this-400".into()), 400, true),
                "{method}: the override wins over 400's default"
            );
        }
        // A 504 kept by the canonical set: retryable only for idempotent methods.
        let mut statuses = std::collections::HashMap::new();
        for s in [400u16, 500, 504] {
            statuses.insert(
                s,
                crate::canonical::CanonicalStatus {
                    reason: crate::canonical::standard_reason(s).to_owned(),
                    type_uri: "about:blank".into(),
                    title: "t".into(),
                },
            );
        }
        let with_504 = CanonicalProfile::new(statuses, 400, 500, std::collections::HashMap::new());
        let up = HeaderMap::new();
        for (method, want) in [("GET", true), ("PUT", true), ("POST", false), ("PATCH", false)] {
            let facts = RequestFacts {
                method,
                path: "/",
                headers: &req,
                request_id: "r",
            };
            let head = UpstreamHead {
                status: 504,
                headers: &up,
            };
            let d = p.evaluate(&with_504, &route, &facts, &head, UpstreamBody::NotRead);
            assert_eq!(problem_of(&d).retryable, want, "504 {method}");
        }
    }

    const FIVE: &str = "rules:\n  - name: not-found\n    when: { status: 404 }\n    then: { status: 404 }\n  - name: posts-only\n    when: { status: 400, method: [POST, PUT] }\n    then: { status: 404 }\n  - name: quota\n    when: { status: 400, json: { /error_code: { equals: EndPoint.0022, ignore_case: true } } }\n    then: { status: 429 }\n  - name: throttled\n    when: { status: 400, headers: { X-Kind: slow }, json: { /error_code: EndPoint.0023 } }\n    then: { status: 429 }\n  - name: catch-all\n    when: { status: 4xx }\n    then: { status: 400 }\n";

    /// The trace of five rules where the fourth matches: one line per rule from the live
    /// matcher, and the same decision as without a trace.
    #[test]
    fn the_trace_names_each_rules_first_failed_condition_and_the_decision() {
        let (_, p) = compile(FIVE);
        let c = canonical();
        let route = EnsureHeaders::default();
        let req = HeaderMap::new();
        let facts = get_root(&req);
        let mut up = HeaderMap::new();
        up.insert("x-kind", HeaderValue::from_static("slow"));
        let head = UpstreamHead {
            status: 400,
            headers: &up,
        };
        let body = UpstreamBody::Read(br#"{"error_code":"EndPoint.0023"}"#);
        let mut trace = RuleTrace::default();
        let traced = p.evaluate_traced(&c, &route, &facts, &head, body, Some(&mut trace));
        let plain = p.evaluate(&c, &route, &facts, &head, body);
        assert_eq!(traced, plain, "the trace changes nothing");
        assert_eq!(
            trace.lines(),
            [
                "rule not-found: not a candidate for status 400 (when.status: 404)",
                r#"rule posts-only: method = "GET", wanted POST, PUT"#,
                r#"rule quota: json /error_code = "EndPoint.0023", wanted EndPoint.0022 (ignore_case)"#,
                "rule throttled: matched",
                "rule catch-all: not evaluated (rule throttled matched first)",
                "decision: rule throttled -> 429 Too Many Requests",
            ]
        );
        // Without the body: the body conditions say why they could not be checked.
        let mut trace = RuleTrace::default();
        let d = p.evaluate_traced(
            &c,
            &route,
            &facts,
            &head,
            UpstreamBody::Skipped(BodySkip::OverCap),
            Some(&mut trace),
        );
        assert_eq!(d.rule, Some("catch-all"));
        assert_eq!(
            trace.lines()[2..4],
            [
                "rule quota: json /error_code: the body was not used (over_cap)",
                "rule throttled: json /error_code: the body was not used (over_cap)",
            ]
        );
        assert_eq!(trace.decision, "decision: rule catch-all -> 400 Bad Request");
        // A status no rule is a candidate for: the canonical defaults decide.
        let mut trace = RuleTrace::default();
        let head = UpstreamHead {
            status: 503,
            headers: &up,
        };
        p.evaluate_traced(&c, &route, &facts, &head, body, Some(&mut trace));
        assert_eq!(
            trace.lines().last().map(String::as_str),
            Some("decision: no rule matched, canonical defaults -> 503 Service Unavailable")
        );
        assert_eq!(
            trace.lines()[4],
            "rule catch-all: not a candidate for status 503 (when.status: 4xx)"
        );
    }

    #[test]
    fn each_compile_error_names_what_was_wrong_and_where() {
        let got = problems(
            "body_depth: 0\nensure_headers:\n  401: { \"Bad Name\": x, X-Ok: \"a\\x01b\" }\nrules:\n  - name: r\n    when: { status: 400, path_prefix: v1 }\n    then: { status: 429 }\n",
        );
        let got: Vec<(u64, u64, ProblemKind)> = got.into_iter().map(|p| (p.at.line, p.at.col, p.kind)).collect();
        let want = [
            (
                1,
                13,
                ProblemKind::BodyDepth {
                    depth: 0,
                    max: MAX_BODY_DEPTH,
                },
            ),
            (3, 22, HeaderError::Name("Bad Name".to_owned()).into()),
            (
                3,
                31,
                HeaderError::Value {
                    name: "X-Ok".to_owned(),
                    value: "a\u{1}b".to_owned(),
                }
                .into(),
            ),
            (
                6,
                39,
                PathError::NotAbsolute {
                    key: PathKey::RulePrefix,
                    path: "v1".to_owned(),
                }
                .into(),
            ),
        ];
        for w in &want {
            assert!(got.contains(w), "{w:?} missing from {got:?}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
    }
}
