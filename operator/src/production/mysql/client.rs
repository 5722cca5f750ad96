//! A MySQL protocol client over any byte stream: the connection phase (handshake v10,
//! `mysql_native_password`, `caching_sha2_password` with its fast path and RSA full
//! authentication, auth switch) and the text protocol's `COM_QUERY` and `COM_QUIT`.
//! No timeouts and no retries here: the session in `production::mysql` bounds every call
//! and drops a connection that failed mid-exchange.

use tokio::io::{AsyncRead, AsyncWrite};

use super::wire::{
    self, CACHING_SHA2_PASSWORD, Handshake, HandshakeResponse, OkPacket, Packet, ServerError,
    WireError, caching_sha2, capability, command,
};

/// What the client asks for: protocol 4.1, plugin auth, transactions. No TLS, no
/// compression, no `CLIENT_DEPRECATE_EOF` (result sets end with EOF packets).
const CLIENT_CAPABILITIES: u32 = capability::LONG_PASSWORD
    | capability::FOUND_ROWS
    | capability::LONG_FLAG
    | capability::PROTOCOL_41
    | capability::TRANSACTIONS
    | capability::SECURE_CONNECTION
    | capability::MULTI_RESULTS
    | capability::PLUGIN_AUTH
    | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA;

/// How a protocol exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("ERROR {} ({}): {}", .0.code, .0.state, .0.message)]
    Server(ServerError),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Protocol(String),
}

impl From<WireError> for ClientError {
    fn from(error: WireError) -> Self {
        match error {
            WireError::Io(io) => ClientError::Io(io),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

/// A text result: column names and rows of text values (`None` is SQL NULL). Statements
/// without a result set have no columns and report `affected_rows`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
    pub affected_rows: u64,
}

impl QueryResult {
    /// The value of column `name` (case-insensitive, as MySQL's column names are) in row `row`.
    pub fn value(&self, row: usize, name: &str) -> Option<&str> {
        let index = self
            .columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))?;
        self.rows.get(row)?.get(index)?.as_deref()
    }

    /// The first column of the first row.
    pub fn scalar(&self) -> Option<&str> {
        self.rows.first()?.first()?.as_deref()
    }
}

