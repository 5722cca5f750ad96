//! The MySQL client/server protocol's framing and messages, in both directions: packets
//! (4-byte header, sequence ids, 16 MiB splitting), length-encoded integers and strings,
//! the v10 handshake and its response, OK/ERR/EOF packets and text result sets, and the
//! password scrambles. Pure encoding plus packet I/O; the production client
//! (`client.rs`) and the simulation's mysqld model both speak through it.
//!
//! Follows the MySQL source documentation, "Client/Server Protocol" (page_protocol_basics,
//! page_protocol_connection_phase, page_protocol_com_query_response_text_resultset).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload one packet carries; longer payloads continue in the next packet.
pub const MAX_PACKET_PAYLOAD: usize = 0xFF_FFFF;

/// Largest logical payload either side accepts (`max_allowed_packet`-like bound), so a
/// corrupt length is an error, not an allocation.
pub const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// `utf8mb4_general_ci`, the collation the client asks for.
pub const UTF8MB4_GENERAL_CI: u8 = 45;

/// Capability flags (`CLIENT_*`).
pub mod capability {
    pub const LONG_PASSWORD: u32 = 0x0000_0001;
    pub const FOUND_ROWS: u32 = 0x0000_0002;
    pub const LONG_FLAG: u32 = 0x0000_0004;
    pub const CONNECT_WITH_DB: u32 = 0x0000_0008;
    pub const PROTOCOL_41: u32 = 0x0000_0200;
    pub const TRANSACTIONS: u32 = 0x0000_2000;
    pub const SECURE_CONNECTION: u32 = 0x0000_8000;
    pub const MULTI_RESULTS: u32 = 0x0002_0000;
    pub const PLUGIN_AUTH: u32 = 0x0008_0000;
    pub const CONNECT_ATTRS: u32 = 0x0010_0000;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 0x0020_0000;
}

/// Command bytes of the command phase.
pub mod command {
    pub const QUIT: u8 = 0x01;
    pub const QUERY: u8 = 0x03;
    pub const PING: u8 = 0x0e;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const CLONE: u8 = 0x20;
}

/// Authentication plugin names.
pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// `AuthMoreData` bytes of caching_sha2_password.
pub mod caching_sha2 {
    /// The client asks for the server's RSA public key.
    pub const REQUEST_PUBLIC_KEY: u8 = 0x02;
    /// The scramble matched the server's cache: an OK packet follows.
    pub const FAST_AUTH_SUCCESS: u8 = 0x03;
    /// Cache miss: the client must send the password (over TLS, or RSA-encrypted).
    pub const PERFORM_FULL_AUTHENTICATION: u8 = 0x04;
}

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error("a {size}-byte message exceeds the {MAX_MESSAGE}-byte limit")]
    TooLarge { size: usize },
}

fn malformed(what: &'static str, detail: impl Into<String>) -> WireError {
    WireError::Malformed {
        what,
        detail: detail.into(),
    }
}

/// One logical packet: the payload (continuation packets joined) and the sequence id of
/// its last physical packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub sequence: u8,
    pub payload: Vec<u8>,
}

/// Reads one logical packet; `UnexpectedEof` if the peer closed the connection.
pub async fn read_packet<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Packet, WireError> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 4];
        reader.read_exact(&mut header).await?;
        let length =
            usize::from(header[0]) | (usize::from(header[1]) << 8) | (usize::from(header[2]) << 16);
        if payload.len() + length > MAX_MESSAGE {
            return Err(WireError::TooLarge {
                size: payload.len() + length,
            });
        }
        let start = payload.len();
        payload.resize(start + length, 0);
        reader.read_exact(&mut payload[start..]).await?;
        if length < MAX_PACKET_PAYLOAD {
            return Ok(Packet {
                sequence: header[3],
                payload,
            });
        }
    }
}

