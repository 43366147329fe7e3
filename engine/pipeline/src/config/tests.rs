use super::*;

const PIPELINE: &str = r#"
    name = "orders"
    [source]
    url = "https://api.example.com/orders?page={seq}"
    headers = { Authorization = "Bearer ${SY_PIPELINE_TEST_TOKEN}", Accept = "application/json" }
    poll_interval_ms = 1000
    items_pointer = "/data"
    [[steps]]
    step = "trim"
    field = "email"
    [[steps]]
    step = "fingerprint"
    rounds = 3
    [action]
    url = "https://user:pa%2Fss@hooks.example.com/in"
"#;

fn parse(text: &str) -> PipelineConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn a_full_pipeline_parses_validates_and_redacts() {
    std::env::set_var("SY_PIPELINE_TEST_TOKEN", "t0ken");
    let config = parse(PIPELINE);
    config.validate("pipelines[0]").unwrap();
    assert_eq!(config.fingerprint_rounds(), 3);
    assert_eq!(config.action.max_attempts, DEFAULT_ACTION_MAX_ATTEMPTS);
    let shown = config.redacted();
    assert_eq!(shown.source.headers["Authorization"].as_written(), "Bearer ${SY_PIPELINE_TEST_TOKEN}");
    assert_eq!(shown.source.headers["Accept"].as_written(), "***", "literal header values are redacted");
    assert!(!shown.action.url.as_written().contains("pa%2Fss"), "{:?}", shown.action.url);
}

#[test]
fn errors_name_the_key() {
    std::env::set_var("SY_PIPELINE_TEST_TOKEN", "t0ken");
    let unknown = toml::from_str::<PipelineConfig>(&PIPELINE.replace("poll_interval_ms", "poll_interval"));
    assert!(unknown.unwrap_err().to_string().contains("poll_interval"));
    for bad in ["ftp://x", "https://user:pa/ss@hooks.example.com/in", "https://h:99999/", "http://[::1/"] {
        let bad_url = parse(&PIPELINE.replace("https://user:pa%2Fss@hooks.example.com/in", bad));
        let err = bad_url.validate("pipelines[0]").unwrap_err();
        assert_eq!(err.key(), "pipelines[0].action.url", "{bad}");
        assert!(!err.to_string().contains("pa/ss"), "{err}");
    }
    let missing = parse(&PIPELINE.replace("SY_PIPELINE_TEST_TOKEN", "SY_PIPELINE_TEST_UNSET"));
    let err = missing.validate("pipelines[0]").unwrap_err();
    assert_eq!(err.key(), "pipelines[0].source.headers.Authorization");
    assert!(err.to_string().contains("SY_PIPELINE_TEST_UNSET is not set"), "{err}");
    let zero_rounds = parse(&PIPELINE.replace("rounds = 3", "rounds = 0"));
    assert_eq!(zero_rounds.validate("p").unwrap_err().key(), "p.steps[1].rounds");
    let bad_name = parse(&PIPELINE.replace("\"orders\"", "\"or ders\""));
    assert_eq!(bad_name.validate("p").unwrap_err().key(), "p.name");
    let fingerprint_first = PIPELINE.replace(
        "[[steps]]\n    step = \"trim\"\n    field = \"email\"\n    [[steps]]\n    step = \"fingerprint\"\n    rounds = 3",
        "[[steps]]\n    step = \"fingerprint\"\n    rounds = 3\n    [[steps]]\n    step = \"trim\"\n    field = \"email\"",
    );
    assert_eq!(parse(&fingerprint_first).validate("p").unwrap_err().key(), "p.steps");
    let endless_backoff = parse(&format!("{PIPELINE}max_backoff_ms = 3600001\n"));
    assert_eq!(endless_backoff.validate("p").unwrap_err().key(), "p.action.max_backoff_ms");
    let hour = parse(&format!("{PIPELINE}max_backoff_ms = 3600000\nmax_attempts = 20\n"));
    hour.validate("p").unwrap();
}

