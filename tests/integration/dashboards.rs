//! The operator assets in `dashboards/` (Grafana dashboard, alert rules and
//! their tests, scrape config, README) checked against the metric catalogue.
//!
//! Expressions are read with a small PromQL lexer, enough to tell metric
//! selectors, their matchers, enclosing function calls and grouping labels
//! apart. Metric names are never written here, because only the catalogue
//! has metric names; they come from [`CATALOGUE`] or are read from the files.
//! Label keys and their value sets come from the catalogue's data too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use switchyard::protocol::catalogue::{self as cat, LabelValues, MetricDef, MetricKind, CATALOGUE};
use switchyard_tests::services_required;

/// Catalogue metrics deliberately left off every panel, each with the reason.
/// Must list exactly the metrics of the README's "Metrics not on a panel"
/// section. Empty: every metric answers a question on some panel.
const UNPANELLED: &[(&MetricDef, &str)] = &[];

/// The catalogue's name prefix, spelled so that this file holds no
/// metric-name literal.
const PREFIX: &str = concat!("switch", "yard_");
/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: &[&str] = &["job", "instance"];
/// Functions that turn a counter into something plottable.
const RATE_FUNCTIONS: &[&str] = &["rate", "irate", "increase"];
/// Series that are not Switchyard's but that alert rules may use.
const PROMETHEUS_SERIES: &[&str] = &["up"];
/// The dashboard's rows, in order.
const ROWS: &[&str] = &[
    "Throughput and outcomes",
    "Task latency",
    "Where each task's time went",
    "CPU pool",
    "Backpressure",
    "Reactor",
    "Outbound HTTP",
    "MySQL",
    "Redis",
    "Pipelines",
    "Streams",
    "Process",
];

fn dashboards_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("dashboards")
}

fn read(name: &str) -> String {
    let path = dashboards_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dashboard_files() -> Vec<PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dashboards_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboard JSON in {}", dashboards_dir().display());
    files
}

fn assert_no_problems(what: &str, problems: &[String]) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

// ---- names ----------------------------------------------------------------

/// A catalogue series: a metric itself, or one series of a histogram.
#[derive(Debug, Clone, Copy)]
struct Series {
    def: &'static MetricDef,
    /// `_bucket`, `_sum` or `_count` for a histogram's series, else empty.
    suffix: &'static str,
}

fn resolve(name: &str) -> Option<Series> {
    if let Some(def) = cat::find(name) {
        return Some(Series { def, suffix: "" });
    }
    ["_bucket", "_sum", "_count"].into_iter().find_map(|suffix| {
        let def = cat::find(name.strip_suffix(suffix)?)?;
        (def.kind == MetricKind::Histogram).then_some(Series { def, suffix })
    })
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// Every prefixed name in `text` that is not part of a longer identifier
/// (such as a recording rule's `level:metric:operation` name).
fn prefixed_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (at, _) in text.match_indices(PREFIX) {
        if text[..at].chars().next_back().is_some_and(is_ident_char) {
            continue;
        }
        let len = text[at..].find(|c: char| !is_ident_char(c)).unwrap_or(text.len() - at);
        let name = &text[at..at + len];
        if !name.contains(':') && name.len() > PREFIX.len() {
            names.insert(name.to_string());
        }
    }
    names
}

/// The closed set of values of `label` of `def`, from the catalogue; `None`
/// when `def` has no such label or the configuration names its values (a
/// pipeline's name).
fn closed_set(def: &MetricDef, label: &str) -> Option<BTreeSet<&'static str>> {
    match def.label(label)?.values {
        LabelValues::Closed(values) => Some(values.iter().copied().collect()),
        LabelValues::Configured(_) => None,
    }
}

