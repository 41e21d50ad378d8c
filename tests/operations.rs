//! The operations material holds together: every alert of deploy/prometheus/alerts.yaml has a
//! `runbook_url` whose anchor is a section of docs/runbook.md (anchors as GitHub renders
//! headings), every alert section of the runbook belongs to an alert, and the alert for a
//! gateway that is down or not scraped exists. (promtool and a real Prometheus run the rules
//! in tests/prometheus.rs.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// GitHub's heading anchor: lower case, punctuation other than `-` and `_` dropped, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of the runbook's `##` sections.
fn runbook_sections() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo("docs/runbook.md")).expect("docs/runbook.md");
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
        } else if let (false, Some(h)) = (in_code, line.strip_prefix("## ")) {
            out.insert(anchor(h));
        }
    }
    out
}

/// Every rule of alerts.yaml that is an alert.
fn alerts() -> Vec<Value> {
    let text = std::fs::read_to_string(repo("deploy/prometheus/alerts.yaml")).unwrap();
    let doc: Value = serde_saphyr::from_str(&text).expect("alerts.yaml is YAML");
    doc["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn anchors_are_what_github_renders() {
    assert_eq!(anchor("StatusgateDown"), "statusgatedown");
    assert_eq!(anchor(" What to do: now! "), "what-to-do-now");
}

#[test]
fn every_alert_has_a_runbook_section_and_every_section_an_alert() {
    let sections = runbook_sections();
    let alerts = alerts();
    assert!(alerts.len() >= 8, "{} alerts", alerts.len());
    let mut named = BTreeSet::new();
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        let url = a["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("alert {name} has no runbook_url"));
        let (page, fragment) = url
            .split_once('#')
            .unwrap_or_else(|| panic!("{name}: runbook_url {url} has no #anchor"));
        assert!(
            page.starts_with("https://") && page.ends_with("/docs/runbook.md"),
            "{name}: {url} does not point at docs/runbook.md"
        );
        assert!(
            sections.contains(fragment),
            "{name}: #{fragment} is not a section of docs/runbook.md (sections: {sections:?})"
        );
        assert_eq!(fragment, anchor(name), "{name}: its section is named after it");
        named.insert(fragment.to_owned());
    }
    let orphans: Vec<_> = sections
        .iter()
        .filter(|s| *s != "tools" && !named.contains(*s))
        .collect();
    assert!(orphans.is_empty(), "runbook sections without an alert: {orphans:?}");
}

#[test]
fn a_down_or_unscraped_gateway_alerts() {
    let alerts = alerts();
    let expr_of = |name: &str| {
        alerts
            .iter()
            .find(|a| a["alert"] == name)
            .and_then(|a| a["expr"].as_str())
            .unwrap_or_else(|| panic!("no alert {name}"))
            .trim()
            .to_owned()
    };
    assert_eq!(expr_of("StatusgateDown"), r#"up{job="statusgate"} == 0"#);
    assert_eq!(expr_of("StatusgateAbsent"), r#"absent(up{job="statusgate"})"#);
}
