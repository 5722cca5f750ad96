//! Small helpers over `metadata` of untyped objects, and the server's deterministic
//! name, uid and time formatting.

use serde_json::{Map, Value};

use super::error::StatusCause;

/// metav1.Time: RFC 3339 in UTC with whole seconds.
pub(super) fn format_time(ts: jiff::Timestamp) -> String {
    let whole = jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts);
    whole.to_string()
}

pub(super) fn name(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(super) fn namespace(obj: &Value) -> &str {
    obj.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(super) fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub(super) fn resource_version(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub(super) fn finalizers(obj: &Value) -> Vec<String> {
    strings_at(obj, "/metadata/finalizers")
}

/// The strings of the array at a JSON pointer (none when absent or not an array;
/// non-string elements are skipped).
pub(super) fn strings_at(obj: &Value, pointer: &str) -> Vec<String> {
    obj.pointer(pointer)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// `metadata`, created if missing (or not an object).
pub(super) fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = match obj {
        Value::Object(map) => map,
        _ => unreachable_object(),
    };
    let entry = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(meta) => meta,
        _ => unreachable_object(),
    }
}

// Both call sites have just made the value an object; this keeps the lints happy
// without a panic path that could ever be taken.
#[allow(clippy::panic)]
fn unreachable_object() -> ! {
    unreachable!("value was just made an object")
}

pub(super) fn set_meta(obj: &mut Value, field: &str, value: Value) {
    metadata_mut(obj).insert(field.to_string(), value);
}

/// The object with `metadata.resourceVersion`/`managedFields` removed, for "did anything
/// change" comparisons.
pub(super) fn without_bookkeeping(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Some(meta) = copy.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        meta.remove("generation");
    }
    copy
}

/// Everything but metadata and status: a change here bumps `metadata.generation`.
pub(super) fn spec_part(obj: &Value) -> Value {
    let mut copy = obj.clone();
    if let Value::Object(map) = &mut copy {
        map.remove("metadata");
        map.remove("status");
        map.remove("apiVersion");
        map.remove("kind");
    }
    copy
}

/// DNS-1123 subdomain (most object names) or label (namespaces, services).
pub(super) fn validate_name(name: &str, label_only: bool) -> Result<(), StatusCause> {
    let max = if label_only { 63 } else { 253 };
    let part_ok = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !part.starts_with('-')
            && !part.ends_with('-')
    };
    let ok = name.len() <= max
        && if label_only {
            part_ok(name)
        } else {
            name.split('.').all(part_ok)
        };
    if ok {
        return Ok(());
    }
    let what = if label_only {
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"
    } else {
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
    };
    Err(StatusCause::invalid(
        "metadata.name",
        format!("Invalid value: \"{name}\": {what}"),
    ))
}

/// The deterministic source of generated names and uids (SplitMix64's hash).
pub(super) use crate::rng::mix;

/// The 5-character suffix of a generated name (Kubernetes' alphabet without vowels).
pub(super) fn name_suffix(random: u64) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut r = random;
    (0..5)
        .map(|_| {
            let c = ALPHABET[(r % ALPHABET.len() as u64) as usize] as char;
            r /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// A version-4-shaped UUID from a counter and seed; unique per counter.
pub(super) fn make_uid(seed: u64, counter: u64) -> String {
    let a = mix(seed ^ counter);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        (a >> 32) as u32,
        (a >> 16) as u16,
        a & 0xfff,
        (mix(a) & 0xfff),
        counter & 0xffff_ffff_ffff
    )
}

/// Standard base64 with padding (Secret `data` values).
pub(super) fn base64(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Folds a Secret's write-only `stringData` into `data`, as the API server does.
pub(super) fn fold_string_data(secret: &mut Value) {
    let Some(Value::Object(string_data)) =
        secret.as_object_mut().and_then(|m| m.remove("stringData"))
    else {
        return;
    };
    if !secret.get("data").is_some_and(Value::is_object) {
        secret["data"] = Value::Object(Map::new());
    }
    if let Some(Value::Object(data)) = secret.get_mut("data") {
        for (key, value) in string_data {
            let text = value
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            data.insert(key, Value::String(base64(text.as_bytes())));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
        }
    }
}
