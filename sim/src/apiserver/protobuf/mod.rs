//! Request bodies in Kubernetes' protobuf encoding, decoded to the JSON form the store
//! keeps. client-go's typed clientsets send built-in kinds as protobuf (kubernetes PR
//! 125314) with no fallback to JSON on a 415, so `kubectl create namespace|secret|
//! configmap|job|deployment|...` need this. Only decoding: responses stay JSON, which
//! kubectl accepts (it sends `Accept: application/vnd.kubernetes.protobuf,application/json`).
//!
//! The wire layout of each kind is data in [`schema`], generated from k8s.io/api's
//! `generated.proto` by `sim/scripts/k8s_proto_schema.py`; this module walks it.

mod schema;

use serde_json::{Map, Value};

use super::meta::base64;

/// The media type of a protobuf body.
pub(super) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every Kubernetes protobuf body starts with these four bytes, then a
/// `runtime.Unknown` envelope around the object's own message.
const MAGIC: &[u8; 4] = b"k8s\0";

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: what a non-pointer
/// metav1.Time that was never set marshals as; JSON renders it `null`.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// One message of the schema: its fully qualified protobuf name and its fields.
pub(super) struct Message {
    pub name: &'static str,
    pub fields: &'static [Field],
}

/// (field number, JSON name, value type, label).
pub(super) struct Field(pub u32, pub &'static str, pub Kind, pub Label);

/// The type of a field's value. Every variant the generator can emit exists, even if
/// today's roots use none of that type (Double, Float, MicroTime, Duration).
#[allow(dead_code)]
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Str,
    Bytes,
    Bool,
    Int,
    Double,
    Float,
    /// Index into the schema's message table.
    Msg(usize),
    /// metav1.Time: `{seconds, nanos}` -> RFC 3339, whole seconds.
    Time,
    /// metav1.MicroTime: RFC 3339 with microseconds.
    MicroTime,
    /// metav1.Duration: nanoseconds -> Go's duration string.
    Duration,
    /// runtime.RawExtension / metav1.FieldsV1: bytes that are themselves JSON.
    RawJson,
    /// resource.Quantity: its string form.
    Quantity,
    /// intstr.IntOrString: a JSON number or string.
    IntOrString,
}

/// How a field appears in the Go type, which decides its JSON form.
#[derive(Clone, Copy, Debug)]
pub(super) enum Label {
    /// A non-pointer field: go-to-protobuf writes it even when zero, and JSON's
    /// `omitempty` drops a zero scalar, so a zero scalar is dropped here too.
    Value,
    /// A pointer field: written only when set, so even a zero is kept.
    Pointer,
    Repeated,
    /// An embedded struct whose fields JSON inlines into the parent (Volume's
    /// VolumeSource, Probe's ProbeHandler, ...).
    Inline,
    /// `map<key, value>`: entries are messages `{1: key, 2: value}`.
    Map(Kind),
}

/// Why a protobuf body could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic bytes \"k8s\\0\"")]
    NoMagic,
    #[error("the protobuf body is truncated at byte {0}")]
    Truncated(usize),
    #[error("protobuf field {number} of {message} has wire type {wire}, expected {expected}")]
    WireType {
        message: &'static str,
        number: u32,
        wire: u8,
        expected: u8,
    },
    #[error("protobuf field {number} of {message} is not part of that message")]
    UnknownField { message: &'static str, number: u32 },
    #[error(
        "{api_version} {kind} sent as protobuf is not a kind the simulated API server decodes from protobuf; send it as JSON"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("field {field} of {message}: {problem}")]
    BadValue {
        message: &'static str,
        field: &'static str,
        problem: String,
    },
    #[error("the protobuf envelope has content encoding {0:?}; only none is supported")]
    ContentEncoding(String),
}

