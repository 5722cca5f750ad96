//! The mdBook under docs/ is whole: every chapter SUMMARY.md links exists, every page is
//! reachable from SUMMARY.md (an unlinked page is a page nobody finds), and every
//! relative link in the book, README.md and WISHLIST.md points at a file that exists and,
//! with `#anchor`, at a heading that page has. `make docs-build` builds the book itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bloodraven_component_tests::markdown::{heading_anchors, links};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn docs() -> PathBuf {
    Path::new(REPO).join("docs")
}

fn summary_links() -> BTreeSet<String> {
    let summary = std::fs::read_to_string(docs().join("SUMMARY.md")).unwrap();
    let links: BTreeSet<String> = links(&summary)
        .into_iter()
        .filter(|l| l.ends_with(".md"))
        .collect();
    assert!(!links.is_empty(), "SUMMARY.md links no chapter");
    links
}

/// Every Markdown page of the book, relative to docs/ (the built book excluded).
fn pages() -> Vec<String> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let path = entry.path();
            if path.is_dir() {
                if name != "book" {
                    walk(&path, &format!("{prefix}{name}/"), out);
                }
            } else if name.ends_with(".md") {
                out.push(format!("{prefix}{name}"));
            }
        }
    }
    let mut out = Vec::new();
    walk(&docs(), "", &mut out);
    out.sort();
    out
}

#[test]
fn every_summary_link_exists() {
    for link in summary_links() {
        assert!(
            docs().join(&link).is_file(),
            "SUMMARY.md links {link}, which does not exist"
        );
    }
}

#[test]
fn every_page_is_linked_from_the_summary() {
    let links = summary_links();
    for page in pages() {
        if page != "SUMMARY.md" {
            assert!(
                links.contains(&page),
                "docs/{page} is not linked from docs/SUMMARY.md"
            );
        }
    }
}

/// Checks every relative link of `file` (a path under the repository): the target
/// exists, and its `#anchor`, if any, is one of the target page's headings.
fn check_links(file: &Path, problems: &mut Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap();
    for link in links(&text) {
        if link.contains("://") || link.starts_with("mailto:") {
            continue;
        }
        let (path, anchor) = match link.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (link.as_str(), None),
        };
        let target = if path.is_empty() {
            file.to_path_buf()
        } else {
            dir.join(path)
        };
        let shown = file
            .strip_prefix(REPO)
            .unwrap_or(file)
            .display()
            .to_string();
        if !target.exists() {
            problems.push(format!(
                "{shown}: link {link}: {} does not exist",
                target.display()
            ));
            continue;
        }
        if let Some(anchor) = anchor {
            if !target.is_file() || target.extension().is_none_or(|e| e != "md") {
                problems.push(format!(
                    "{shown}: link {link}: an anchor into a non-Markdown file"
                ));
                continue;
            }
            let headings = heading_anchors(&std::fs::read_to_string(&target).unwrap());
            if !headings.contains(anchor) {
                problems.push(format!(
                    "{shown}: link {link}: no heading #{anchor} there (it has {headings:?})"
                ));
            }
        }
    }
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut problems = Vec::new();
    for page in pages() {
        check_links(&docs().join(page), &mut problems);
    }
    for file in ["README.md", "WISHLIST.md"] {
        check_links(&Path::new(REPO).join(file), &mut problems);
    }
    assert!(
        problems.is_empty(),
        "broken links:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_link_check_catches_a_broken_link_and_anchor() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.md"), "# A\n## Real section\n").unwrap();
    let page = dir.path().join("b.md");
    std::fs::write(
        &page,
        "[ok](a.md#real-section) [self](#b) [gone](c.md) [bad](a.md#nope)\n# B\n",
    )
    .unwrap();
    let mut problems = Vec::new();
    check_links(&page, &mut problems);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].contains("c.md"), "{problems:?}");
    assert!(problems[1].contains("#nope"), "{problems:?}");
}