// ---- a PromQL lexer, and what an expression uses ----------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// Metric, label, function or keyword name (may contain ':').
    Ident(String),
    Str(String),
    Number,
    /// A range or subquery, `[5m]` or `[$__rate_interval]`.
    Range,
    Open,
    Close,
    LBrace,
    RBrace,
    Comma,
    Op(String),
}

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        i += 1;
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '(' => toks.push(Tok::Open),
            ')' => toks.push(Tok::Close),
            '{' => toks.push(Tok::LBrace),
            '}' => toks.push(Tok::RBrace),
            ',' => toks.push(Tok::Comma),
            '[' => {
                while i < chars.len() && chars[i] != ']' {
                    i += 1;
                }
                if i == chars.len() {
                    return Err(format!("unclosed range in {expr}"));
                }
                i += 1;
                toks.push(Tok::Range);
            }
            '"' | '\'' | '`' => {
                let mut value = String::new();
                while i < chars.len() && chars[i] != c {
                    if chars[i] == '\\' && c != '`' {
                        i += 1;
                    }
                    value.extend(chars.get(i));
                    i += 1;
                }
                if i == chars.len() {
                    return Err(format!("unclosed string in {expr}"));
                }
                i += 1;
                toks.push(Tok::Str(value));
            }
            c if c.is_ascii_digit() || c == '.' => {
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                    i += 1;
                }
                toks.push(Tok::Number);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' => {
                while i < chars.len() && is_ident_char(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            c if "=!~<>+-*/^%".contains(c) => {
                while i < chars.len() && "=!~<>".contains(chars[i]) {
                    i += 1;
                }
                toks.push(Tok::Op(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected {other:?} in {expr}")),
        }
    }
    Ok(toks)
}

/// A metric selector in an expression.
#[derive(Debug)]
struct Selector {
    name: String,
    /// Token index, to tell which aggregation it is inside.
    at: usize,
    /// The innermost function call around it, if any.
    call: Option<String>,
    /// (label, operator, value).
    matchers: Vec<(String, String, String)>,
}

/// A `by`/`without`/`on`/`ignoring`/`group_left`/`group_right` label list.
#[derive(Debug)]
struct Grouping {
    keyword: String,
    labels: Vec<String>,
    /// Token range of the aggregated expression (for `by` and `without`).
    scope: Option<(usize, usize)>,
}

#[derive(Debug, Default)]
struct Usage {
    selectors: Vec<Selector>,
    groupings: Vec<Grouping>,
}

const GROUPING_KEYWORDS: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan"];

fn analyse(expr: &str) -> Result<Usage, String> {
    let toks = lex(expr)?;
    let mut partner = vec![usize::MAX; toks.len()];
    let mut opens = Vec::new();
    for (i, t) in toks.iter().enumerate() {
        match t {
            Tok::Open => opens.push(i),
            Tok::Close => {
                let open = opens.pop().ok_or_else(|| format!("unbalanced ) in {expr}"))?;
                (partner[open], partner[i]) = (i, open);
            }
            _ => {}
        }
    }
    if !opens.is_empty() {
        return Err(format!("unbalanced ( in {expr}"));
    }
    let mut usage = Usage::default();
    let mut calls: Vec<Option<String>> = Vec::new();
    // The function or aggregation whose parenthesis opens next.
    let mut pending: Option<String> = None;
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open => calls.push(pending.take()),
            Tok::Close => {
                calls.pop();
            }
            Tok::Ident(word) if GROUPING_KEYWORDS.contains(&word.as_str()) => {
                if toks.get(i + 1) != Some(&Tok::Open) {
                    i += 1; // a bare group_left
                    continue;
                }
                let close = partner[i + 1];
                let labels = toks[i + 2..close]
                    .iter()
                    .filter_map(|t| match t {
                        Tok::Ident(l) => Some(l.clone()),
                        _ => None,
                    })
                    .collect();
                let scope = match word.as_str() {
                    "by" | "without" if toks.get(close + 1) == Some(&Tok::Open) => {
                        Some((close + 1, partner[close + 1]))
                    }
                    "by" | "without" if i > 0 && toks[i - 1] == Tok::Close => Some((partner[i - 1], i - 1)),
                    "by" | "without" => {
                        return Err(format!("cannot tell what `{word}` aggregates in {expr}"))
                    }
                    _ => None,
                };
                usage.groupings.push(Grouping { keyword: word.clone(), labels, scope });
                i = close + 1;
                continue;
            }
            Tok::Ident(word)
                if toks.get(i + 1) == Some(&Tok::Open)
                    || matches!(toks.get(i + 1), Some(Tok::Ident(k)) if k == "by" || k == "without") =>
            {
                pending = Some(word.clone());
            }
            Tok::Ident(word) if KEYWORDS.contains(&word.as_str()) => {}
            Tok::Ident(name) => {
                let mut matchers = Vec::new();
                let at = i;
                if toks.get(i + 1) == Some(&Tok::LBrace) {
                    i += 2;
                    while toks.get(i) != Some(&Tok::RBrace) {
                        match (toks.get(i), toks.get(i + 1), toks.get(i + 2)) {
                            (Some(Tok::Ident(l)), Some(Tok::Op(op)), Some(Tok::Str(v))) => {
                                matchers.push((l.clone(), op.clone(), v.clone()));
                                i += 3;
                                if toks.get(i) == Some(&Tok::Comma) {
                                    i += 1;
                                }
                            }
                            _ => return Err(format!("cannot read the matchers of {name} in {expr}")),
                        }
                    }
                }
                let call = calls.iter().rev().flatten().next().cloned();
                usage.selectors.push(Selector { name: name.clone(), at, call, matchers });
            }
            _ => {}
        }
        i += 1;
    }
    Ok(usage)
}

