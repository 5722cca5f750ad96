//! The mdBook under docs/ is whole: every chapter SUMMARY.md links exists, and every
//! page is reachable from SUMMARY.md (an unlinked page is a page nobody finds).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs");

fn summary_links() -> BTreeSet<String> {
    let summary = std::fs::read_to_string(format!("{DOCS}/SUMMARY.md")).unwrap();
    let link = regex_lite_links(&summary);
    assert!(!link.is_empty(), "SUMMARY.md links no chapter");
    link
}

/// The targets of `[text](target.md)` links.
fn regex_lite_links(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        rest = &rest[start + 2..];
        if let Some(end) = rest.find(')') {
            let target = &rest[..end];
            if target.ends_with(".md") {
                out.insert(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_summary_link_exists() {
    for link in summary_links() {
        assert!(
            std::path::Path::new(&format!("{DOCS}/{link}")).is_file(),
            "SUMMARY.md links {link}, which does not exist"
        );
    }
}

#[test]
fn every_page_is_linked_from_the_summary() {
    let links = summary_links();
    for entry in std::fs::read_dir(DOCS).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") && name != "SUMMARY.md" {
            assert!(
                links.contains(&name),
                "docs/{name} is not linked from docs/SUMMARY.md"
            );
        }
    }
}