/// One authenticated connection in the command phase.
pub struct Connection<S> {
    stream: S,
    connection_id: u32,
    server_version: String,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Runs the connection phase on `stream` and logs in as `user`.
    pub async fn handshake(mut stream: S, user: &str, password: &str) -> Result<Self, ClientError> {
        let greeting = wire::read_packet(&mut stream).await?;
        if greeting.payload.first() == Some(&0xff) {
            // Refused before the handshake: too many connections, host blocked, ...
            return Err(ClientError::Server(ServerError::decode(&greeting.payload)?));
        }
        let handshake = Handshake::decode(&greeting.payload)?;
        if handshake.capabilities & capability::PROTOCOL_41 == 0 {
            return Err(ClientError::Protocol(format!(
                "server {} does not speak protocol 4.1",
                handshake.server_version
            )));
        }
        let mut plugin = handshake.auth_plugin.clone();
        let mut nonce = handshake.nonce.clone();
        // A plugin this client does not know gets an empty answer; the server then asks
        // for one it does know with an auth switch, or refuses.
        let auth_response = wire::scramble(&plugin, &nonce, password).unwrap_or_default();
        let capabilities = CLIENT_CAPABILITIES & handshake.capabilities
            | capability::PROTOCOL_41
            | capability::SECURE_CONNECTION;
        let response = HandshakeResponse {
            capabilities,
            max_packet: wire::MAX_MESSAGE as u32,
            collation: wire::UTF8MB4_GENERAL_CI,
            user: user.to_string(),
            auth_response,
            database: None,
            auth_plugin: Some(plugin.clone()),
        };
        let mut sequence = greeting.sequence.wrapping_add(1);
        wire::write_packet(&mut stream, &mut sequence, &response.encode()).await?;
        loop {
            let Packet {
                sequence: received,
                payload,
            } = wire::read_packet(&mut stream).await?;
            sequence = received.wrapping_add(1);
            match payload.first() {
                Some(0x00) => break,
                Some(0xff) => return Err(ClientError::Server(ServerError::decode(&payload)?)),
                Some(0xfe) => {
                    // AuthSwitchRequest: plugin name, then the new nonce.
                    let mut r = wire::Reader::new(&payload[1..], "auth switch request");
                    plugin = r.null_string()?;
                    let data = r.rest();
                    nonce = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
                    let answer = wire::scramble(&plugin, &nonce, password).ok_or_else(|| {
                        ClientError::Protocol(format!(
                            "server asks for authentication plugin {plugin}, which this client does not support"
                        ))
                    })?;
                    wire::write_packet(&mut stream, &mut sequence, &answer).await?;
                }
                Some(0x01) if plugin == CACHING_SHA2_PASSWORD => match payload.get(1) {
                    Some(&caching_sha2::FAST_AUTH_SUCCESS) => {}
                    Some(&caching_sha2::PERFORM_FULL_AUTHENTICATION) => {
                        // No TLS: ask for the server's RSA key and send the password
                        // encrypted with it (what GET_SOURCE_PUBLIC_KEY=1 does for replicas).
                        wire::write_packet(
                            &mut stream,
                            &mut sequence,
                            &[caching_sha2::REQUEST_PUBLIC_KEY],
                        )
                        .await?;
                        let key = wire::read_packet(&mut stream).await?;
                        sequence = key.sequence.wrapping_add(1);
                        let pem = match key.payload.split_first() {
                            Some((0x01, pem)) if pem.starts_with(b"-----BEGIN") => pem.to_vec(),
                            _ => {
                                return Err(ClientError::Protocol(
                                    "server did not send an RSA public key for caching_sha2_password".into(),
                                ));
                            }
                        };
                        let mut secret = password.as_bytes().to_vec();
                        secret.push(0);
                        for (i, byte) in secret.iter_mut().enumerate() {
                            *byte ^= nonce[i % nonce.len().max(1)];
                        }
                        let encrypted = encrypt_with_public_key(&secret, &pem)?;
                        wire::write_packet(&mut stream, &mut sequence, &encrypted).await?;
                    }
                    other => {
                        return Err(ClientError::Protocol(format!(
                            "unexpected caching_sha2_password status {other:?}"
                        )));
                    }
                },
                other => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected packet {other:?} during authentication"
                    )));
                }
            }
        }
        Ok(Self {
            stream,
            connection_id: handshake.connection_id,
            server_version: handshake.server_version,
        })
    }

    /// The server's id for this connection (`CONNECTION_ID()`).
    pub fn connection_id(&self) -> u32 {
        self.connection_id
    }

    pub fn server_version(&self) -> &str {
        &self.server_version
    }

    /// Sends a command packet (sequence 0) with `payload` after the command byte.
    pub async fn send_command(&mut self, command: u8, payload: &[u8]) -> Result<(), ClientError> {
        let mut packet = Vec::with_capacity(payload.len() + 1);
        packet.push(command);
        packet.extend_from_slice(payload);
        let mut sequence = 0;
        wire::write_packet(&mut self.stream, &mut sequence, &packet).await?;
        Ok(())
    }

    /// Reads the next packet's payload, turning an ERR packet into [`ClientError::Server`].
    pub async fn read_reply(&mut self) -> Result<Vec<u8>, ClientError> {
        let packet = wire::read_packet(&mut self.stream).await?;
        if packet.payload.first() == Some(&0xff) {
            return Err(ClientError::Server(ServerError::decode(&packet.payload)?));
        }
        Ok(packet.payload)
    }

    /// `COM_QUERY`: runs one statement and reads its whole (text) result.
    pub async fn query(&mut self, statement: &str) -> Result<QueryResult, ClientError> {
        self.send_command(command::QUERY, statement.as_bytes())
            .await?;
        let first = self.read_reply().await?;
        if first.first() == Some(&0x00) {
            let ok = OkPacket::decode(&first)?;
            return Ok(QueryResult {
                affected_rows: ok.affected_rows,
                ..QueryResult::default()
            });
        }
        let count = wire::Reader::new(&first, "column count")
            .lenenc()?
            .ok_or_else(|| ClientError::Protocol("NULL column count".into()))?;
        let count = usize::try_from(count)
            .map_err(|_| ClientError::Protocol(format!("column count {count}")))?;
        let mut columns = Vec::with_capacity(count.min(1024));
        for _ in 0..count {
            columns.push(wire::decode_column_name(&self.read_reply().await?)?);
        }
        if !wire::is_eof(&self.read_reply().await?) {
            return Err(ClientError::Protocol(
                "no EOF after the column definitions".into(),
            ));
        }
        let mut rows = Vec::new();
        loop {
            let packet = self.read_reply().await?;
            if wire::is_eof(&packet) {
                break;
            }
            rows.push(wire::decode_row(&packet, count)?);
        }
        Ok(QueryResult {
            columns,
            rows,
            affected_rows: 0,
        })
    }

    /// `COM_QUIT`: the server closes the connection without a reply.
    pub async fn quit(mut self) -> Result<(), ClientError> {
        self.send_command(command::QUIT, &[]).await
    }

    /// The stream, for protocols that take the connection over after a command (the
    /// simulation's binlog dump).
    pub fn into_stream(self) -> S {
        self.stream
    }
}