/// What is wrong with how `expr` uses metrics and labels; `recorded` are
/// the recording rules' names.
fn misuses(expr: &str, recorded: &BTreeSet<String>) -> Vec<String> {
    let usage = match analyse(expr) {
        Ok(usage) => usage,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let mut series = Vec::new();
    for s in &usage.selectors {
        let Some(found) = resolve(&s.name) else {
            if !((s.name.contains(':') && recorded.contains(&s.name))
                || PROMETHEUS_SERIES.contains(&s.name.as_str()))
            {
                problems.push(format!("{}: neither in the catalogue nor recorded, in {expr}", s.name));
            }
            continue;
        };
        series.push((s.at, found));
        let (def, name) = (found.def, &s.name);
        let under_rate = s.call.as_deref().is_some_and(|c| RATE_FUNCTIONS.contains(&c));
        match (def.kind, found.suffix) {
            (MetricKind::Histogram, "") => {
                problems.push(format!("{name}: a histogram needs _bucket/_sum/_count"))
            }
            (MetricKind::Gauge, _) if under_rate => {
                problems.push(format!("{name}: a gauge inside {:?}", s.call))
            }
            (MetricKind::Counter | MetricKind::Histogram, _) if !under_rate => problems
                .push(format!("{name}: a counter used raw (inside {:?}), not via rate/increase", s.call)),
            _ => {}
        }
        for (label, op, value) in &s.matchers {
            if TARGET_LABELS.contains(&label.as_str()) || (label == "le" && found.suffix == "_bucket") {
                continue;
            }
            if def.label(label).is_none() {
                problems.push(format!("{name}: no label {label:?} in the catalogue"));
                continue;
            }
            let Some(allowed) = closed_set(def, label) else { continue };
            let values: Vec<&str> = if op.contains('~') { value.split('|').collect() } else { vec![value] };
            for v in values.iter().filter(|v| !allowed.contains(*v)) {
                problems.push(format!("{name}: {label}={v:?} is not one of {allowed:?}"));
            }
        }
    }
    for g in &usage.groupings {
        for label in g.labels.iter().filter(|l| !TARGET_LABELS.contains(&l.as_str()) && *l != "le") {
            let in_scope: Vec<_> = series
                .iter()
                .filter(|(at, _)| g.scope.is_none_or(|(from, to)| (from..=to).contains(at)))
                .map(|(_, s)| s.def)
                .collect();
            let ok = match g.scope {
                Some(_) => in_scope.iter().all(|d| d.label(label).is_some()),
                None => in_scope.iter().any(|d| d.label(label).is_some()),
            };
            if !ok {
                let names: Vec<_> = in_scope.iter().map(|d| d.name).collect();
                problems.push(format!("{} ({label}): not a catalogue label of {names:?}", g.keyword));
            }
        }
    }
    problems
}

// ---- reading the files ------------------------------------------------------

fn dashboard(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", path.display()))
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    fn walk<'a>(list: &'a Value, out: &mut Vec<&'a Value>) {
        for p in list.as_array().into_iter().flatten() {
            out.push(p);
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn is_row(panel: &Value) -> bool {
    panel["type"] == "row"
}

/// (panel title, expression) of every query of every dashboard.
fn dashboard_exprs() -> Vec<(String, String)> {
    let mut exprs = Vec::new();
    for path in dashboard_files() {
        let d = dashboard(&path);
        for p in panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                let title = p["title"].as_str().unwrap_or("?").to_string();
                exprs.push((title, t["expr"].as_str().unwrap_or("").to_string()));
            }
        }
    }
    exprs
}

/// The `expr:` values of a rule file, block scalars included.
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(rest) = trimmed.strip_prefix("expr:").map(str::trim) else { continue };
        if rest.starts_with('|') || rest.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let block: Vec<&str> = lines[n + 1..]
                .iter()
                .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
                .copied()
                .collect();
            exprs.push(block.join("\n"));
        } else if let Some(q) = rest.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
            exprs.push(q.replace("\\\"", "\"").replace("\\\\", "\\"));
        } else if let Some(q) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            exprs.push(q.replace("''", "'"));
        } else {
            exprs.push(rest.to_string());
        }
    }
    exprs
}

