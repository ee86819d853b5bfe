//! Deployment files: the systemd unit, its account and udev rules, the Prometheus config and
//! alert rules, the Grafana dashboard and provisioning, and `deploy/install.sh`.
//!
//! External checkers (`systemd-analyze`, `promtool`, `prometheus`, `shellcheck`) skip their test
//! with a printed reason when missing, or fail it with `SPECWATCH_REQUIRE_PROMTOOL=1`.
//!
//! `systemd-analyze verify` checks that every `ExecStart=` binary exists and loads the units the
//! service depends on (`sysinit.target`, `network-online.target`, …). The tests therefore verify
//! inside a scratch root (`--root=`): the unit under `etc/systemd/system`, a stub
//! `usr/bin/specwatch`, and a copy of the host's own units under `usr/lib/systemd/system`. Any
//! warning about the unit counts as a failure, since verify itself exits 0 on unknown keys.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::prometheus::{
    MetricKind, MetricSpec, MetricsEndpoint, PrometheusServer, dashboard_panels, dashboard_path,
    interface_metrics, label_values_to_promql, panel_exprs, panel_queries, repo_root,
    resolve_series, sample_exposition, scan_promql, tool, variable_queries,
};
use crate::common::scratch;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

fn output_text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("start {:?}: {e}", cmd.get_program()))
}

// ---------------------------------------------------------------------------------------------
// systemd

/// `key → values` of one section of a unit file (keys may repeat).
fn unit_section(text: &str, section: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            current = line.trim_matches(|c| c == '[' || c == ']').to_string();
        } else if current == section {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("unit line without '=': {line}"));
            out.entry(key.trim().to_string())
                .or_default()
                .push(value.trim().to_string());
        }
    }
    out
}

fn systemd_version(analyze: &Path) -> Option<u32> {
    let out = run(Command::new(analyze).arg("--version"));
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
}

/// A scratch root for `systemd-analyze --root=`: the host's units, a stub daemon at
/// `<bin_path>` (unless already there) and the given unit text as
/// `etc/systemd/system/specwatch.service` (unless `None`: already staged there).
fn systemd_root(root: &Path, unit: Option<&str>, bin_path: &str) {
    let host_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("sysinit.target").exists())
        .expect("the host's systemd units (sysinit.target) under /usr/lib/systemd/system");
    let units = root.join("usr/lib/systemd/system");
    if !units.exists() {
        std::fs::create_dir_all(units.parent().unwrap()).unwrap();
        let out = run(Command::new("cp").arg("-a").arg(host_units).arg(&units));
        assert!(
            out.status.success(),
            "copy host units: {}",
            output_text(&out)
        );
    }
    let stub = root.join(bin_path.trim_start_matches('/'));
    if !stub.exists() {
        std::fs::create_dir_all(stub.parent().unwrap()).unwrap();
        std::fs::write(&stub, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    if let Some(unit) = unit {
        let dir = root.join("etc/systemd/system");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("specwatch.service"), unit).unwrap();
    }
}

/// Runs `systemd-analyze verify` on the unit staged in `root`; returns (success, lines about
/// specwatch).
fn verify_in_root(analyze: &Path, root: &Path) -> (bool, Vec<String>) {
    let out = run(Command::new(analyze)
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .arg("--man=no")
        .arg(root.join("etc/systemd/system/specwatch.service")));
    let lines = output_text(&out)
        .lines()
        .filter(|l| l.contains("specwatch"))
        .map(str::to_string)
        .collect();
    (out.status.success(), lines)
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let dir = scratch();
    let unit = read(&repo_root().join("systemd/specwatch.service"));
    systemd_root(dir.path(), Some(&unit), "/usr/bin/specwatch");
    let (ok, complaints) = verify_in_root(&analyze, dir.path());
    assert!(
        ok && complaints.is_empty(),
        "systemd-analyze verify:\n{}",
        complaints.join("\n")
    );

    let version = systemd_version(&analyze).unwrap_or(0);
    if version >= 254 {
        let dropin = dir.path().join("etc/systemd/system/specwatch.service.d");
        std::fs::create_dir_all(&dropin).unwrap();
        std::fs::copy(
            repo_root().join("systemd/backoff.conf"),
            dropin.join("backoff.conf"),
        )
        .unwrap();
        let (ok, complaints) = verify_in_root(&analyze, dir.path());
        assert!(
            ok && complaints.is_empty(),
            "with backoff.conf:\n{}",
            complaints.join("\n")
        );
    } else {
        eprintln!(
            "SKIPPED: systemd {version} predates RestartSteps= (254): backoff.conf not verified here"
        );
    }
}

/// The verify check is not vacuous: a misspelled key and a missing binary are both reported.
#[test]
fn systemd_verify_reports_a_misspelled_key_and_a_missing_binary() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let unit = read(&repo_root().join("systemd/specwatch.service"));

    let dir = scratch();
    systemd_root(
        dir.path(),
        Some(&unit.replace("WatchdogSec=30", "WatchdogSecs=30")),
        "/usr/bin/specwatch",
    );
    let (_, complaints) = verify_in_root(&analyze, dir.path());
    assert!(
        complaints.iter().any(|l| l.contains("WatchdogSecs")),
        "a misspelled key went unnoticed: {complaints:?}"
    );

    let dir = scratch();
    systemd_root(dir.path(), Some(&unit), "/usr/bin/not-specwatch");
    let (ok, complaints) = verify_in_root(&analyze, dir.path());
    assert!(
        !ok && complaints.iter().any(|l| l.contains("/usr/bin/specwatch")),
        "a missing ExecStart binary went unnoticed: {complaints:?}"
    );
}