/// RSA-OAEP encryption of the full-authentication secret with the server's PEM key.
/// mysql_common's parser panics on keys it cannot read; contain that to an error.
fn encrypt_with_public_key(secret: &[u8], pem: &[u8]) -> Result<Vec<u8>, ClientError> {
    let secret = secret.to_vec();
    let pem = pem.to_vec();
    std::panic::catch_unwind(move || mysql_common::crypto::encrypt(&secret, &pem)).map_err(|_| {
        ClientError::Protocol("the server's RSA public key could not be parsed".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::production::mysql::wire::{NATIVE_PASSWORD, encode_result_set};
    use tokio::io::{AsyncRead, AsyncWrite, duplex};

    /// A scripted server: sends the greeting, checks the login, then answers queries.
    async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
        mut stream: S,
        plugin: &str,
        switch_to: Option<&str>,
        password: &str,
    ) {
        let nonce: Vec<u8> = (1..=20).collect();
        let handshake = Handshake {
            server_version: "test".into(),
            connection_id: 42,
            nonce: nonce.clone(),
            capabilities: capability::PROTOCOL_41
                | capability::SECURE_CONNECTION
                | capability::PLUGIN_AUTH
                | capability::PLUGIN_AUTH_LENENC_CLIENT_DATA,
            collation: 45,
            status: 2,
            auth_plugin: plugin.into(),
        };
        let mut seq = 0;
        wire::write_packet(&mut stream, &mut seq, &handshake.encode())
            .await
            .unwrap();
        let login = wire::read_packet(&mut stream).await.unwrap();
        let login = HandshakeResponse::decode(&login.payload).unwrap();
        assert_eq!(login.user, "root");
        seq = 2;
        let (final_plugin, answer) = match switch_to {
            Some(other) => {
                let mut switch = vec![0xfe];
                switch.extend_from_slice(other.as_bytes());
                switch.push(0);
                switch.extend_from_slice(&nonce);
                switch.push(0);
                wire::write_packet(&mut stream, &mut seq, &switch)
                    .await
                    .unwrap();
                let answer = wire::read_packet(&mut stream).await.unwrap();
                seq = answer.sequence + 1;
                (other, answer.payload)
            }
            None => (plugin, login.auth_response),
        };
        if wire::scramble(final_plugin, &nonce, password).unwrap() != answer {
            let error = ServerError {
                code: 1045,
                state: "28000".into(),
                message: "Access denied for user 'root'".into(),
            };
            wire::write_packet(&mut stream, &mut seq, &error.encode())
                .await
                .unwrap();
            return;
        }
        if final_plugin == CACHING_SHA2_PASSWORD {
            wire::write_packet(&mut stream, &mut seq, &[0x01, 0x03])
                .await
                .unwrap();
        }
        wire::write_packet(&mut stream, &mut seq, &OkPacket::default().encode())
            .await
            .unwrap();
        loop {
            let Ok(packet) = wire::read_packet(&mut stream).await else {
                return;
            };
            let mut seq = 1;
            match packet.payload[0] {
                command::QUIT => return,
                command::QUERY if &packet.payload[1..] == b"SELECT 1" => {
                    for p in encode_result_set(&["1", "n"], &[vec![Some("1".into()), None]], 2) {
                        wire::write_packet(&mut stream, &mut seq, &p).await.unwrap();
                    }
                }
                _ => {
                    let error = ServerError {
                        code: 1064,
                        state: "42000".into(),
                        message: "syntax".into(),
                    };
                    wire::write_packet(&mut stream, &mut seq, &error.encode())
                        .await
                        .unwrap();
                }
            }
        }
    }

    async fn login(
        plugin: &'static str,
        switch_to: Option<&'static str>,
        password: &str,
    ) -> Result<Connection<tokio::io::DuplexStream>, ClientError> {
        let (client, server) = duplex(1 << 16);
        tokio::spawn(serve(server, plugin, switch_to, "secret"));
        Connection::handshake(client, "root", password).await
    }

    #[tokio::test]
    async fn logs_in_with_each_plugin_and_through_an_auth_switch() {
        for (plugin, switch) in [
            (NATIVE_PASSWORD, None),
            (CACHING_SHA2_PASSWORD, None),
            (CACHING_SHA2_PASSWORD, Some(NATIVE_PASSWORD)),
        ] {
            let mut conn = login(plugin, switch, "secret").await.unwrap();
            assert_eq!(conn.connection_id(), 42);
            let result = conn.query("SELECT 1").await.unwrap();
            assert_eq!(result.columns, ["1", "n"]);
            assert_eq!(result.scalar(), Some("1"));
            assert_eq!(result.value(0, "N"), None);
            match conn.query("BOGUS").await {
                Err(ClientError::Server(e)) => {
                    assert_eq!((e.code, e.state.as_str()), (1064, "42000"))
                }
                other => panic!("expected a server error, got {other:?}"),
            }
            conn.quit().await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_wrong_password_is_access_denied_with_its_sqlstate() {
        for plugin in [NATIVE_PASSWORD, CACHING_SHA2_PASSWORD] {
            match login(plugin, None, "wrong").await {
                Err(ClientError::Server(e)) => {
                    assert_eq!((e.code, e.state.as_str()), (1045, "28000"), "{plugin}")
                }
                other => panic!("expected access denied, got {:?}", other.map(|_| ())),
            }
        }
    }

    #[tokio::test]
    async fn a_server_that_hangs_up_is_an_io_error_and_garbage_is_a_protocol_error() {
        let (client, server) = duplex(64);
        drop(server);
        assert!(matches!(
            Connection::handshake(client, "root", "x").await,
            Err(ClientError::Io(_))
        ));
        let (client, mut server) = duplex(64);
        let mut seq = 0;
        wire::write_packet(&mut server, &mut seq, b"\x09junk")
            .await
            .unwrap();
        assert!(matches!(
            Connection::handshake(client, "root", "x").await,
            Err(ClientError::Protocol(_))
        ));
    }
}
