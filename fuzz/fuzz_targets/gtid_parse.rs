//! Fuzzes the GTID set parser: it must never panic, must report an error position inside
//! the input, and whatever it accepts must print to a canonical form that parses back to
//! the same set and prints identically (printing is a fixed point).
#![no_main]

use bloodraven::gtid::GtidSet;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match GtidSet::parse(text) {
        Ok(set) => {
            let printed = set.to_string();
            let reparsed = GtidSet::parse(&printed).expect("canonical form must parse");
            assert_eq!(reparsed, set);
            assert_eq!(reparsed.to_string(), printed);
            let one_line = GtidSet::parse(&set.one_line().to_string()).expect("one-line form must parse");
            assert_eq!(one_line, set);
        }
        Err(error) => assert!(error.position <= text.chars().count()),
    }
});