/// `systemd-analyze security` rates the unit; hardening that regresses past "OK" (≤ 2.5 on its
/// 0–10 scale, 1.7 when written) fails here.
#[test]
fn systemd_unit_hardening_exposure_stays_ok() {
    let Some(analyze) = tool("systemd-analyze") else {
        return;
    };
    let dir = scratch();
    systemd_root(
        dir.path(),
        Some(&read(&repo_root().join("systemd/specwatch.service"))),
        "/usr/bin/specwatch",
    );
    let out = run(Command::new(&analyze)
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", dir.path().display()))
        .arg(dir.path().join("etc/systemd/system/specwatch.service")));
    let text = output_text(&out);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level for specwatch.service"))
        .unwrap_or_else(|| panic!("no overall exposure in:\n{text}"));
    let score: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the score in {line:?}"));
    eprintln!("systemd-analyze security: {}", line.trim());
    assert!(score <= 2.5, "exposure {score} > 2.5:\n{text}");
}

#[test]
fn systemd_unit_states_the_service_contract() {
    let unit = read(&repo_root().join("systemd/specwatch.service"));
    let service = unit_section(&unit, "Service");
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("[Service] {key}: expected one value, found {other:?}"),
        }
    };
    assert_eq!(one("Type"), "notify");
    assert_eq!(one("NotifyAccess"), "main");
    assert_eq!(one("WatchdogSec"), "30");
    assert_eq!(
        one("ExecStartPre"),
        "/usr/bin/specwatch check --config /etc/specwatch/specwatch.toml"
    );
    assert_eq!(
        one("ExecStart"),
        "/usr/bin/specwatch run --config /etc/specwatch/specwatch.toml"
    );
    assert_eq!(one("Restart"), "on-failure");
    assert_eq!(one("User"), "specwatch");
    assert_eq!(one("Group"), "specwatch");
    assert_eq!(one("SupplementaryGroups"), "plugdev");
    assert_eq!(one("StateDirectory"), "specwatch");
    assert_eq!(one("ConfigurationDirectory"), "specwatch");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("ProtectHome"), "yes");
    assert_eq!(one("PrivateTmp"), "yes");
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("LimitMEMLOCK"), "infinity");
    assert!(
        service["Environment"]
            .contains(&"ORT_DYLIB_PATH=/usr/lib/specwatch/libonnxruntime.so".to_string()),
        "the unit does not point ONNX Runtime at the installed library"
    );
    assert!(one("LimitRTPRIO").parse::<u32>().is_ok_and(|p| p > 0));
    assert_eq!(one("CapabilityBoundingSet"), "", "no capabilities");
    assert!(service["DeviceAllow"].contains(&"char-usb_device rw".to_string()));
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    for family in ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_UNIX"] {
        assert!(
            families.contains(family),
            "RestrictAddressFamilies lacks {family}"
        );
    }
    assert!(
        !service.contains_key("PrivateNetwork"),
        "the X300 is reached over the network"
    );
    let restart_sec: u32 = one("RestartSec").parse().expect("RestartSec in seconds");
    assert!(
        restart_sec >= 5,
        "RestartSec={restart_sec}: restart without a pause"
    );
    let unit_section = unit_section(&unit, "Unit");
    assert!(
        unit_section.contains_key("StartLimitBurst"),
        "no restart limit"
    );
    assert_eq!(unit_section["After"], vec!["network-online.target"]);
}

