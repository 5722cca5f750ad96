//! RESP2 framing for the Dragonfly model: requests as arrays of bulk strings (what every
//! client, the `redis` crate included, sends) or inline commands, and the reply types.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest bulk string or array the model accepts.
const MAX_ITEMS: usize = 1 << 20;
const MAX_BULK: usize = 64 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Simple("OK".into())
    }
    pub fn error(message: impl Into<String>) -> Reply {
        Reply::Error(message.into())
    }
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Reply {
        Reply::Bulk(Some(bytes.into()))
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
            Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
            Reply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
            Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Reply::Bulk(Some(bytes)) => {
                out.extend_from_slice(format!("${}\r\n", bytes.len()).as_bytes());
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::Array(items) => {
                out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
                for item in items {
                    item.encode(out);
                }
            }
        }
    }
}

pub async fn write_reply<W: AsyncWrite + Unpin>(
    writer: &mut W,
    reply: &Reply,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    reply.encode(&mut out);
    writer.write_all(&out).await?;
    writer.flush().await
}

/// Writes a command as an array of bulk strings (how the model's replicas talk to masters).
pub async fn write_command<W: AsyncWrite + Unpin>(
    writer: &mut W,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    let reply = Reply::Array(parts.iter().map(|p| Reply::bulk(p.to_vec())).collect());
    write_reply(writer, &reply).await
}

fn invalid(message: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, message.to_string())
}

async fn read_header<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = (&mut *reader)
        .take(64 * 1024)
        .read_until(b'\n', &mut line)
        .await?;
    if read == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\r\n") {
        return Err(invalid("line not terminated by CRLF"));
    }
    line.truncate(line.len() - 2);
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("header is not UTF-8"))
}

/// Reads one frame of any type (used for replies and replication frames); `None` at EOF.
pub async fn read_frame<R: AsyncBufRead + Unpin>(reader: &mut R) -> std::io::Result<Option<Reply>> {
    let Some(header) = read_header(reader).await? else {
        return Ok(None);
    };
    let (kind, rest) = header
        .split_at_checked(1)
        .ok_or_else(|| invalid("empty header"))?;
    let frame = match kind {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Integer(rest.parse().map_err(|_| invalid("bad integer"))?),
        "$" => {
            let len: i64 = rest.parse().map_err(|_| invalid("bad bulk length"))?;
            if len < 0 {
                Reply::Bulk(None)
            } else {
                let len = usize::try_from(len).map_err(|_| invalid("bad bulk length"))?;
                if len > MAX_BULK {
                    return Err(invalid("bulk string too long"));
                }
                let mut bytes = vec![0; len + 2];
                reader.read_exact(&mut bytes).await?;
                bytes.truncate(len);
                Reply::Bulk(Some(bytes))
            }
        }
        "*" => {
            let count: i64 = rest.parse().map_err(|_| invalid("bad array length"))?;
            let count = usize::try_from(count.max(0)).map_err(|_| invalid("bad array length"))?;
            if count > MAX_ITEMS {
                return Err(invalid("array too long"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let item = Box::pin(read_frame(reader))
                    .await?
                    .ok_or_else(|| invalid("EOF inside array"))?;
                items.push(item);
            }
            Reply::Array(items)
        }
        // Inline command: words separated by spaces.
        _ => Reply::Array(
            header
                .split_whitespace()
                .map(|w| Reply::bulk(w.as_bytes().to_vec()))
                .collect(),
        ),
    };
    Ok(Some(frame))
}

/// Reads one command as its arguments; `None` at EOF.
pub async fn read_command<R: AsyncBufRead + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<Vec<u8>>>> {
    match read_frame(reader).await? {
        None => Ok(None),
        Some(Reply::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Reply::Bulk(Some(bytes)) => Ok(bytes),
                _ => Err(invalid("command arguments must be bulk strings")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid("expected a command array")),
    }
}
