//! deploy/kubernetes as Kubernetes and the pod see it:
//! - the base and the example overlay are rendered by kustomize (`kubectl kustomize`, the
//!   kustomize built into kubectl; Debian 12 packages neither kustomize nor kubectl, the machine
//!   image of this project ships kubectl);
//! - every rendered object is validated by `kubernetes-validate --strict` (PyPI) against the
//!   schemas of several Kubernetes versions (1.30 is the oldest with the `sleep` preStop
//!   handler); the ServiceMonitor is a CRD that kubernetes-validate has no schema for: it is
//!   checked here against the Service it must select instead;
//! - the ConfigMap's files, written to one directory as the pod mounts them (plus the admin
//!   token the Secret projects beside them), pass `statusgate check`;
//! - the invariants that tie the manifests to the configuration: the pinned image, the
//!   security context, probes on the admin port, the grace period arithmetic, the upgrade socket
//!   in the writable emptyDir, the NetworkPolicy's ports.
//!
//! Needs kubectl and `python3 -m kubernetes_validate` (`scripts/setup --pip
//! kubernetes-validate==...`; scripts/test installs it).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The Kubernetes versions every manifest must validate against (strict).
const KUBERNETES_VERSIONS: &[&str] = &["1.30.0", "1.34.0", "1.37.0"];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Runs a command; fails the test with its output unless it exits 0. Returns stdout.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: could not run: {e} (kubectl: the machine image's; kubernetes-validate: scripts/setup --pip)")
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `kubectl kustomize <dir>`: the objects, in kustomize's order.
fn render(dir: &str) -> (String, Vec<Value>) {
    let text = run(
        Command::new("kubectl").arg("kustomize").arg(repo(dir)),
        &format!("kubectl kustomize {dir}"),
    );
    let docs = text
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{dir}: not YAML: {e}\n{d}")))
        .collect();
    (text, docs)
}

fn one<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(name)))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// Seconds of a duration as statusgate.yaml writes it (`20s`, `1m`).
fn seconds(d: &str) -> u64 {
    let n: u64 = d.trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse().unwrap();
    match d.trim_start_matches(|c: char| c.is_ascii_digit()) {
        "s" => n,
        "m" => n * 60,
        other => panic!("unexpected unit {other:?} in {d}"),
    }
}

fn validate(dir: &str, docs: &[Value]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, d) in docs.iter().enumerate() {
        if d["apiVersion"] == "monitoring.coreos.com/v1" {
            continue; // a CRD: no schema in kubernetes-validate (checked in the test below)
        }
        let f = tmp.path().join(format!("{i:02}-{}.json", d["kind"].as_str().unwrap()));
        std::fs::write(&f, serde_json::to_string_pretty(d).unwrap()).unwrap();
        files.push(f);
    }
    assert!(files.len() >= 7, "{dir}: {} objects", files.len());
    for version in KUBERNETES_VERSIONS {
        let out = run(
            Command::new("python3")
                .args(["-m", "kubernetes_validate", "--strict", "--kubernetes-version", version])
                .args(&files),
            &format!("kubernetes-validate --strict -k {version} ({dir})"),
        );
        assert!(!out.contains("ERROR"), "{dir} on {version}:\n{out}");
    }
}

#[test]
fn base_and_overlay_render_and_validate_on_recent_kubernetes() {
    for dir in ["deploy/kubernetes/base", "deploy/kubernetes/overlays/example"] {
        let (_, docs) = render(dir);
        validate(dir, &docs);
    }
}

#[test]
fn kubernetes_validate_rejects_what_the_api_server_would() {
    // The validator can fail: a misspelled field (strict) and a wrong type are errors.
    let (_, docs) = render("deploy/kubernetes/base");
    let mut bad = one(&docs, "Deployment", "statusgate").clone();
    bad["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFileSystem"] = true.into();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.json");
    std::fs::write(&f, bad.to_string()).unwrap();
    let out = Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            KUBERNETES_VERSIONS[0],
        ])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelled field passed strict validation");
}