#[test]
fn sysusers_and_udev_rules_provide_the_account_and_groups_the_unit_uses() {
    let sysusers = read(&repo_root().join("systemd/specwatch.sysusers"));
    let entries: Vec<Vec<&str>> = sysusers
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        entries.iter().any(|e| e[..2] == ["u", "specwatch"]),
        "no user specwatch in {entries:?}"
    );
    assert!(
        entries.iter().any(|e| e[..2] == ["g", "plugdev"]),
        "no group plugdev in {entries:?}"
    );
    let home = sysusers
        .lines()
        .find(|l| l.starts_with("u specwatch"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap();
    assert_eq!(
        home, "/var/lib/specwatch",
        "the user's home is its state directory"
    );

    // Every rule: comma-separated KEY[{attr}] OP "value" pairs; matches and one GROUP="plugdev".
    let rules = read(&repo_root().join("systemd/60-specwatch-sdr.rules"));
    let pair = |s: &str| -> Option<(String, String, String)> {
        let s = s.trim();
        let op_at = s.find(['=', '!', '+', ':'])?;
        let (key, rest) = s.split_at(op_at);
        let op_len = if rest.starts_with("==")
            || rest.starts_with("!=")
            || rest.starts_with("+=")
            || rest.starts_with(":=")
        {
            2
        } else {
            1
        };
        let (op, value) = rest.split_at(op_len);
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        let key_ok = key.chars().all(|c| {
            c.is_ascii_uppercase() || c == '_' || c == '{' || c == '}' || c.is_ascii_alphanumeric()
        });
        key_ok.then(|| (key.to_string(), op.to_string(), value.to_string()))
    };
    let mut device_rules = 0;
    for (number, line) in rules.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let pairs: Vec<_> = line.split(", ").map(|p| (p, pair(p))).collect();
        for (text, parsed) in &pairs {
            assert!(
                parsed.is_some(),
                "60-specwatch-sdr.rules:{}: cannot read {text:?}",
                number + 1
            );
        }
        let pairs: Vec<_> = pairs.into_iter().filter_map(|(_, p)| p).collect();
        if pairs.iter().any(|(k, _, _)| k == "ATTR{idVendor}") {
            device_rules += 1;
            assert!(
                pairs.contains(&("GROUP".into(), "=".into(), "plugdev".into())),
                "60-specwatch-sdr.rules:{}: device not given to plugdev",
                number + 1
            );
            let vendor = &pairs
                .iter()
                .find(|(k, _, _)| k == "ATTR{idVendor}")
                .unwrap()
                .2;
            assert!(
                vendor.len() == 4 && vendor.chars().all(|c| c.is_ascii_hexdigit()),
                "60-specwatch-sdr.rules:{}: vendor id {vendor:?} is not 4 hex digits",
                number + 1
            );
        }
    }
    assert!(device_rules >= 5, "only {device_rules} device rules");
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn prometheus_config_and_rules_pass_promtool() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = repo_root().join("deploy/prometheus");
    let out = run(Command::new(&promtool)
        .args(["check", "config"])
        .arg(dir.join("prometheus.yml")));
    assert!(
        out.status.success(),
        "promtool check config:\n{}",
        output_text(&out)
    );
    // check config follows rule_files: the rules must have been found and checked too.
    assert!(
        output_text(&out).contains("1 rule files found"),
        "prometheus.yml does not load rules.yml:\n{}",
        output_text(&out)
    );
    let out = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(dir.join("rules.yml")));
    assert!(
        out.status.success(),
        "promtool check rules:\n{}",
        output_text(&out)
    );

    let config = read(&dir.join("prometheus.yml"));
    assert!(
        config.contains("targets: [\"127.0.0.1:9930\"]"),
        "scrape target"
    );
    assert!(
        config.contains("scrape_interval: 5s"),
        "scrape interval of the specwatch job"
    );
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let tests = repo_root().join("deploy/prometheus/tests/rules_test.yml");
    let out = run(Command::new(&promtool).args(["test", "rules"]).arg(&tests));
    assert!(
        out.status.success(),
        "promtool test rules:\n{}",
        output_text(&out)
    );

    // Every alert in rules.yml has at least one unit test.
    let rules = read(&repo_root().join("deploy/prometheus/rules.yml"));
    let tested = read(&tests);
    for alert in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tested.contains(&format!("alertname: {alert}")),
            "alert {alert} has no test in {}",
            tests.display()
        );
    }
}

/// The alert unit tests are not vacuous: promtool fails a test whose expectation is wrong.
#[test]
fn promtool_unit_tests_fail_on_a_wrong_expectation() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = scratch();
    let tests = read(&repo_root().join("deploy/prometheus/tests/rules_test.yml"))
        .replace(
            "../rules.yml",
            &repo_root()
                .join("deploy/prometheus/rules.yml")
                .display()
                .to_string(),
        )
        .replacen("instance: station-a:9930", "instance: station-z:9930", 1);
    let path = dir.path().join("wrong_test.yml");
    std::fs::write(&path, tests).unwrap();
    let out = run(Command::new(&promtool).args(["test", "rules"]).arg(&path));
    assert!(
        !out.status.success(),
        "a wrong expectation passed:\n{}",
        output_text(&out)
    );
}