/// Writes `payload` as one logical packet starting at `*sequence`, splitting at 16 MiB;
/// leaves `*sequence` at the id the next packet must carry.
pub async fn write_packet<W: AsyncWrite + Unpin>(
    writer: &mut W,
    sequence: &mut u8,
    payload: &[u8],
) -> Result<(), WireError> {
    let mut frame = Vec::with_capacity(payload.len() + 4);
    let mut rest = payload;
    loop {
        let chunk = rest.len().min(MAX_PACKET_PAYLOAD);
        let length = chunk.to_le_bytes();
        frame.extend_from_slice(&[length[0], length[1], length[2], *sequence]);
        frame.extend_from_slice(&rest[..chunk]);
        *sequence = sequence.wrapping_add(1);
        rest = &rest[chunk..];
        // A payload of exactly n * 16 MiB ends with an empty packet.
        if chunk < MAX_PACKET_PAYLOAD {
            break;
        }
    }
    writer.write_all(&frame).await?;
    writer.flush().await?;
    Ok(())
}

/// Reads the fields of a payload front to back.
pub struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self { bytes, what }
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(malformed(
                self.what,
                format!("needs {n} more bytes, has {}", self.bytes.len()),
            ));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    pub fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn uint(&mut self, n: usize) -> Result<u64, WireError> {
        Ok(self
            .take(n)?
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// A length-encoded integer; `None` for the NULL marker 0xfb.
    pub fn lenenc(&mut self) -> Result<Option<u64>, WireError> {
        match self.u8()? {
            0xfb => Ok(None),
            0xfc => self.uint(2).map(Some),
            0xfd => self.uint(3).map(Some),
            0xfe => self.uint(8).map(Some),
            0xff => Err(malformed(self.what, "0xff is not a length-encoded integer")),
            small => Ok(Some(u64::from(small))),
        }
    }

    /// A length-encoded string; `None` for NULL.
    pub fn lenenc_bytes(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        match self.lenenc()? {
            None => Ok(None),
            Some(n) => {
                let n = usize::try_from(n).map_err(|_| malformed(self.what, "huge length"))?;
                self.take(n).map(Some)
            }
        }
    }

    pub fn lenenc_string(&mut self) -> Result<Option<String>, WireError> {
        Ok(self
            .lenenc_bytes()?
            .map(|b| String::from_utf8_lossy(b).into_owned()))
    }

    /// A NUL-terminated string (or the rest, if the terminator is missing).
    pub fn null_string(&mut self) -> Result<String, WireError> {
        let end = self
            .bytes
            .iter()
            .position(|b| *b == 0)
            .unwrap_or(self.bytes.len());
        let text = String::from_utf8_lossy(&self.bytes[..end]).into_owned();
        self.bytes = self.bytes.get(end + 1..).unwrap_or(&[]);
        Ok(text)
    }
}

pub fn put_lenenc(out: &mut Vec<u8>, value: u64) {
    match value {
        0..=250 => out.push(value as u8),
        251..=0xFFFF => {
            out.push(0xfc);
            out.extend_from_slice(&value.to_le_bytes()[..2]);
        }
        0x1_0000..=0xFF_FFFF => {
            out.push(0xfd);
            out.extend_from_slice(&value.to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&value.to_le_bytes());
        }
    }
}

pub fn put_lenenc_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_lenenc(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_null_string(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.push(0);
}

/// `Protocol::HandshakeV10`, the server's greeting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub server_version: String,
    pub connection_id: u32,
    /// The 20-byte scramble (nonce) the password is hashed with.
    pub nonce: Vec<u8>,
    pub capabilities: u32,
    pub collation: u8,
    pub status: u16,
    pub auth_plugin: String,
}

impl Handshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![10];
        put_null_string(&mut out, &self.server_version);
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        let (first, second) = self.nonce.split_at(self.nonce.len().min(8));
        out.extend_from_slice(first);
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        out.push((self.nonce.len() + 1) as u8);
        out.extend_from_slice(&[0; 10]);
        out.extend_from_slice(second);
        out.push(0);
        put_null_string(&mut out, &self.auth_plugin);
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "handshake");
        let version = r.u8()?;
        if version != 10 {
            return Err(malformed(
                "handshake",
                format!("protocol version {version}, expected 10"),
            ));
        }
        let server_version = r.null_string()?;
        let connection_id = r.u32()?;
        let mut nonce = r.take(8)?.to_vec();
        r.u8()?;
        let low = r.u16()?;
        let mut handshake = Handshake {
            server_version,
            connection_id,
            nonce: Vec::new(),
            capabilities: u32::from(low),
            collation: 0,
            status: 0,
            auth_plugin: NATIVE_PASSWORD.to_string(),
        };
        if r.is_empty() {
            handshake.nonce = nonce;
            return Ok(handshake);
        }
        handshake.collation = r.u8()?;
        handshake.status = r.u16()?;
        handshake.capabilities |= u32::from(r.u16()?) << 16;
        let auth_length = usize::from(r.u8()?);
        r.take(10)?;
        if handshake.capabilities & capability::SECURE_CONNECTION != 0 {
            let second = r.take(13usize.max(auth_length.saturating_sub(8)))?;
            // The second part ends with a NUL that is not part of the scramble.
            let second = second.strip_suffix(&[0]).unwrap_or(second);
            nonce.extend_from_slice(second);
        }
        handshake.nonce = nonce;
        if handshake.capabilities & capability::PLUGIN_AUTH != 0 {
            handshake.auth_plugin = r.null_string()?;
        }
        Ok(handshake)
    }
}