/// One rule of a rule file: `alert` or `record`, its name, and its lines.
struct Rule {
    kind: &'static str,
    name: String,
    lines: Vec<String>,
}

fn rules(yaml: &str) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::new();
    for line in yaml.lines() {
        let trimmed = line.trim_start().trim_start_matches("- ");
        let start = [("alert", "alert:"), ("record", "record:")]
            .into_iter()
            .find_map(|(kind, key)| Some((kind, trimmed.strip_prefix(key)?.trim())));
        if let Some((kind, name)) = start.filter(|_| line.trim_start().starts_with("- ")) {
            rules.push(Rule { kind, name: name.to_string(), lines: Vec::new() });
        } else if line.trim_start().starts_with("- name:") {
            rules.push(Rule { kind: "group", name: String::new(), lines: Vec::new() });
        } else if let Some(rule) = rules.last_mut() {
            rule.lines.push(line.trim().to_string());
        }
    }
    rules.retain(|r| r.kind != "group");
    rules
}

fn recorded_names(yaml: &str) -> BTreeSet<String> {
    rules(yaml).into_iter().filter(|r| r.kind == "record").map(|r| r.name).collect()
}

/// The README's "Metrics not on a panel" list.
fn readme_unpanelled(readme: &str) -> Option<BTreeSet<String>> {
    let mut lines = readme.lines().skip_while(|l| !(l.starts_with("## ") && l.contains("not on a panel")));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| l.strip_prefix("- `")?.split('`').next())
            .map(str::to_string)
            .collect(),
    )
}

// ---- the tests --------------------------------------------------------------

#[test]
fn every_metric_named_in_the_dashboards_folder_is_in_the_catalogue() {
    let mut problems = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir(dashboards_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for name in prefixed_names(&text) {
            seen += 1;
            if resolve(&name).is_none() {
                problems.push(format!("{}: {name}", path.file_name().unwrap().to_string_lossy()));
            }
        }
    }
    assert!(seen > CATALOGUE.len(), "only {seen} metric names found: wrong folder?");
    assert_no_problems("names that are not in the catalogue", &problems);
}

#[test]
fn every_catalogue_metric_is_on_a_panel_or_listed_as_deliberately_unpanelled() {
    let mut on_panels = BTreeSet::new();
    for (_, expr) in dashboard_exprs() {
        on_panels.extend(prefixed_names(&expr).iter().filter_map(|n| resolve(n)).map(|s| s.def.name));
    }
    let unpanelled: BTreeSet<&str> = UNPANELLED.iter().map(|(def, _)| def.name).collect();
    let mut problems = Vec::new();
    for (def, why) in UNPANELLED {
        if why.trim().is_empty() {
            problems.push(format!("{}: unpanelled without a reason", def.name));
        }
    }
    for def in CATALOGUE {
        match (on_panels.contains(def.name), unpanelled.contains(def.name)) {
            (false, false) => {
                problems.push(format!("{}: on no panel and not listed as unpanelled", def.name))
            }
            (true, true) => problems.push(format!("{}: listed as unpanelled but on a panel", def.name)),
            _ => {}
        }
    }
    let readme = read("README.md");
    match readme_unpanelled(&readme) {
        None => problems.push("README.md has no '## ... not on a panel' section".into()),
        Some(listed) => {
            let expected: BTreeSet<String> = unpanelled.iter().map(|s| s.to_string()).collect();
            if listed != expected {
                problems.push(format!("README lists {listed:?} as unpanelled, this test {expected:?}"));
            }
        }
    }
    for path in dashboard_files() {
        for p in panels(&dashboard(&path)).into_iter().filter(|p| !is_row(p)) {
            let title = p["title"].as_str().unwrap_or("");
            if !readme.contains(title) {
                problems.push(format!("README.md does not mention panel {title:?}"));
            }
        }
    }
    assert_no_problems("panel coverage", &problems);
}