/// `expr:` values of a rules file: one-line, or `expr: |` blocks.
fn rule_exprs(rules: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = rules.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(value) = line.trim().strip_prefix("expr:") {
            let value = value.trim();
            if value == "|" || value == ">" {
                let indent = line.len() - line.trim_start().len();
                let mut block = Vec::new();
                i += 1;
                while i < lines.len()
                    && (lines[i].trim().is_empty()
                        || lines[i].len() - lines[i].trim_start().len() > indent)
                {
                    block.push(lines[i].trim());
                    i += 1;
                }
                out.push(block.join(" "));
                continue;
            }
            out.push(value.to_string());
        }
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Metric names

/// Checks one expression against the metric list: every selected series is an interface metric
/// (histogram series allowed), its matchers use that metric's labels (plus job, instance, and le
/// on buckets), and grouping labels exist on some selected metric. `extra` names are allowed as
/// series without label checks (Prometheus's `up`, recording rules).
fn check_expr(
    metrics: &[MetricSpec],
    extra: &BTreeSet<String>,
    what: &str,
    expr: &str,
) -> Vec<String> {
    let refs = scan_promql(expr);
    let mut problems = Vec::new();
    let mut known_labels: BTreeSet<String> = ["job", "instance"].map(String::from).into();
    if refs.selectors.is_empty() {
        problems.push(format!("{what}: no metric in {expr}"));
    }
    for (series, matchers) in &refs.selectors {
        if extra.contains(series) {
            known_labels.extend(matchers.iter().cloned());
            continue;
        }
        let Some((spec, has_le)) = resolve_series(metrics, series) else {
            problems.push(format!(
                "{what}: '{series}' is not in deploy/metrics.md ({expr})"
            ));
            continue;
        };
        let mut allowed: BTreeSet<String> = spec.labels.iter().cloned().collect();
        allowed.extend(["job".to_string(), "instance".to_string()]);
        if has_le {
            allowed.insert("le".into());
        }
        for label in matchers {
            if !allowed.contains(label) {
                problems.push(format!("{what}: {series} has no label '{label}' ({expr})"));
            }
        }
        known_labels.extend(allowed);
    }
    for label in &refs.grouping_labels {
        if !known_labels.contains(label) {
            problems.push(format!(
                "{what}: groups by '{label}', which no selected metric has ({expr})"
            ));
        }
    }
    problems
}

#[test]
fn metric_list_is_readable_and_complete() {
    let metrics = interface_metrics();
    assert_eq!(metrics.len(), 23, "deploy/metrics.md lists 23 metrics");
    let names: BTreeSet<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names.len(), metrics.len(), "a metric is listed twice");
    for m in &metrics {
        assert!(
            m.name.starts_with("specwatch_"),
            "{}: no specwatch_ prefix",
            m.name
        );
        assert_eq!(
            m.kind == MetricKind::Counter,
            m.name.ends_with("_total"),
            "{}: counters, and only counters, end in _total",
            m.name
        );
    }
    let dropped = metrics
        .iter()
        .find(|m| m.name == "specwatch_windows_dropped_total")
        .unwrap();
    assert_eq!(
        dropped.label_values["reason"],
        ["queue_full", "nonfinite", "shutdown"],
        "reasons read from the meaning column"
    );
    let azimuth = metrics
        .iter()
        .find(|m| m.name == "specwatch_detection_azimuth_degrees")
        .unwrap();
    assert_eq!(
        azimuth.label_values["estimator"],
        specwatch::telemetry::BEARING_ESTIMATORS,
        "the documented estimators are the daemon's"
    );
}

