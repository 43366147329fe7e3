//! The shipped example configurations load, validate, and (for PZ-1) do
//! exactly what the workload spec says to every event.

use std::path::Path;

use switchyard_pipeline::{fingerprint, prepare_item};
use switchyard_pz1::{canonical, canonical_json, Event};
use switchyard_service::ServiceConfig;

fn example(name: &str) -> ServiceConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    let config = ServiceConfig::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    config.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
    config
}

#[test]
fn the_pz1_example_configuration_reproduces_the_pz1_transform() {
    let config = example("pz1.toml");
    let pipeline = &config.pipelines[0];
    let rounds = pipeline.fingerprint_rounds();
    assert_eq!(rounds, 400);
    for e in [1, 2, 59, 777, 10_000] {
        let event = Event::generate("z0", e);
        let expected = canonical_json(&canonical(&event).unwrap());
        let item = serde_json::to_value(&event).unwrap();
        let prepared = prepare_item(item, &pipeline.source.id_field, &pipeline.steps, rounds).unwrap();
        assert_eq!(prepared.canonical, expected, "event {e}");
        assert_eq!(prepared.fingerprint, fingerprint(expected.as_bytes(), rounds), "event {e}");
    }
}