/// `Protocol::HandshakeResponse41`, the client's login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub collation: u8,
    pub user: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
}

impl HandshakeResponse {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.collation);
        out.extend_from_slice(&[0; 23]);
        put_null_string(&mut out, &self.user);
        if self.capabilities & capability::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(&mut out, &self.auth_response);
        } else {
            out.push(self.auth_response.len() as u8);
            out.extend_from_slice(&self.auth_response);
        }
        if let Some(database) = &self.database {
            put_null_string(&mut out, database);
        }
        if let Some(plugin) = &self.auth_plugin {
            put_null_string(&mut out, plugin);
        }
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "handshake response");
        let capabilities = r.u32()?;
        if capabilities & capability::PROTOCOL_41 == 0 {
            return Err(malformed(
                "handshake response",
                "client does not speak protocol 4.1",
            ));
        }
        let max_packet = r.u32()?;
        let collation = r.u8()?;
        r.take(23)?;
        let user = r.null_string()?;
        let auth_response = if capabilities & capability::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?.unwrap_or_default().to_vec()
        } else {
            let n = usize::from(r.u8()?);
            r.take(n)?.to_vec()
        };
        let database = (capabilities & capability::CONNECT_WITH_DB != 0)
            .then(|| r.null_string())
            .transpose()?;
        let auth_plugin = (capabilities & capability::PLUGIN_AUTH != 0)
            .then(|| r.null_string())
            .transpose()?;
        Ok(Self {
            capabilities,
            max_packet,
            collation,
            user,
            auth_response,
            database,
            auth_plugin,
        })
    }
}

/// An ERR packet: MySQL's error number, SQLSTATE and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub code: u16,
    pub state: String,
    pub message: String,
}

impl ServerError {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0xff];
        out.extend_from_slice(&self.code.to_le_bytes());
        out.push(b'#');
        let mut state = self.state.clone().into_bytes();
        state.resize(5, b'0');
        out.extend_from_slice(&state);
        out.extend_from_slice(self.message.as_bytes());
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "ERR packet");
        if r.u8()? != 0xff {
            return Err(malformed("ERR packet", "does not start with 0xff"));
        }
        let code = r.u16()?;
        let mut state = String::new();
        if r.bytes.first() == Some(&b'#') {
            r.u8()?;
            state = String::from_utf8_lossy(r.take(5)?).into_owned();
        }
        let message = String::from_utf8_lossy(r.rest()).into_owned();
        Ok(Self {
            code,
            state,
            message,
        })
    }
}

/// An OK packet (only the fields the callers use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub last_insert_id: u64,
    pub status: u16,
    pub warnings: u16,
}

