//! Fuzzes the chaos scenario parser: any text must give a scenario or an error that
//! names the file (never a panic, never unbounded memory: the YAML budget applies).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz/scenario.yaml");
    if let Err(error) = bloodraven_chaos::scenario::parse(path, text) {
        assert!(error.to_string().starts_with("fuzz/scenario.yaml"), "{error}");
    }
});