#[test]
fn the_pod_loads_the_configmap_as_mounted() {
    let (_, docs) = render("deploy/kubernetes/base");
    let cm = one(&docs, "ConfigMap", "statusgate-config");
    let data = cm["data"].as_object().expect("ConfigMap data");
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in data {
        assert!(!name.contains('/'), "{name}: a ConfigMap key is a flat file name");
        std::fs::write(dir.path().join(name), text.as_str().unwrap()).unwrap();
    }
    for shipped in [
        "canonical.yaml",
        "veeam.yaml",
        "huawei-vpcep.yaml",
        "oracle-ords.yaml",
        "forgerock-crest.yaml",
    ] {
        let file = std::fs::read_to_string(repo(&format!("rules/{shipped}"))).unwrap();
        assert_eq!(
            data[shipped].as_str(),
            Some(file.as_str()),
            "{shipped} is the shipped profile"
        );
    }
    // The Secret's key `token`, projected as `admin-token` (tests/kubernetes.rs checks the item).
    std::fs::write(dir.path().join("admin-token"), "0123456789abcdef0123456789abcdef\n").unwrap();
    // The upstreams are cluster DNS names: `check` resolves them (a failure is a warning). Run
    // it in a network namespace of its own (root here), so no query leaves the machine and the
    // failure is immediate; without `unshare`, the system resolver answers or times out (2 s).
    let isolated = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .is_ok_and(|s| s.success());
    let mut check = if isolated {
        let mut c = Command::new("unshare");
        c.args(["-n", env!("CARGO_BIN_EXE_statusgate")]);
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_statusgate"))
    };
    let out = check
        .args(["check", "-c"])
        .arg(dir.path().join("statusgate.yaml"))
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "statusgate check:\n{stdout}{stderr}");
    assert!(stdout.contains("ok (4 routes, 4 upstreams"), "{stdout}");
    // Unresolvable example host names are warnings; nothing else may be.
    for line in stderr.lines() {
        assert!(line.contains("does not resolve"), "unexpected problem: {line}");
    }
}