#[test]
fn dashboards_and_rules_use_each_metric_as_its_kind_and_labels_allow() {
    let alerts = read("alerts.yml");
    let recorded = recorded_names(&alerts);
    let mut problems = Vec::new();
    for (title, expr) in dashboard_exprs() {
        problems.extend(misuses(&expr, &recorded).into_iter().map(|p| format!("panel {title:?}: {p}")));
    }
    let rule_exprs = rule_exprs(&alerts);
    assert!(rule_exprs.len() >= 6, "only {} expressions in alerts.yml", rule_exprs.len());
    for expr in rule_exprs {
        problems.extend(misuses(&expr, &recorded).into_iter().map(|p| format!("alerts.yml: {p}")));
    }
    assert_no_problems("misused metrics", &problems);
}

#[test]
fn the_usage_checks_catch_misuse() {
    let none = BTreeSet::new();
    let counter = cat::TASKS.name;
    let histogram = cat::TASK_DURATION.name;
    let gauge = cat::CPU_QUEUE_DEPTH.name;
    let bad = [
        format!("sum({counter})"),
        format!("rate({gauge}[5m])"),
        histogram.to_string(),
        format!("sum by (le) ({histogram}_bucket)"),
        format!("rate({counter}{{outcom=\"ok\"}}[5m])"),
        format!("rate({counter}{{outcome=~\"ok|fine\"}}[5m])"),
        format!("sum by (outcome) (rate({}[5m]))", cat::REACTOR_STALLS.name),
        format!("rate({}[5m])", &counter[..counter.len() - 2]),
        "rate(up_total[5m])".to_string(),
    ];
    for expr in &bad {
        assert!(!misuses(expr, &none).is_empty(), "not caught: {expr}");
    }
    let http = cat::HTTP_REQUESTS.name;
    let good = [
        format!("sum by (outcome) (rate({http}{{outcome=~\"2xx|5xx|timeout\"}}[5m]))"),
        format!("histogram_quantile(0.99, sum by (le) (rate({histogram}_bucket{{le!=\"+Inf\"}}[5m])))"),
        format!("sum(rate({histogram}_sum[5m])) / sum(rate({histogram}_count[5m]))"),
        format!("max by (job, instance) ({gauge}) > 0"),
        format!("sum by (outcome) (increase({counter}{{outcome!=\"ok\"}}[1h])) > on () group_left () x:y:z"),
    ];
    let recorded = BTreeSet::from(["x:y:z".to_string()]);
    for expr in &good {
        assert_eq!(misuses(expr, &recorded), Vec::<String>::new(), "{expr}");
    }
    assert!(closed_set(&cat::HTTP_REQUESTS, "outcome").unwrap().contains("3xx"));
    let polls = cat::PIPELINE_POLLS;
    assert_eq!(closed_set(&polls, "outcome").unwrap(), BTreeSet::from(["ok", "failed"]));
    assert_eq!(closed_set(&polls, "pipeline"), None);
    let matched = format!("sum(rate({}{{pipeline=\"any-name\", outcome=\"ok\"}}[5m]))", polls.name);
    assert_eq!(misuses(&matched, &none), Vec::<String>::new(), "{matched}");
    let bad_outcome = format!("sum(rate({}{{outcome=\"fine\"}}[5m]))", polls.name);
    assert!(!misuses(&bad_outcome, &none).is_empty(), "not caught: {bad_outcome}");
}

#[test]
fn dashboard_queries_filter_by_the_job_and_instance_variables() {
    let mut problems = Vec::new();
    for (title, expr) in dashboard_exprs() {
        let Ok(usage) = analyse(&expr) else { continue }; // reported by the usage test
        for s in usage.selectors.iter().filter(|s| resolve(&s.name).is_some()) {
            for (label, var) in [("job", "$job"), ("instance", "$instance")] {
                let m = (label.to_string(), "=~".to_string(), var.to_string());
                if !s.matchers.contains(&m) {
                    problems.push(format!("panel {title:?}: {} lacks {label}=~\"{var}\"", s.name));
                }
            }
        }
    }
    assert_no_problems("unfiltered queries", &problems);
}

