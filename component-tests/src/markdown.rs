//! Links and heading anchors of the Markdown pages under docs/, for the tests that keep
//! the book's links, the alerts' runbook URLs and the alert map pointing at something
//! real. Anchors follow mdBook's rule, which GitHub's matches for plain headings.

use std::collections::BTreeSet;

/// The targets of inline links `[text](target)` outside code, in order.
pub fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(start) = rest.find("](") {
            rest = &rest[start + 2..];
            let Some(end) = rest.find(')') else {
                break;
            };
            let target = rest[..end].trim();
            // `[text](url "title")`: the URL is the first word.
            let target = target.split_whitespace().next().unwrap_or_default();
            if !target.is_empty() {
                out.push(target.to_string());
            }
            rest = &rest[end..];
        }
    }
    out
}

/// The anchors mdBook gives the page's headings: the heading's text without Markdown
/// markup, lower-cased, spaces as `-`, only letters, digits, `-` and `_` kept; a repeated
/// anchor gets `-1`, `-2`, ...
pub fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in prose_lines(text) {
        let trimmed = line.trim_start();
        let hashes = trimmed.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || hashes > 6 || !trimmed[hashes..].starts_with(' ') {
            continue;
        }
        let base = anchor(&trimmed[hashes..]);
        let mut candidate = base.clone();
        let mut n = 0;
        while out.contains(&candidate) {
            n += 1;
            candidate = format!("{base}-{n}");
        }
        out.insert(candidate);
    }
    out
}

/// The anchor of one heading's text.
pub fn anchor(heading: &str) -> String {
    let plain = without_link_targets(&heading.replace('`', ""));
    plain
        .trim()
        .chars()
        .filter_map(|c| {
            if c.is_alphanumeric() || c == '_' || c == '-' {
                Some(c.to_lowercase().next().unwrap_or(c))
            } else if c.is_whitespace() {
                Some('-')
            } else {
                None
            }
        })
        .collect()
}

/// `[text](target)` -> `text`.
fn without_link_targets(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("](") {
        out.push_str(&rest[..start]);
        rest = &rest[start + 2..];
        match rest.find(')') {
            Some(end) => rest = &rest[end + 1..],
            None => rest = "",
        }
    }
    out.push_str(rest);
    out.replace('[', "")
}

/// The lines outside fenced code blocks.
fn prose_lines(text: &str) -> impl Iterator<Item = &str> {
    let mut in_fence = false;
    text.lines().filter(move |line| {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            return false;
        }
        !in_fence
    })
}

/// The line with its `inline code` spans removed.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in line.chars() {
        if c == '`' {
            inside = !inside;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_mdbook() {
        let page = "# Active site unreachable\n## Failover `blocked`\n## Failover blocked\n\
                    ```\n# not a heading\n```\n### Step 1: check [status](x.md)\n#nope\n";
        let anchors: Vec<String> = heading_anchors(page).into_iter().collect();
        assert_eq!(
            anchors,
            [
                "active-site-unreachable",
                "failover-blocked",
                "failover-blocked-1",
                "step-1-check-status"
            ]
        );
        assert_eq!(
            anchor("What `kubectl get mfg -o wide` shows"),
            "what-kubectl-get-mfg--o-wide-shows"
        );
    }

    #[test]
    fn links_skip_code() {
        let page = "See [a](a.md#x) and `[b](b.md)`.\n```\n[c](c.md)\n```\n[d](https://e \"t\")";
        assert_eq!(links(page), ["a.md#x", "https://e"]);
    }
}