#[test]
fn promql_scanner_finds_metric_names_and_labels() {
    let refs = scan_promql(
        r#"histogram_quantile(0.99, sum by (le, model) (rate(specwatch_inference_latency_seconds_bucket{instance=~"$instance", model!="a,b{c}"}[$__rate_interval]))) > 0.25"#,
    );
    assert_eq!(
        refs.selectors,
        vec![(
            "specwatch_inference_latency_seconds_bucket".to_string(),
            vec!["instance".to_string(), "model".to_string()]
        )]
    );
    assert_eq!(
        refs.grouping_labels,
        ["le", "model"].map(String::from).into()
    );

    let refs = scan_promql(
        "(sum by (job, instance) (increase(a_total[30m])) or on (job, instance) 0 * b) == 0 \
         and on (instance) (c offset 30m == 1) unless topk(3, d) / ignoring(x) group_left(y) e bool > 1e-3",
    );
    assert_eq!(
        refs.metric_names(),
        ["a_total", "b", "c", "d", "e"].map(String::from).into()
    );
    assert_eq!(
        refs.grouping_labels,
        ["job", "instance", "x", "y"].map(String::from).into()
    );

    // The check built on it flags unknown metrics, unknown labels and unknown grouping labels.
    let metrics = interface_metrics();
    let none = BTreeSet::new();
    assert!(check_expr(&metrics, &none, "t", "rate(specwatch_samples_in_total[1m])").is_empty());
    assert_eq!(
        check_expr(&metrics, &none, "t", "rate(specwatch_samples_total[1m])").len(),
        1
    );
    assert_eq!(
        check_expr(&metrics, &none, "t", r#"specwatch_store_rows{source="x"}"#).len(),
        1
    );
    assert_eq!(
        check_expr(
            &metrics,
            &none,
            "t",
            "sum by (class) (specwatch_store_rows)"
        )
        .len(),
        1
    );
    assert_eq!(
        check_expr(&metrics, &none, "t", "specwatch_store_rows_bucket").len(),
        1,
        "not a histogram"
    );
    assert!(check_expr(&metrics, &none, "t", "specwatch_detection_snr_db_count").is_empty());
}

#[test]
fn dashboard_and_rules_use_only_interface_metrics() {
    let metrics = interface_metrics();
    let mut problems = Vec::new();
    let none = BTreeSet::new();
    for (title, expr) in panel_exprs(&dashboard_path()) {
        problems.extend(check_expr(
            &metrics,
            &none,
            &format!("panel {title}"),
            &expr,
        ));
    }
    for (name, query) in variable_queries(&dashboard_path()) {
        let promql = label_values_to_promql(&query).unwrap_or_else(|| {
            panic!("variable {name}: not a label_values(selector, label) query: {query}")
        });
        problems.extend(check_expr(
            &metrics,
            &none,
            &format!("variable {name}"),
            &promql,
        ));
    }
    let rules = read(&repo_root().join("deploy/prometheus/rules.yml"));
    let mut extra: BTreeSet<String> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- record: "))
        .map(str::to_string)
        .collect();
    extra.insert("up".into());
    let exprs = rule_exprs(&rules);
    assert!(
        exprs.len() >= 15,
        "only {} rule expressions read",
        exprs.len()
    );
    for expr in exprs {
        problems.extend(check_expr(&metrics, &extra, "rules.yml", &expr));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn dashboard_shows_every_interface_metric() {
    let metrics = interface_metrics();
    let mut used = BTreeSet::new();
    for (_, expr) in panel_exprs(&dashboard_path()) {
        for series in scan_promql(&expr).metric_names() {
            if let Some((spec, _)) = resolve_series(&metrics, &series) {
                used.insert(spec.name.clone());
            }
        }
    }
    let missing: Vec<&str> = metrics
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| !used.contains(*n))
        .collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

// ---------------------------------------------------------------------------------------------
// Grafana

#[test]
fn dashboard_is_well_formed() {
    let path = dashboard_path();
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path)).expect("dashboard JSON");
    assert_eq!(dashboard["uid"], "specwatch-station");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));

    let vars = dashboard["templating"]["list"]
        .as_array()
        .expect("templating.list");
    let datasource = vars
        .iter()
        .find(|v| v["type"] == "datasource")
        .expect("a datasource variable");
    assert_eq!(datasource["query"], "prometheus");
    let ds_ref = format!("${{{}}}", datasource["name"].as_str().unwrap());

    let panels = dashboard_panels(&dashboard);
    let mut ids = BTreeSet::new();
    let mut cells: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for panel in &panels {
        let title = panel["title"].as_str().expect("every panel has a title");
        assert!(
            ids.insert(panel["id"].as_u64().expect("panel id")),
            "panel id repeated: {title}"
        );
        let grid = &panel["gridPos"];
        let (x, y, w, h) = (
            grid["x"].as_u64().unwrap(),
            grid["y"].as_u64().unwrap(),
            grid["w"].as_u64().unwrap(),
            grid["h"].as_u64().unwrap(),
        );
        assert!(
            x + w <= 24 && w > 0 && h > 0,
            "panel {title}: gridPos {grid}"
        );
        for cx in x..x + w {
            for cy in y..y + h {
                if let Some(other) = cells.insert((cx, cy), title.to_string()) {
                    panic!("panels {other:?} and {title:?} overlap at ({cx}, {cy})");
                }
            }
        }
        if panel["type"] == "row" {
            continue;
        }
        assert!(
            panel["description"].as_str().is_some_and(|d| !d.is_empty()),
            "panel {title}: no description"
        );
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title}: no query");
        for t in
            std::iter::once(&panel["datasource"]).chain(targets.iter().map(|t| &t["datasource"]))
        {
            assert_eq!(t["type"], "prometheus", "panel {title}: datasource {t}");
            assert_eq!(t["uid"], ds_ref.as_str(), "panel {title}: datasource {t}");
        }
    }
    let titles: Vec<&str> = panels.iter().filter_map(|p| p["title"].as_str()).collect();
    for wanted in [
        "Detections by class",
        "SNR distribution",
        "AoA azimuth distribution",
        "AoA bearing disagreement",
        "Inference latency p50 / p99",
        "Batch size",
        "Windows dropped by reason",
        "Device overflows and stream errors",
        "Stored detections",
        "Store write errors",
        "Source up",
        "Samples in",
    ] {
        assert!(
            titles.contains(&wanted),
            "no panel {wanted:?} in {titles:?}"
        );
    }
}

/// `key: value` of a simple YAML file (the provisioning files have one item each).
fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .filter_map(|l| {
            l.trim()
                .trim_start_matches("- ")
                .strip_prefix(&format!("{key}:"))
        })
        .map(str::trim)
        .next()
        .unwrap_or_else(|| panic!("no '{key}:' in\n{text}"))
}

#[test]
fn grafana_provisioning_matches_the_dashboard_and_the_installed_layout() {
    let dir = repo_root().join("deploy/grafana/provisioning");
    let datasource = read(&dir.join("datasources/specwatch.yaml"));
    let provider = read(&dir.join("dashboards/specwatch.yaml"));
    assert_eq!(yaml_value(&datasource, "apiVersion"), "1");
    assert_eq!(yaml_value(&datasource, "type"), "prometheus");
    assert_eq!(yaml_value(&datasource, "url"), "http://127.0.0.1:9090");
    assert_eq!(
        yaml_value(&datasource, "isDefault"),
        "false",
        "a second default datasource makes Grafana refuse the provisioning"
    );
    // $__rate_interval is right only if Grafana knows the scrape interval.
    let prometheus = read(&repo_root().join("deploy/prometheus/prometheus.yml"));
    assert!(prometheus.contains(&format!(
        "scrape_interval: {}",
        yaml_value(&datasource, "timeInterval")
    )));

    let dashboard: serde_json::Value = serde_json::from_str(&read(&dashboard_path())).unwrap();
    let var = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["type"] == "datasource")
        .unwrap();
    assert_eq!(var["current"]["value"], yaml_value(&datasource, "uid"));
    assert_eq!(var["current"]["text"], yaml_value(&datasource, "name"));

    assert_eq!(yaml_value(&provider, "type"), "file");
    assert_eq!(
        yaml_value(&provider, "path"),
        "/usr/share/specwatch/grafana/dashboards"
    );
}