#[test]
fn the_dashboard_json_is_a_well_formed_grafana_dashboard() {
    for path in dashboard_files() {
        let d = dashboard(&path);
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let mut problems = Vec::new();
        let mut problem = |p: String| problems.push(format!("{file}: {p}"));
        if d["schemaVersion"].as_u64().is_none_or(|v| v < 36) {
            problem(format!("schemaVersion {} is too old", d["schemaVersion"]));
        }
        for key in ["uid", "title"] {
            if d[key].as_str().is_none_or(str::is_empty) {
                problem(format!("no {key}"));
            }
        }

        // Templating: a Prometheus data source, then job and instance.
        let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| Some((v["name"].as_str()?, v)))
            .collect();
        match vars.get("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            _ => problem("no `datasource` variable of type datasource querying prometheus".into()),
        }
        for (name, needs) in [("job", ""), ("instance", "$job")] {
            let Some(v) = vars.get(name) else {
                problem(format!("no `{name}` variable"));
                continue;
            };
            let query = v["query"]["query"].as_str().or(v["query"].as_str()).unwrap_or("");
            let label_values = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .and_then(|q| q.rsplit_once(','))
                .filter(|(_, label)| label.trim() == name);
            match label_values {
                Some((selector, _)) if selector.contains(needs) => {
                    let kinds: Vec<_> = prefixed_names(selector).iter().filter_map(|n| resolve(n)).collect();
                    if kinds.len() != 1 || kinds[0].def.kind != MetricKind::Gauge {
                        problem(format!("`{name}` should list the values of one catalogue gauge: {query}"));
                    }
                }
                _ => problem(format!("`{name}` query is not label_values(..{needs}.., {name}): {query:?}")),
            }
            if v["type"] != "query" || v["multi"] != true || v["includeAll"] != true {
                problem(format!("`{name}` must be a multi-value query variable with All"));
            }
            if v["datasource"]["uid"] != "${datasource}" {
                problem(format!("`{name}` does not query ${{datasource}}"));
            }
        }

        // Panels: unique ids, complete, under a row, and not overlapping.
        let all = panels(&d);
        let mut ids = BTreeSet::new();
        let mut cells = BTreeMap::new();
        let mut rows = Vec::new();
        let mut seen_row = false;
        for p in &all {
            let title = p["title"].as_str().unwrap_or("").to_string();
            match p["id"].as_u64() {
                Some(id) if ids.insert(id) => {}
                id => problem(format!("panel {title:?}: id {id:?} missing or repeated")),
            }
            if title.is_empty() {
                problem(format!("panel {} has no title", p["id"]));
            }
            let g = &p["gridPos"];
            let [x, y, w, h] = ["x", "y", "w", "h"].map(|k| g[k].as_u64());
            let (Some(x), Some(y), Some(w), Some(h)) = (x, y, w, h) else {
                problem(format!("panel {title:?}: incomplete gridPos {g}"));
                continue;
            };
            if w == 0 || h == 0 || x + w > 24 {
                problem(format!("panel {title:?}: gridPos {g} does not fit 24 columns"));
            }
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                if let Some(other) = cells.insert(cell, title.clone()) {
                    problem(format!("panels {other:?} and {title:?} overlap at {cell:?}"));
                    break;
                }
            }
            if is_row(p) {
                seen_row = true;
                rows.push(title);
                continue;
            }
            if !seen_row {
                problem(format!("panel {title:?} is above the first row"));
            }
            if p["description"].as_str().is_none_or(|s| s.trim().len() < 20) {
                problem(format!("panel {title:?}: no description of the question it answers"));
            }
            if p["datasource"]["uid"] != "${datasource}" || p["datasource"]["type"] != "prometheus" {
                problem(format!("panel {title:?}: datasource is not the ${{datasource}} variable"));
            }
            if p["fieldConfig"]["defaults"]["unit"].as_str().is_none_or(str::is_empty) {
                problem(format!("panel {title:?}: no unit"));
            }
            let targets = p["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
            if targets.is_empty() {
                problem(format!("panel {title:?}: no targets"));
            }
            let mut refs = BTreeSet::new();
            for t in targets {
                if t["datasource"] != p["datasource"] {
                    problem(format!("panel {title:?}: a target's datasource differs from the panel's"));
                }
                if t["expr"].as_str().is_none_or(|e| e.trim().is_empty()) {
                    problem(format!("panel {title:?}: a target without expr"));
                }
                if !t["refId"].as_str().is_some_and(|r| refs.insert(r.to_string())) {
                    problem(format!("panel {title:?}: refId missing or repeated"));
                }
                if p["type"] == "heatmap" && t["format"] != "heatmap" {
                    problem(format!("panel {title:?}: a heatmap target needs format heatmap"));
                }
            }
        }
        if file == "switchyard.json" && rows != ROWS {
            problem(format!("rows are {rows:?}, expected {ROWS:?}"));
        }
        assert_no_problems("malformed dashboard", &problems);
    }
}