#[test]
fn redacted_hides_literal_secrets_beside_references() {
    let text = PIPELINE
        .replace(
            "https://api.example.com/orders?page={seq}",
            "https://api.example.com/orders?api_key=sk_live_1&page={seq}",
        )
        .replace(
            "https://user:pa%2Fss@hooks.example.com/in",
            "https://user:literalpw@hooks.example.com/${SY_HOOK_PATH}",
        )
        .replace("Bearer ${SY_PIPELINE_TEST_TOKEN}", "sk_live_2 ${SY_PIPELINE_TEST_TOKEN}");
    let shown = parse(&text).redacted();
    assert_eq!(shown.source.url.as_written(), "https://api.example.com/orders?api_key=***&page={seq}");
    assert_eq!(shown.action.url.as_written(), "https://user:***@hooks.example.com/${SY_HOOK_PATH}");
    assert_eq!(shown.source.headers["Authorization"].as_written(), "***");
    let debug = format!("{:?}", parse(&text));
    assert!(!debug.contains("sk_live") && !debug.contains("literalpw"), "{debug}");
}

#[test]
fn cpu_heavy_values_and_the_task_timeout_are_bounded() {
    std::env::set_var("SY_PIPELINE_TEST_TOKEN", "t0ken");
    let key = |text: &str| parse(text).validate("p").err().map(|e| e.key().to_string());
    // Per item, then per poll (rounds x max_items, default 10,000 items).
    assert_eq!(
        key(&PIPELINE.replace("rounds = 3", "rounds = 10000001")).as_deref(),
        Some("p.steps[1].rounds")
    );
    assert_eq!(key(&PIPELINE.replace("rounds = 3", "rounds = 100001")).as_deref(), Some("p.steps[1].rounds"));
    let few_items = PIPELINE.replace("items_pointer", "max_items = 100\n    items_pointer");
    assert_eq!(key(&few_items.replace("rounds = 3", "rounds = 10000000")), None);
    assert_eq!(
        key(&PIPELINE.replace("rounds = 3", "rounds = 4294967295")).as_deref(),
        Some("p.steps[1].rounds")
    );
    assert_eq!(key(&PIPELINE.replace("rounds = 3", "rounds = 100000")), None);
    let items = |n: usize| PIPELINE.replace("items_pointer", &format!("max_items = {n}\n    items_pointer"));
    assert_eq!(key(&items(100_001)).as_deref(), Some("p.source.max_items"));
    assert_eq!(key(&items(100_000)), None);

    let timeout = |ms: u64| {
        PIPELINE.replace("name = \"orders\"", &format!("name = \"orders\"\n    task_timeout_ms = {ms}"))
    };
    assert_eq!(key(&timeout(0)).as_deref(), Some("p.task_timeout_ms"));
    assert_eq!(key(&timeout(3_600_001)).as_deref(), Some("p.task_timeout_ms"));
    let minute = parse(&timeout(60_000));
    minute.validate("p").unwrap();
    assert_eq!(minute.task_timeout(), Some(std::time::Duration::from_secs(60)));
    assert_eq!(parse(PIPELINE).task_timeout(), None, "the engine's applies");
}

#[test]
fn a_pipelines_rate_limit_is_bounded() {
    std::env::set_var("SY_PIPELINE_TEST_TOKEN", "t0ken");
    let key = |text: &str| parse(text).validate("p").err().map(|e| e.key().to_string());
    let limited =
        |rate: &str| PIPELINE.replace("[source]", &format!("rate_limit = {{ {rate} }}\n    [source]"));
    assert_eq!(key(&limited("per_second = 0.5")), None, "fractions are fine");
    assert_eq!(parse(&limited("per_second = 2.0, burst = 4")).rate_limit.unwrap().burst, 4);
    assert_eq!(key(&limited("per_second = 0.0")).as_deref(), Some("p.rate_limit.per_second"));
    assert_eq!(key(&limited("per_second = 1e9")).as_deref(), Some("p.rate_limit.per_second"));
    assert_eq!(key(&limited("per_second = 1.0, burst = 0")).as_deref(), Some("p.rate_limit.burst"));
}