// ---------------------------------------------------------------------------------------------
// install.sh

fn install_script() -> PathBuf {
    repo_root().join("deploy/install.sh")
}

#[test]
fn install_script_passes_bash_n_and_shellcheck() {
    let out = run(Command::new("bash").arg("-n").arg(install_script()));
    assert!(out.status.success(), "bash -n:\n{}", output_text(&out));
    let text = read(&install_script());
    assert!(text.starts_with("#!/usr/bin/env bash\n"));
    assert!(text.contains("\nset -euo pipefail\n"));
    let mode = install_script().metadata().unwrap().permissions().mode();
    assert!(mode & 0o111 != 0, "install.sh is not executable");
    let Some(shellcheck) = tool("shellcheck") else {
        return;
    };
    let out = run(Command::new(shellcheck).arg(install_script()));
    assert!(out.status.success(), "shellcheck:\n{}", output_text(&out));
}

/// Inputs for a staged installation: a stub binary, one model pair, a runtime library and a
/// config, all in `dir`.
struct Inputs {
    binary: PathBuf,
    models: PathBuf,
    runtime: PathBuf,
    config: PathBuf,
}

fn inputs(dir: &Path) -> Inputs {
    let binary = dir.join("specwatch");
    std::fs::write(&binary, "#!/bin/sh\nexit 0\n").unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::write(models.join("amc-cnn.onnx"), b"onnx bytes").unwrap();
    std::fs::write(models.join("amc-cnn.json"), b"{\"name\": \"amc-cnn\"}").unwrap();
    let capi = dir.join("capi");
    std::fs::create_dir_all(&capi).unwrap();
    let runtime = capi.join("libonnxruntime.so.1.31.1");
    std::fs::write(&runtime, b"runtime").unwrap();
    std::fs::write(
        capi.join("libonnxruntime_providers_shared.so"),
        b"providers",
    )
    .unwrap();
    let config = dir.join("station.toml");
    std::fs::write(&config, "# station config\n").unwrap();
    Inputs {
        binary,
        models,
        runtime,
        config,
    }
}

fn install(destdir: &Path, inputs: &Inputs, extra: &[&str]) -> Output {
    run(Command::new("bash")
        .arg(install_script())
        .env("DESTDIR", destdir)
        .env_remove("ORT_DYLIB_PATH")
        .arg("--binary")
        .arg(&inputs.binary)
        .arg("--models")
        .arg(&inputs.models)
        .arg("--onnxruntime")
        .arg(&inputs.runtime)
        .arg("--config")
        .arg(&inputs.config)
        .args(extra))
}

/// Every file under `root`: relative path → (mode, contents).
fn tree(root: &Path) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = path.metadata().unwrap().permissions().mode() & 0o7777;
                out.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    (mode, std::fs::read(&path).unwrap()),
                );
            }
        }
    }
    out
}