#[test]
fn every_alert_is_complete_and_its_tests_see_it_fire_and_stay_silent() {
    let alerts = rules(&read("alerts.yml"));
    let tests = read("alerts_test.yml");
    let mut problems = Vec::new();
    let mut outcomes: BTreeMap<&str, (bool, bool)> = BTreeMap::new();
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    for (n, line) in lines.iter().enumerate() {
        let Some(name) = line.strip_prefix("alertname:").map(str::trim) else { continue };
        let Some(expected) = lines[n + 1..].iter().find_map(|l| l.strip_prefix("exp_alerts:")) else {
            continue;
        };
        let entry = outcomes.entry(name).or_default();
        if expected.trim() == "[]" {
            entry.1 = true;
        } else {
            entry.0 = true;
        }
    }
    let names: BTreeSet<&str> =
        alerts.iter().filter(|r| r.kind == "alert").map(|r| r.name.as_str()).collect();
    assert!(names.len() >= 6, "only {} alerts in alerts.yml", names.len());
    for rule in alerts.iter().filter(|r| r.kind == "alert") {
        for key in ["expr:", "for:", "severity:", "summary:", "description:", "runbook:"] {
            if !rule.lines.iter().any(|l| l.starts_with(key)) {
                problems.push(format!("{}: no {key}", rule.name));
            }
        }
        let severity = rule.lines.iter().find_map(|l| l.strip_prefix("severity:")).map(str::trim);
        if !matches!(severity, Some("critical" | "warning" | "info") | None) {
            problems.push(format!("{}: severity {severity:?}", rule.name));
        }
    }
    for name in &names {
        match outcomes.get(name) {
            Some((true, true)) => {}
            Some((fires, _)) => problems.push(format!(
                "{name}: alerts_test.yml never sees it {}",
                if *fires { "stay silent" } else { "fire" }
            )),
            None => problems.push(format!("{name}: not tested in alerts_test.yml")),
        }
    }
    for name in outcomes.keys().filter(|n| !names.contains(*n)) {
        problems.push(format!("alerts_test.yml tests {name}, which alerts.yml does not define"));
    }
    assert_no_problems("alert rules", &problems);
}

/// promtool, or `None` (after saying why) when it is not installed and
/// services are not required.
fn promtool() -> Option<String> {
    let bin = std::env::var("PROMTOOL").unwrap_or_else(|_| "promtool".into());
    match Command::new(&bin).arg("--version").output() {
        Ok(out) if out.status.success() => Some(bin),
        result => {
            let reason = match result {
                Ok(out) => format!("`{bin} --version` failed: {}", String::from_utf8_lossy(&out.stderr)),
                Err(e) => format!("{bin}: {e}"),
            };
            if services_required() {
                panic!("promtool is required (SWITCHYARD_REQUIRE_SERVICES=1) but unusable: {reason}");
            }
            eprintln!(
                "skipping: promtool unusable ({reason}); install Debian's prometheus package or set PROMTOOL"
            );
            None
        }
    }
}

#[test]
fn promtool_accepts_the_dashboards_rules_their_tests_and_the_scrape_config() {
    let Some(bin) = promtool() else { return };
    for args in [
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
        ["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new(&bin).args(args).current_dir(dashboards_dir()).output().unwrap();
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