/// Decodes a whole `application/vnd.kubernetes.protobuf` body into the object's JSON.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let mut reader = Reader::new(envelope);
    let (mut api_version, mut kind, mut raw, mut encoding) =
        (String::new(), String::new(), &[][..], String::new());
    while let Some((number, wire)) = reader.tag()? {
        match number {
            1 => {
                let mut type_meta = Reader::new(reader.bytes(wire, "runtime.Unknown", 1)?);
                while let Some((number, wire)) = type_meta.tag()? {
                    let text = type_meta.string(wire, "runtime.TypeMeta", number)?;
                    match number {
                        1 => api_version = text,
                        2 => kind = text,
                        _ => {}
                    }
                }
            }
            2 => raw = reader.bytes(wire, "runtime.Unknown", 2)?,
            3 => encoding = reader.string(wire, "runtime.Unknown", 3)?,
            _ => reader.skip(wire)?,
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::ContentEncoding(encoding));
    }
    let index = schema::KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, index)| *index)
        .ok_or_else(|| ProtobufError::UnknownKind {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), Value::String(api_version));
    object.insert("kind".into(), Value::String(kind));
    object.extend(message(raw, index)?);
    Ok(Value::Object(object))
}

fn message(bytes: &[u8], index: usize) -> Result<Map<String, Value>, ProtobufError> {
    let schema = schema::MESSAGES
        .get(index)
        .ok_or(ProtobufError::UnknownField {
            message: "schema",
            number: 0,
        })?;
    let mut reader = Reader::new(bytes);
    let mut out = Map::new();
    while let Some((number, wire)) = reader.tag()? {
        let Field(_, json, kind, label) =
            schema
                .fields
                .iter()
                .find(|f| f.0 == number)
                .ok_or(ProtobufError::UnknownField {
                    message: schema.name,
                    number,
                })?;
        let at = Site {
            message: schema.name,
            field: json,
            number,
        };
        match label {
            Label::Value | Label::Pointer => {
                let value = single(&mut reader, *kind, wire, &at)?;
                if matches!(label, Label::Pointer) || !is_zero(&value) {
                    out.insert((*json).to_string(), value);
                }
            }
            Label::Inline => {
                if let Value::Object(inner) = single(&mut reader, *kind, wire, &at)? {
                    out.extend(inner);
                }
            }
            Label::Repeated => {
                let list = out
                    .entry((*json).to_string())
                    .or_insert_with(|| Value::Array(Vec::new()));
                let Value::Array(list) = list else {
                    continue;
                };
                if wire == WIRE_LEN && kind.is_packable() {
                    let mut packed = Reader::new(reader.bytes(wire, at.message, number)?);
                    while !packed.at_end() {
                        list.push(single(&mut packed, *kind, kind.wire(), &at)?);
                    }
                } else {
                    list.push(single(&mut reader, *kind, wire, &at)?);
                }
            }
            Label::Map(key_kind) => {
                let mut entry = Reader::new(reader.bytes(wire, at.message, number)?);
                let (mut key, mut value) = (Value::String(String::new()), Value::Null);
                while let Some((entry_number, entry_wire)) = entry.tag()? {
                    match entry_number {
                        1 => key = single(&mut entry, *key_kind, entry_wire, &at)?,
                        2 => value = single(&mut entry, *kind, entry_wire, &at)?,
                        _ => entry.skip(entry_wire)?,
                    }
                }
                let key = match key {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                if let Value::Object(map) = out
                    .entry((*json).to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    map.insert(key, value);
                }
            }
        }
    }
    Ok(out)
}

/// Where a value sits, for error messages.
struct Site {
    message: &'static str,
    field: &'static str,
    number: u32,
}

impl Site {
    fn bad(&self, problem: impl Into<String>) -> ProtobufError {
        ProtobufError::BadValue {
            message: self.message,
            field: self.field,
            problem: problem.into(),
        }
    }
}

fn single(reader: &mut Reader, kind: Kind, wire: u8, at: &Site) -> Result<Value, ProtobufError> {
    let number = at.number;
    Ok(match kind {
        Kind::Str => Value::String(reader.string(wire, at.message, number)?),
        Kind::Bytes => Value::String(base64(reader.bytes(wire, at.message, number)?)),
        Kind::Bool => Value::Bool(reader.varint_field(wire, at.message, number)? != 0),
        // Two's complement: a negative int32 is sent sign-extended to 64 bits.
        Kind::Int => Value::from(reader.varint_field(wire, at.message, number)? as i64),
        Kind::Double => {
            reader.expect(wire, WIRE_FIXED64, at.message, number)?;
            Value::from(f64::from_le_bytes(reader.fixed::<8>()?))
        }
        Kind::Float => {
            reader.expect(wire, WIRE_FIXED32, at.message, number)?;
            Value::from(f64::from(f32::from_le_bytes(reader.fixed::<4>()?)))
        }
        Kind::Msg(index) => Value::Object(message(reader.bytes(wire, at.message, number)?, index)?),
        Kind::Time | Kind::MicroTime => {
            let fields = scalars(reader.bytes(wire, at.message, number)?)?;
            let seconds = fields.get(&1).copied().unwrap_or(0) as i64;
            let nanos = fields.get(&2).copied().unwrap_or(0) as i64;
            if seconds == GO_ZERO_TIME_SECONDS && nanos == 0 {
                Value::Null
            } else {
                Value::String(format_time(
                    seconds,
                    nanos,
                    matches!(kind, Kind::MicroTime),
                    at,
                )?)
            }
        }
        Kind::Duration => {
            let fields = scalars(reader.bytes(wire, at.message, number)?)?;
            Value::String(go_duration(fields.get(&1).copied().unwrap_or(0) as i64))
        }
        Kind::RawJson => {
            let mut inner = Reader::new(reader.bytes(wire, at.message, number)?);
            let mut raw: &[u8] = &[];
            while let Some((n, w)) = inner.tag()? {
                if n == 1 {
                    raw = inner.bytes(w, at.message, number)?;
                } else {
                    inner.skip(w)?;
                }
            }
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(raw)
                    .map_err(|e| at.bad(format!("embedded JSON does not parse: {e}")))?
            }
        }
        Kind::Quantity => {
            let mut inner = Reader::new(reader.bytes(wire, at.message, number)?);
            let mut text = String::new();
            while let Some((n, w)) = inner.tag()? {
                if n == 1 {
                    text = inner.string(w, at.message, number)?;
                } else {
                    inner.skip(w)?;
                }
            }
            Value::String(text)
        }
        Kind::IntOrString => {
            let mut inner = Reader::new(reader.bytes(wire, at.message, number)?);
            let (mut is_string, mut int, mut text) = (false, 0_i64, String::new());
            while let Some((n, w)) = inner.tag()? {
                match n {
                    1 => is_string = inner.varint_field(w, at.message, number)? == 1,
                    2 => int = inner.varint_field(w, at.message, number)? as i64,
                    3 => text = inner.string(w, at.message, number)?,
                    _ => inner.skip(w)?,
                }
            }
            if is_string {
                Value::String(text)
            } else {
                Value::from(int)
            }
        }
    })
}