impl OkPacket {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![0x00];
        put_lenenc(&mut out, self.affected_rows);
        put_lenenc(&mut out, self.last_insert_id);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&self.warnings.to_le_bytes());
        out
    }

    pub fn decode(payload: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(payload, "OK packet");
        r.u8()?;
        let affected_rows = r.lenenc()?.unwrap_or(0);
        let last_insert_id = r.lenenc()?.unwrap_or(0);
        let status = if r.is_empty() { 0 } else { r.u16()? };
        let warnings = if r.is_empty() { 0 } else { r.u16()? };
        Ok(Self {
            affected_rows,
            last_insert_id,
            status,
            warnings,
        })
    }
}

/// An EOF packet (`CLIENT_DEPRECATE_EOF` is not negotiated, so result sets use them).
pub fn encode_eof(status: u16) -> Vec<u8> {
    let mut out = vec![0xfe, 0, 0];
    out.extend_from_slice(&status.to_le_bytes());
    out
}

pub fn is_eof(payload: &[u8]) -> bool {
    payload.first() == Some(&0xfe) && payload.len() < 9
}

/// `MYSQL_TYPE_VAR_STRING`: every column of the model's result sets is text.
const TYPE_VAR_STRING: u8 = 0xfd;

/// A column definition (`Protocol::ColumnDefinition41`) for a text column `name`.
pub fn encode_column(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for part in ["def", "", "", "", name, name] {
        put_lenenc_bytes(&mut out, part.as_bytes());
    }
    out.push(0x0c);
    out.extend_from_slice(&u16::from(UTF8MB4_GENERAL_CI).to_le_bytes());
    out.extend_from_slice(&1024u32.to_le_bytes());
    out.push(TYPE_VAR_STRING);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out
}

/// The column's name (`name`, the alias) from a column definition.
pub fn decode_column_name(payload: &[u8]) -> Result<String, WireError> {
    let mut r = Reader::new(payload, "column definition");
    for _ in 0..4 {
        r.lenenc_bytes()?;
    }
    Ok(r.lenenc_string()?.unwrap_or_default())
}

/// A text result row.
pub fn encode_row(values: &[Option<String>]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        match value {
            None => out.push(0xfb),
            Some(text) => put_lenenc_bytes(&mut out, text.as_bytes()),
        }
    }
    out
}

pub fn decode_row(payload: &[u8], columns: usize) -> Result<Vec<Option<String>>, WireError> {
    let mut r = Reader::new(payload, "result row");
    (0..columns).map(|_| r.lenenc_string()).collect()
}

/// The payloads of a whole text result set, in order.
pub fn encode_result_set(
    columns: &[&str],
    rows: &[Vec<Option<String>>],
    status: u16,
) -> Vec<Vec<u8>> {
    let mut packets = Vec::with_capacity(columns.len() + rows.len() + 3);
    let mut count = Vec::new();
    put_lenenc(&mut count, columns.len() as u64);
    packets.push(count);
    packets.extend(columns.iter().map(|c| encode_column(c)));
    packets.push(encode_eof(status));
    packets.extend(rows.iter().map(|r| encode_row(r)));
    packets.push(encode_eof(status));
    packets
}

