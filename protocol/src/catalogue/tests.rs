use super::*;
use std::collections::HashSet;

#[test]
fn names_follow_prometheus_conventions() {
    let mut seen = HashSet::new();
    for m in CATALOGUE {
        assert!(seen.insert(m.name), "{} listed twice", m.name);
        assert!(m.name.starts_with("switchyard_"), "{} lacks the prefix", m.name);
        assert!(!m.help.is_empty(), "{} has no help", m.name);
        match m.kind {
            MetricKind::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
            _ => assert!(!m.name.ends_with("_total"), "{}", m.name),
        }
        match m.unit {
            Unit::Seconds => assert!(m.name.contains("_seconds"), "{}", m.name),
            Unit::Bytes => assert!(m.name.contains("_bytes"), "{}", m.name),
            Unit::Count => {}
        }
    }
}

#[test]
fn histograms_have_increasing_buckets_and_others_none() {
    for m in CATALOGUE {
        if m.kind == MetricKind::Histogram {
            assert!(m.buckets.len() >= 5, "{} has too few buckets", m.name);
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{}", m.name);
        } else {
            assert!(m.buckets.is_empty(), "{} is not a histogram", m.name);
        }
    }
}

#[test]
fn label_names_are_unique_and_value_sets_well_formed() {
    for m in CATALOGUE {
        let mut names = HashSet::new();
        for label in m.labels {
            assert!(names.insert(label.name), "{}: label {} twice", m.name, label.name);
            assert!(is_label_name(label.name), "{}: bad label name {:?}", m.name, label.name);
            assert!(!label.name.starts_with("__"), "{}: {} is reserved", m.name, label.name);
            assert_ne!(label.name, "le", "{}: le is the histogram bucket label", m.name);
            match label.values {
                LabelValues::Closed(values) => {
                    assert!(!values.is_empty(), "{} {}: empty closed set", m.name, label.name);
                    let mut seen = HashSet::new();
                    for v in values {
                        assert!(seen.insert(v), "{} {}: {v:?} twice", m.name, label.name);
                        assert!(is_label_value(v), "{} {}: bad value {v:?}", m.name, label.name);
                    }
                }
                LabelValues::Configured(what) => {
                    assert!(!what.trim().is_empty(), "{} {}: says nothing", m.name, label.name)
                }
            }
        }
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus's label name.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Non-empty and nothing that needs escaping in the exposition format or
/// in a PromQL matcher: no quotes, backslashes or control characters
/// (newlines included), no surrounding blanks.
fn is_label_value(value: &str) -> bool {
    !value.is_empty()
        && value.trim() == value
        && !value.chars().any(|c| c.is_control() || matches!(c, '"' | '\\' | '\'' | '`'))
}

#[test]
fn the_value_checks_reject_what_they_should() {
    for bad in ["", " ok", "a\"b", "a\nb", "a\\b", "it's"] {
        assert!(!is_label_value(bad), "{bad:?}");
    }
    for good in ["ok", "2xx", "body_too_large"] {
        assert!(is_label_value(good), "{good:?}");
    }
    assert!(!is_label_name("2xx") && !is_label_name("a-b") && is_label_name("outcome"));
}

#[test]
fn label_finds_a_label_by_name() {
    let pipeline = PIPELINE_POLLS.label("pipeline").unwrap();
    assert!(matches!(pipeline.values, LabelValues::Configured(_)));
    assert_eq!(pipeline.values.closed(), None);
    assert_eq!(PIPELINE_POLLS.label("outcome").unwrap().values.closed(), Some(&["ok", "failed"][..]));
    assert_eq!(REACTOR_LAG.label("outcome"), None);
}

#[test]
fn task_outcomes_are_the_closed_set_of_tasks_total() {
    let labels: Vec<_> = crate::TaskOutcome::ALL.iter().map(|o| o.as_label()).collect();
    assert_eq!(Some(&labels[..]), TASKS.label("outcome").unwrap().values.closed());
}

#[test]
fn find_looks_up_by_name() {
    assert_eq!(find(REACTOR_LAG.name), Some(&REACTOR_LAG));
    assert_eq!(find("switchyard_nope"), None);
}