/// The varint fields of a small message (Time, Duration) by number.
fn scalars(bytes: &[u8]) -> Result<std::collections::BTreeMap<u32, u64>, ProtobufError> {
    let mut reader = Reader::new(bytes);
    let mut out = std::collections::BTreeMap::new();
    while let Some((number, wire)) = reader.tag()? {
        if wire == WIRE_VARINT {
            out.insert(number, reader.varint()?);
        } else {
            reader.skip(wire)?;
        }
    }
    Ok(out)
}

fn format_time(seconds: i64, nanos: i64, micro: bool, at: &Site) -> Result<String, ProtobufError> {
    let nanos = i32::try_from(nanos).map_err(|_| at.bad(format!("nanos {nanos} out of range")))?;
    let ts = jiff::Timestamp::new(seconds, if micro { nanos } else { 0 })
        .map_err(|e| at.bad(format!("time {seconds}s out of range: {e}")))?;
    Ok(if micro {
        ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
    } else {
        ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    })
}

/// Go's `time.Duration.String()` for the values a manifest carries: `1h2m3s`, `1.5s`,
/// `0s`, `250ms`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (value, unit) = if n.is_multiple_of(1_000_000) {
            (n / 1_000_000, "ms")
        } else if n.is_multiple_of(1_000) {
            (n / 1_000, "µs")
        } else {
            (n, "ns")
        };
        return format!("{sign}{value}{unit}");
    }
    let (hours, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (minutes, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let (secs, frac) = (rest / 1_000_000_000, rest % 1_000_000_000);
    let mut out = sign.to_string();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    if frac == 0 {
        out.push_str(&format!("{secs}s"));
    } else {
        let digits = format!("{frac:09}");
        out.push_str(&format!("{secs}.{}s", digits.trim_end_matches('0')));
    }
    out
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::Array(_) | Value::Object(_) => false,
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_FIXED64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_FIXED32: u8 = 5;

impl Kind {
    fn is_packable(self) -> bool {
        matches!(self, Kind::Bool | Kind::Int | Kind::Double | Kind::Float)
    }
    fn wire(self) -> u8 {
        match self {
            Kind::Bool | Kind::Int => WIRE_VARINT,
            Kind::Double => WIRE_FIXED64,
            Kind::Float => WIRE_FIXED32,
            _ => WIRE_LEN,
        }
    }
}

/// A cursor over protobuf wire data.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next (field number, wire type), or `None` at the end.
    fn tag(&mut self) -> Result<Option<(u32, u8)>, ProtobufError> {
        if self.at_end() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3).map_err(|_| ProtobufError::Truncated(self.pos))?;
        Ok(Some((number, (tag & 7) as u8)))
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0_u64;
        for shift in (0..64).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or(ProtobufError::Truncated(self.pos))?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Truncated(self.pos))
    }

    fn expect(
        &self,
        wire: u8,
        expected: u8,
        message: &'static str,
        number: u32,
    ) -> Result<(), ProtobufError> {
        if wire == expected {
            Ok(())
        } else {
            Err(ProtobufError::WireType {
                message,
                number,
                wire,
                expected,
            })
        }
    }

    fn varint_field(
        &mut self,
        wire: u8,
        message: &'static str,
        number: u32,
    ) -> Result<u64, ProtobufError> {
        self.expect(wire, WIRE_VARINT, message, number)?;
        self.varint()
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], ProtobufError> {
        let end = self.pos + N;
        let bytes = self
            .buf
            .get(self.pos..end)
            .and_then(|s| <[u8; N]>::try_from(s).ok())
            .ok_or(ProtobufError::Truncated(self.pos))?;
        self.pos = end;
        Ok(bytes)
    }

    fn bytes(
        &mut self,
        wire: u8,
        message: &'static str,
        number: u32,
    ) -> Result<&'a [u8], ProtobufError> {
        self.expect(wire, WIRE_LEN, message, number)?;
        let len =
            usize::try_from(self.varint()?).map_err(|_| ProtobufError::Truncated(self.pos))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|end| *end <= self.buf.len())
            .ok_or(ProtobufError::Truncated(self.pos))?;
        let slice = &self.buf[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    fn string(
        &mut self,
        wire: u8,
        message: &'static str,
        number: u32,
    ) -> Result<String, ProtobufError> {
        let bytes = self.bytes(wire, message, number)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::BadValue {
            message,
            field: "string",
            problem: format!("field {number} is not UTF-8"),
        })
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtobufError> {
        match wire {
            WIRE_VARINT => self.varint().map(|_| ()),
            WIRE_FIXED64 => self.fixed::<8>().map(|_| ()),
            WIRE_LEN => self.bytes(WIRE_LEN, "", 0).map(|_| ()),
            WIRE_FIXED32 => self.fixed::<4>().map(|_| ()),
            _ => Err(ProtobufError::Truncated(self.pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn len_field(number: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    fn int_field(number: u32, value: i64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(u64::from(number) << 3, &mut out);
        varint(value as u64, &mut out);
        out
    }

    fn text(number: u32, s: &str) -> Vec<u8> {
        len_field(number, s.as_bytes())
    }

    fn map_entry(number: u32, key: &str, value: &[u8]) -> Vec<u8> {
        len_field(number, &[text(1, key), len_field(2, value)].concat())
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [text(1, api_version), text(2, kind)].concat();
        [
            MAGIC.to_vec(),
            len_field(1, &type_meta),
            len_field(2, raw),
            text(3, ""),
            text(4, "application/vnd.kubernetes.protobuf"),
        ]
        .concat()
    }

    /// A zero Go time, as go-to-protobuf writes an unset non-pointer metav1.Time.
    fn zero_time(number: u32) -> Vec<u8> {
        len_field(number, &int_field(1, GO_ZERO_TIME_SECONDS))
    }

    #[test]
    fn namespace_with_labels_and_unset_defaults() {
        let meta = [
            text(1, "x"),
            text(2, ""),
            int_field(7, 0),
            zero_time(8),
            map_entry(11, "team", b"db"),
        ]
        .concat();
        let raw = [len_field(1, &meta), len_field(2, &[]), len_field(3, &[])].concat();
        let obj = decode(&envelope("v1", "Namespace", &raw)).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": "x", "labels": {"team": "db"}},
                   "spec": {}, "status": {}})
        );
    }

    #[test]
    fn secret_bytes_become_base64_and_string_data_stays_text() {
        let raw = [
            len_field(1, &text(1, "creds")),
            map_entry(2, "password", b"hunter2"),
            text(3, "Opaque"),
            map_entry(4, "user", b"me"),
        ]
        .concat();
        let obj = decode(&envelope("v1", "Secret", &raw)).unwrap();
        assert_eq!(obj["data"], json!({"password": "aHVudGVyMg=="}));
        assert_eq!(obj["stringData"], json!({"user": "me"}));
        assert_eq!(obj["type"], "Opaque");
    }

    #[test]
    fn job_keeps_pointer_zeros_times_repeated_fields_and_inlined_volume_sources() {
        // batch/v1 JobSpec: backoffLimit (7) is *int32, so an explicit 0 is kept;
        // template (6) -> PodTemplateSpec.spec (2) -> PodSpec.containers (2).
        let container = [
            text(1, "main"),
            text(2, "busybox"),
            text(3, "sh"),
            text(3, "-c"),
        ]
        .concat();
        // Volume: name (1), VolumeSource inlined (2) with emptyDir (2).
        let volume = [text(1, "scratch"), len_field(2, &len_field(2, &[]))].concat();
        let pod_spec = [
            len_field(1, &volume),
            len_field(2, &container),
            text(3, "Never"),
        ]
        .concat();
        let template = len_field(2, &pod_spec);
        let spec = [len_field(6, &template), int_field(7, 0)].concat();
        let created = len_field(8, &int_field(1, 1_767_225_600));
        let raw = [
            len_field(1, &[text(1, "verify-now"), created].concat()),
            len_field(2, &spec),
        ]
        .concat();
        let obj = decode(&envelope("batch/v1", "Job", &raw)).unwrap();
        assert_eq!(obj["metadata"]["creationTimestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(obj["spec"]["backoffLimit"], 0);
        let pod = &obj["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["containers"][0]["command"], json!(["sh", "-c"]));
        assert_eq!(
            pod["volumes"][0],
            json!({"name": "scratch", "emptyDir": {}})
        );
    }

    #[test]
    fn service_target_port_is_int_or_string() {
        let by_name = [int_field(1, 1), text(3, "http")].concat();
        let by_number = [int_field(1, 0), int_field(2, 8080)].concat();
        let ports = [
            len_field(1, &[int_field(3, 80), len_field(4, &by_name)].concat()),
            len_field(1, &[int_field(3, 81), len_field(4, &by_number)].concat()),
        ]
        .concat();
        let raw = [len_field(1, &text(1, "web")), len_field(2, &ports)].concat();
        let obj = decode(&envelope("v1", "Service", &raw)).unwrap();
        assert_eq!(obj["spec"]["ports"][0]["targetPort"], "http");
        assert_eq!(obj["spec"]["ports"][1]["targetPort"], 8080);
    }

    #[test]
    fn bad_bodies_are_errors_that_say_what_is_wrong() {
        assert_eq!(decode(b"{}"), Err(ProtobufError::NoMagic));
        let mut truncated = envelope("v1", "Namespace", &len_field(1, &text(1, "x")));
        truncated.truncate(truncated.len() - 40);
        assert!(matches!(
            decode(&truncated),
            Err(ProtobufError::Truncated(_))
        ));
        assert_eq!(
            decode(&envelope("v1", "Node", &[])),
            Err(ProtobufError::UnknownKind {
                api_version: "v1".into(),
                kind: "Node".into()
            })
        );
        let unknown = len_field(1, &text(99, "?"));
        assert_eq!(
            decode(&envelope("v1", "Namespace", &unknown)),
            Err(ProtobufError::UnknownField {
                message: "k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                number: 99
            })
        );
        let wrong_wire = len_field(1, &int_field(1, 5));
        assert!(matches!(
            decode(&envelope("v1", "Namespace", &wrong_wire)),
            Err(ProtobufError::WireType { number: 1, .. })
        ));
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000_000), "1.5s");
        assert_eq!(go_duration(3_723_000_000_000), "1h2m3s");
        assert_eq!(go_duration(250_000_000), "250ms");
        assert_eq!(go_duration(-60_000_000_000), "-1m0s");
    }
}