#[test]
fn install_script_stages_the_layout_into_destdir_and_is_idempotent() {
    let dir = scratch();
    let inputs = inputs(dir.path());
    let root = dir.path().join("root");
    let out = install(&root, &inputs, &["--grafana", "--prometheus"]);
    assert!(out.status.success(), "install.sh:\n{}", output_text(&out));

    let first = tree(&root);
    let expect = |path: &str, mode: u32| {
        let (m, _) = first.get(Path::new(path)).unwrap_or_else(|| {
            panic!(
                "{path} not installed; tree: {:?}",
                first.keys().collect::<Vec<_>>()
            )
        });
        assert_eq!(*m, mode, "{path}: mode {m:o}, expected {mode:o}");
    };
    expect("usr/bin/specwatch", 0o755);
    expect("usr/share/specwatch/models/amc-cnn.onnx", 0o644);
    expect("usr/share/specwatch/models/amc-cnn.json", 0o644);
    expect("usr/lib/specwatch/libonnxruntime.so", 0o644);
    expect(
        "usr/lib/specwatch/libonnxruntime_providers_shared.so",
        0o644,
    );
    expect("etc/specwatch/specwatch.toml", 0o644);
    expect("etc/systemd/system/specwatch.service", 0o644);
    expect("etc/sysusers.d/specwatch.conf", 0o644);
    expect("etc/udev/rules.d/60-specwatch-sdr.rules", 0o644);
    expect("usr/share/specwatch/prometheus/prometheus.yml", 0o644);
    expect("usr/share/specwatch/prometheus/rules.yml", 0o644);
    expect(
        "usr/share/specwatch/grafana/dashboards/specwatch.json",
        0o644,
    );
    expect(
        "usr/share/specwatch/grafana/provisioning/datasources/specwatch.yaml",
        0o644,
    );
    expect(
        "usr/share/specwatch/grafana/provisioning/dashboards/specwatch.yaml",
        0o644,
    );
    expect("usr/share/doc/specwatch/deploy.md", 0o644);
    expect("usr/share/doc/specwatch/metrics.md", 0o644);
    expect("etc/grafana/provisioning/datasources/specwatch.yaml", 0o644);
    expect("etc/grafana/provisioning/dashboards/specwatch.yaml", 0o644);
    expect("etc/prometheus/prometheus.yml", 0o644);

    // With the default prefix the unit is installed as written, and the copies are exact.
    let same = |installed: &str, shipped: &str| {
        assert_eq!(
            first[Path::new(installed)].1,
            std::fs::read(repo_root().join(shipped)).unwrap(),
            "{installed} differs from {shipped}"
        );
    };
    same(
        "etc/systemd/system/specwatch.service",
        "systemd/specwatch.service",
    );
    same(
        "usr/share/specwatch/grafana/dashboards/specwatch.json",
        "deploy/grafana/dashboards/specwatch.json",
    );
    same(
        "etc/grafana/provisioning/dashboards/specwatch.yaml",
        "deploy/grafana/provisioning/dashboards/specwatch.yaml",
    );
    let prometheus =
        String::from_utf8(first[Path::new("etc/prometheus/prometheus.yml")].1.clone()).unwrap();
    assert!(
        prometheus.contains("  - /usr/share/specwatch/prometheus/rules.yml\n"),
        "installed Prometheus config does not point at the installed rules:\n{prometheus}"
    );
    // The provider reads the dashboard from where it was installed.
    let provider = String::from_utf8(
        first[Path::new("etc/grafana/provisioning/dashboards/specwatch.yaml")]
            .1
            .clone(),
    )
    .unwrap();
    let dashboards = yaml_value(&provider, "path").trim_start_matches('/');
    assert!(first.contains_key(&Path::new(dashboards).join("specwatch.json")));

    // Again: the same tree.
    let out = install(&root, &inputs, &["--grafana", "--prometheus"]);
    assert!(out.status.success(), "second run:\n{}", output_text(&out));
    assert_eq!(tree(&root), first, "a second run changed the installation");

    // An edited config is kept; the shipped one goes beside it.
    let installed_config = root.join("etc/specwatch/specwatch.toml");
    std::fs::write(&installed_config, "# edited on the station\n").unwrap();
    let out = install(&root, &inputs, &[]);
    assert!(out.status.success(), "third run:\n{}", output_text(&out));
    assert_eq!(read(&installed_config), "# edited on the station\n");
    assert_eq!(
        read(&root.join("etc/specwatch/specwatch.toml.new")),
        "# station config\n"
    );
    assert!(
        output_text(&out).contains("specwatch.toml.new"),
        "not told about the new config"
    );

    // The staged root is a valid systemd root for the installed unit.
    if let Some(analyze) = tool("systemd-analyze") {
        systemd_root(&root, None, "/usr/bin/specwatch");
        let (ok, complaints) = verify_in_root(&analyze, &root);
        assert!(
            ok && complaints.is_empty(),
            "installed unit:\n{}",
            complaints.join("\n")
        );
    }
}

#[test]
fn install_script_keeps_the_prometheus_config_it_replaces_once() {
    let dir = scratch();
    let inputs = inputs(dir.path());
    let root = dir.path().join("root");
    let existing = root.join("etc/prometheus/prometheus.yml");
    std::fs::create_dir_all(existing.parent().unwrap()).unwrap();
    std::fs::write(&existing, "# the site's own config\n").unwrap();
    for _ in 0..2 {
        let out = install(&root, &inputs, &["--prometheus"]);
        assert!(
            out.status.success(),
            "install.sh --prometheus:\n{}",
            output_text(&out)
        );
    }
    assert_eq!(
        read(&root.join("etc/prometheus/prometheus.yml.before-specwatch")),
        "# the site's own config\n",
        "the original config was not kept (or overwritten by the second run)"
    );
    assert!(read(&existing).contains("job_name: specwatch"));
}

#[test]
fn install_script_relocates_paths_for_another_prefix() {
    let dir = scratch();
    let inputs = inputs(dir.path());
    let root = dir.path().join("root");
    let out = install(&root, &inputs, &["--prefix", "/opt/specwatch", "--grafana"]);
    assert!(
        out.status.success(),
        "install.sh --prefix:\n{}",
        output_text(&out)
    );
    assert!(root.join("opt/specwatch/bin/specwatch").exists());
    assert!(
        root.join("opt/specwatch/lib/specwatch/libonnxruntime.so")
            .exists()
    );
    let unit = read(&root.join("etc/systemd/system/specwatch.service"));
    let service = unit_section(&unit, "Service");
    assert_eq!(
        service["ExecStart"],
        ["/opt/specwatch/bin/specwatch run --config /etc/specwatch/specwatch.toml"]
    );
    assert!(
        !unit.contains("/usr/bin/specwatch"),
        "a /usr path left in the unit"
    );
    let provider = read(&root.join("etc/grafana/provisioning/dashboards/specwatch.yaml"));
    assert_eq!(
        yaml_value(&provider, "path"),
        "/opt/specwatch/share/specwatch/grafana/dashboards"
    );

    if let Some(analyze) = tool("systemd-analyze") {
        systemd_root(&root, None, "/opt/specwatch/bin/specwatch");
        let (ok, complaints) = verify_in_root(&analyze, &root);
        assert!(
            ok && complaints.is_empty(),
            "relocated unit:\n{}",
            complaints.join("\n")
        );
    }
}