#[test]
fn manifests_agree_with_the_configuration_and_harden_the_pod() {
    let (_, docs) = render("deploy/kubernetes/base");
    let cm = one(&docs, "ConfigMap", "statusgate-config");
    let config: Value = serde_saphyr::from_str(cm["data"]["statusgate.yaml"].as_str().unwrap()).unwrap();
    let deploy = one(&docs, "Deployment", "statusgate");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];

    // The image is pinned to the package version.
    assert_eq!(c["image"], format!("statusgate:{}", env!("CARGO_PKG_VERSION")));
    assert!(
        deploy["spec"].get("replicas").is_none(),
        "the HorizontalPodAutoscaler owns replicas"
    );

    // Hardening.
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert!(c["resources"]["requests"]["cpu"].is_string() && c["resources"]["limits"]["memory"].is_string());
    assert!(pod["topologySpreadConstraints"]
        .as_array()
        .is_some_and(|t| !t.is_empty()));

    // Ports: the configuration's listener and admin addresses are the container's ports.
    let port_of = |name: &str| {
        c["ports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(config["listen"], format!("0.0.0.0:{}", port_of("http")));
    assert_eq!(config["admin"]["addr"], format!("0.0.0.0:{}", port_of("admin")));
    for (probe, path) in [
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("livenessProbe", "/healthz"),
    ] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert_eq!(c[probe]["httpGet"]["port"], "admin", "{probe}");
    }

    // Shutdown: preStop sleep, then SIGTERM and server.grace_period, within the grace.
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .expect("preStop sleep");
    let grace = seconds(config["server"]["grace_period"].as_str().unwrap());
    let termination = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        termination > pre_stop + grace,
        "terminationGracePeriodSeconds {termination} <= preStop {pre_stop} + grace_period {grace}"
    );

    // Files: the configuration is mounted where args name it, the token beside it, the upgrade
    // socket in the emptyDir (the only writable path).
    assert_eq!(
        c["args"],
        serde_json::json!(["run", "-c", "/etc/statusgate/statusgate.yaml"])
    );
    let mount = |name: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"))
    };
    assert_eq!(mount("config")["mountPath"], "/etc/statusgate");
    assert_eq!(mount("config")["readOnly"], true);
    let run_dir = mount("run")["mountPath"].as_str().unwrap();
    let sock = config["server"]["upgrade_sock"].as_str().unwrap();
    assert_eq!(
        Path::new(sock).parent(),
        Some(Path::new(run_dir)),
        "upgrade_sock in the emptyDir"
    );
    let volumes = pod["volumes"].as_array().unwrap();
    let run_volume = volumes.iter().find(|v| v["name"] == "run").unwrap();
    assert!(run_volume["emptyDir"].is_object());
    let sources = volumes.iter().find(|v| v["name"] == "config").unwrap()["projected"]["sources"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        sources[0]["configMap"]["name"], cm["metadata"]["name"],
        "the generated ConfigMap"
    );
    let token = &sources[1]["secret"]["items"][0];
    assert_eq!(
        token["path"], config["admin"]["token_file"],
        "token_file is the projected Secret item"
    );

    // NetworkPolicy: the listener from anywhere, the admin port only from `monitoring`.
    let np = one(&docs, "NetworkPolicy", "statusgate");
    let rules = np["spec"]["ingress"].as_array().unwrap();
    let open = rules
        .iter()
        .find(|r| r.get("from").is_none())
        .expect("an ingress rule from anywhere");
    assert_eq!(open["ports"], serde_json::json!([{"port": "http", "protocol": "TCP"}]));
    let admin = rules.iter().find(|r| r.get("from").is_some()).unwrap();
    assert_eq!(admin["ports"][0]["port"], "admin");
    assert_eq!(
        admin["from"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "monitoring"
    );

    // PodDisruptionBudget, HorizontalPodAutoscaler target the Deployment's pods.
    let labels = &deploy["spec"]["template"]["metadata"]["labels"];
    let pdb = one(&docs, "PodDisruptionBudget", "statusgate");
    for (k, v) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&labels[k], v, "PDB selector {k}");
    }
    let hpa = one(&docs, "HorizontalPodAutoscaler", "statusgate");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deploy["metadata"]["name"]);
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);

    // ServiceMonitor (a CRD): selects the admin Service, whose port it names, with job="statusgate".
    let sm = one(&docs, "ServiceMonitor", "statusgate");
    let svc = docs
        .iter()
        .filter(|d| d["kind"] == "Service")
        .find(|s| {
            sm["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap()
                .iter()
                .all(|(k, v)| &s["metadata"]["labels"][k] == v)
        })
        .expect("a Service the ServiceMonitor selects");
    let endpoint = &sm["spec"]["endpoints"][0];
    assert_eq!(svc["spec"]["ports"][0]["name"], endpoint["port"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "admin");
    assert_eq!(endpoint["path"], "/metrics");
    let job_label = sm["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(
        svc["metadata"]["labels"][job_label], "statusgate",
        "job=\"statusgate\" (alerts.yaml)"
    );
}

#[test]
fn the_example_overlay_changes_what_it_says() {
    let (_, docs) = render("deploy/kubernetes/overlays/example");
    let deploy = one(&docs, "Deployment", "statusgate");
    assert_eq!(deploy["metadata"]["namespace"], "statusgate");
    let image = deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    assert!(
        image.ends_with(&format!("/statusgate:{}", env!("CARGO_PKG_VERSION"))),
        "{image}: pinned"
    );
    let ns = one(&docs, "Namespace", "statusgate");
    assert_eq!(
        ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "restricted"
    );
    assert_eq!(
        one(&docs, "HorizontalPodAutoscaler", "statusgate")["spec"]["minReplicas"],
        4
    );
}
