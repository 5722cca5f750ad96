//! promtool for the alert tests: where it is, running it, and expanding the
//! `{{ $labels.x }}` templates of an alert's annotations the way Prometheus does, so
//! that promtool cases can state the annotations they expect without repeating them.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};

/// How to get promtool, for the error when it is missing.
pub const INSTALL_HINT: &str = "install it with `apt-get install prometheus` (Debian; .ci/run \
     does this), or point BLOODRAVEN_PROMTOOL at a promtool binary. The alert tests need it \
     and do not skip.";

/// promtool from `BLOODRAVEN_PROMTOOL` or the PATH, if it runs.
pub fn find() -> Result<PathBuf, String> {
    let candidate = std::env::var_os("BLOODRAVEN_PROMTOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("promtool"));
    match Command::new(&candidate).arg("--version").output() {
        Ok(output) if output.status.success() => Ok(candidate),
        _ => Err(format!(
            "promtool not found ({}): {INSTALL_HINT}",
            candidate.display()
        )),
    }
}

/// Runs promtool with `args` in `dir`; its whole output, or the output as the error.
pub fn run(promtool: &Path, args: &[&str], dir: &Path) -> Result<String, String> {
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("running {}: {e}", promtool.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(format!("promtool {} failed:\n{text}", args.join(" ")))
    }
}

/// `template` with every `{{ $labels.x }}` replaced by label `x` of `labels`. Any other
/// template action is refused: what it expands to could not be stated by a test.
pub fn expand_labels(template: &str, labels: &Map<String, Value>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| format!("unclosed {{{{ in {template:?}"))?;
        let action = rest[start + 2..start + end].trim();
        let label = action
            .strip_prefix("$labels.")
            .ok_or_else(|| format!("only {{{{ $labels.x }}}} is expanded, not `{action}`"))?;
        let value = labels.get(label).and_then(Value::as_str).ok_or_else(|| {
            format!("the template uses label {label}, which the alert does not carry")
        })?;
        out.push_str(value);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expands_label_templates_only() {
        let labels = json!({"site": "iad", "group": "g"});
        let labels = labels.as_object().unwrap();
        assert_eq!(
            expand_labels("site {{ $labels.site }} of {{$labels.group}}.", labels).unwrap(),
            "site iad of g."
        );
        assert!(
            expand_labels("{{ $value }}", labels)
                .unwrap_err()
                .contains("$value")
        );
        assert!(
            expand_labels("{{ $labels.namespace }}", labels)
                .unwrap_err()
                .contains("namespace")
        );
        assert!(expand_labels("{{ $labels.site", labels).is_err());
    }
}
