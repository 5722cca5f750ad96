//! Fuzzes `bloodraven validate`: any text must give a report or an error naming the
//! file, never a panic; alias bombs and deep nesting hit the loader's budget.
#![no_main]

use std::sync::LazyLock;

use bloodraven::schema::{CrdSchema, bloodraven_schemas};
use libfuzzer_sys::fuzz_target;

static SCHEMAS: LazyLock<Vec<CrdSchema>> =
    LazyLock::new(|| bloodraven_schemas().expect("the shipped CRD schemas load"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match bloodraven::validate::validate_text("fuzz.yaml", text, &SCHEMAS) {
        Ok(report) => {
            let printed = report.to_string();
            assert!(printed.contains("fuzz.yaml: "), "{printed}");
        }
        Err(error) => assert!(error.to_string().starts_with("fuzz.yaml"), "{error}"),
    }
});