#[test]
fn install_script_refuses_bad_input_before_installing_anything() {
    let dir = scratch();
    let inputs = inputs(dir.path());
    let root = dir.path().join("root");

    // (case, with a model that has no card, arguments, expected message)
    let cases: [(&str, bool, &[&str], &str); 4] = [
        ("model without card", true, &[], "has no model card"),
        (
            "unknown option",
            false,
            &["--frobnicate"],
            "unknown option '--frobnicate'",
        ),
        (
            "relative prefix",
            false,
            &["--prefix", "usr"],
            "--prefix must be an absolute path",
        ),
        (
            "enable while staging",
            false,
            &["--enable"],
            "--enable cannot be used with DESTDIR",
        ),
    ];
    let orphan = inputs.models.join("orphan.onnx");
    for (case, with_orphan, args, message) in cases {
        if with_orphan {
            std::fs::write(&orphan, b"x").unwrap();
        }
        let out = install(&root, &inputs, args);
        let text = output_text(&out);
        assert!(!out.status.success(), "{case}: accepted:\n{text}");
        assert!(
            text.contains(message),
            "{case}: expected {message:?} in:\n{text}"
        );
        assert!(
            tree(&root).is_empty(),
            "{case}: files were installed before the refusal"
        );
        if with_orphan {
            std::fs::remove_file(&orphan).unwrap();
        }
    }

    let out = run(Command::new("bash")
        .arg(install_script())
        .env("DESTDIR", &root)
        .arg("--binary")
        .arg(dir.path().join("missing"))
        .arg("--models")
        .arg(&inputs.models));
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("is not an executable file"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn install_script_refuses_to_install_into_root_without_root() {
    let dir = scratch();
    let inputs = inputs(dir.path());
    let script = install_script();
    let is_root = run(Command::new("id").arg("-u")).stdout == b"0\n";
    let mut cmd = if is_root {
        // Drop to nobody for this one run; the script and inputs must be readable by it.
        let Some(setpriv) = tool("setpriv") else {
            return;
        };
        let mut c = Command::new(setpriv);
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "bash"]);
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        c
    } else {
        Command::new("bash")
    };
    let out = run(cmd
        .arg(&script)
        .env_remove("DESTDIR")
        .arg("--binary")
        .arg(&inputs.binary)
        .arg("--models")
        .arg(&inputs.models));
    let text = output_text(&out);
    if is_root && text.contains("Permission denied") {
        eprintln!(
            "SKIPPED: the checkout is not readable by user nobody, so the non-root refusal cannot be run as root here: {text}"
        );
        return;
    }
    assert!(
        !out.status.success(),
        "installed into / without root:\n{text}"
    );
    assert!(text.contains("needs root"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus against a metrics endpoint

/// Self-check of the Prometheus harness: a real server scrapes an endpoint that serves every
/// metric of the list, and every dashboard panel query and variable query must return finite
/// data; a query of a metric nobody serves must return none.
#[test]
fn prometheus_harness_sees_data_for_every_dashboard_query() {
    if tool("prometheus").is_none() {
        return;
    }
    let metrics = interface_metrics();
    let endpoint = MetricsEndpoint::start(move |scrape| sample_exposition(&metrics, scrape));
    let prom = PrometheusServer::start(&endpoint.target()).unwrap_or_else(|e| panic!("{e}"));
    prom.wait_for_scrapes(3, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(endpoint.scrapes() >= 3);

    let mut empty = Vec::new();
    let queries = panel_queries(&dashboard_path());
    for (title, expr) in &queries {
        let samples = prom
            .query(expr)
            .unwrap_or_else(|e| panic!("panel {title}: {e}"));
        if samples.is_empty() {
            empty.push(format!("panel {title}: {expr}"));
        }
        for s in &samples {
            assert!(
                s.value.is_finite(),
                "panel {title}: {expr} gave {} for {:?}",
                s.value,
                s.labels
            );
        }
    }
    for (name, query) in variable_queries(&dashboard_path()) {
        let promql = label_values_to_promql(&query).unwrap();
        if !prom
            .has_data(&promql)
            .unwrap_or_else(|e| panic!("variable {name}: {e}"))
        {
            empty.push(format!("variable {name}: {promql}"));
        }
    }
    assert!(empty.is_empty(), "no data for:\n{}", empty.join("\n"));
    eprintln!("{} panel queries returned data", queries.len());

    assert!(!prom.has_data("specwatch_not_a_metric_total").unwrap());
    let rows = prom.query("specwatch_store_rows").unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].value > 1000.0, "store rows {}", rows[0].value);
    assert_eq!(rows[0].labels["job"], "specwatch");
    let bad = prom.query("rate(specwatch_samples_in_total[").unwrap_err();
    assert!(bad.contains("bad_data"), "{bad}");
}