/// The auth response for `plugin` to `nonce`: empty for an empty password, as the
/// server expects. `None` for a plugin this client does not speak.
pub fn scramble(plugin: &str, nonce: &[u8], password: &str) -> Option<Vec<u8>> {
    let password = password.as_bytes();
    match plugin {
        NATIVE_PASSWORD => Some(
            mysql_common::scramble::scramble_native(nonce, password)
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        ),
        CACHING_SHA2_PASSWORD => Some(
            mysql_common::scramble::scramble_sha256(nonce, password)
                .map(|s| s.to_vec())
                .unwrap_or_default(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_round_trips_and_splits_the_nonce_like_mysql() {
        let handshake = Handshake {
            server_version: "8.4.3".into(),
            connection_id: 7,
            nonce: (1..=20).collect(),
            capabilities: capability::PROTOCOL_41
                | capability::SECURE_CONNECTION
                | capability::PLUGIN_AUTH,
            collation: UTF8MB4_GENERAL_CI,
            status: 2,
            auth_plugin: CACHING_SHA2_PASSWORD.into(),
        };
        let bytes = handshake.encode();
        assert_eq!(&bytes[..6], b"\x0a8.4.3");
        assert_eq!(Handshake::decode(&bytes).unwrap(), handshake);
        assert!(Handshake::decode(&[9, 0]).is_err(), "protocol 9 is refused");
        assert!(Handshake::decode(&bytes[..20]).is_err(), "truncated");
    }

    #[test]
    fn handshake_response_round_trips() {
        let response = HandshakeResponse {
            capabilities: capability::PROTOCOL_41
                | capability::SECURE_CONNECTION
                | capability::PLUGIN_AUTH
                | capability::CONNECT_WITH_DB,
            max_packet: 1 << 24,
            collation: UTF8MB4_GENERAL_CI,
            user: "root".into(),
            auth_response: vec![1, 2, 3],
            database: Some("db".into()),
            auth_plugin: Some(NATIVE_PASSWORD.into()),
        };
        assert_eq!(
            HandshakeResponse::decode(&response.encode()).unwrap(),
            response
        );
    }

    #[test]
    fn err_ok_and_rows_round_trip() {
        let error = ServerError {
            code: 1290,
            state: "HY000".into(),
            message: "read only".into(),
        };
        assert_eq!(ServerError::decode(&error.encode()).unwrap(), error);
        let ok = OkPacket {
            affected_rows: 300,
            last_insert_id: 70_000,
            status: 2,
            warnings: 1,
        };
        assert_eq!(OkPacket::decode(&ok.encode()).unwrap(), ok);
        let row = vec![Some("a".repeat(300)), None, Some(String::new())];
        assert_eq!(decode_row(&encode_row(&row), 3).unwrap(), row);
        assert!(decode_row(&encode_row(&row), 4).is_err(), "missing column");
        assert_eq!(
            decode_column_name(&encode_column("Value")).unwrap(),
            "Value"
        );
        assert!(is_eof(&encode_eof(0)));
    }

    #[test]
    fn lenenc_uses_the_shortest_form() {
        for (value, length) in [
            (250u64, 1),
            (251, 3),
            (65_535, 3),
            (65_536, 4),
            (1 << 24, 9),
        ] {
            let mut out = Vec::new();
            put_lenenc(&mut out, value);
            assert_eq!(out.len(), length, "{value}");
            assert_eq!(Reader::new(&out, "t").lenenc().unwrap(), Some(value));
        }
    }

    #[tokio::test]
    async fn packets_split_at_16_mib_and_join_again() {
        let payload = vec![7u8; MAX_PACKET_PAYLOAD + 10];
        let mut wire = Vec::new();
        let mut sequence = 3;
        write_packet(&mut wire, &mut sequence, &payload)
            .await
            .unwrap();
        assert_eq!(sequence, 5, "two physical packets");
        let packet = read_packet(&mut wire.as_slice()).await.unwrap();
        assert_eq!(packet.payload, payload);
        assert_eq!(packet.sequence, 4);
        // Exactly 16 MiB - 1 needs an empty trailer.
        let mut wire = Vec::new();
        let mut sequence = 0;
        write_packet(&mut wire, &mut sequence, &vec![1u8; MAX_PACKET_PAYLOAD])
            .await
            .unwrap();
        assert_eq!(sequence, 2);
        assert_eq!(wire.len(), MAX_PACKET_PAYLOAD + 8);
        // A truncated stream is an error, not a short packet.
        assert!(read_packet(&mut &wire[..100]).await.is_err());
    }

    #[test]
    fn scrambles_match_the_documented_algorithms() {
        let nonce: Vec<u8> = (0..20).collect();
        assert_eq!(
            scramble(NATIVE_PASSWORD, &nonce, "").unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(scramble(NATIVE_PASSWORD, &nonce, "pw").unwrap().len(), 20);
        assert_eq!(
            scramble(CACHING_SHA2_PASSWORD, &nonce, "pw").unwrap().len(),
            32
        );
        assert_ne!(
            scramble(CACHING_SHA2_PASSWORD, &nonce, "pw"),
            scramble(CACHING_SHA2_PASSWORD, &nonce, "pX")
        );
        assert!(scramble("dialog", &nonce, "pw").is_none());
    }
}
