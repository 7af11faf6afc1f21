//! Moving message bodies and reading response heads between the two connections of an exchange.

use std::io;
use std::net::SocketAddr;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use super::chunked::{ChunkError, ChunkedScanner};
use super::fill;
use super::head::{BodyKind, Head};
use crate::proxy::error::ProxyError;

/// Which end of a body copy failed; the caller knows which connection that is.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
    /// The sender closed before the body was complete.
    Truncated,
    Framing(ChunkError),
}

impl CopyError {
    /// For a copy whose source is the endpoint and whose destination is the client.
    pub fn into_proxy(self, addr: SocketAddr) -> ProxyError {
        match self {
            CopyError::Read(source) => ProxyError::UpstreamIo { addr, source },
            CopyError::Truncated => ProxyError::UpstreamIo { addr, source: io::ErrorKind::UnexpectedEof.into() },
            CopyError::Framing(e) => ProxyError::BadResponse { addr, detail: e.to_string() },
            CopyError::Write(e) => ProxyError::Downstream(e.to_string()),
        }
    }

    /// For a copy whose source is the client and whose destination is the endpoint.
    pub fn into_proxy_from_client(self, addr: SocketAddr) -> ProxyError {
        match self {
            CopyError::Read(e) => ProxyError::Downstream(e.to_string()),
            CopyError::Truncated => ProxyError::Downstream("client closed before sending the whole body".into()),
            CopyError::Framing(e) => ProxyError::BadRequest(e.to_string()),
            CopyError::Write(source) => ProxyError::UpstreamIo { addr, source },
        }
    }
}

/// Writes `prefix` (a head) followed by one body of `kind`, taking bytes from `buf` first and then
/// from `src`. Leaves any bytes past the body in `buf` (the next pipelined message). The head goes
/// out at once even when no body byte has arrived yet: the sender may be waiting for a 100.
pub async fn copy_body<R, W>(kind: BodyKind, buf: &mut BytesMut, src: &mut R, dst: &mut W, prefix: &mut Vec<u8>) -> Result<(), CopyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut left = match kind {
        BodyKind::Length(n) => n,
        _ => 0,
    };
    let mut chunks = ChunkedScanner::default();
    let mut head_due = !prefix.is_empty();
    loop {
        let (take, done) = match kind {
            BodyKind::Empty => (0, true),
            BodyKind::Length(_) => {
                let take = left.min(buf.len() as u64) as usize;
                left -= take as u64;
                (take, left == 0)
            }
            BodyKind::Chunked => {
                let take = chunks.scan(buf).map_err(CopyError::Framing)?;
                (take, chunks.is_done())
            }
            BodyKind::UntilClose => (buf.len(), false),
        };
        if head_due {
            // Head and the first body bytes in one write: one segment for small messages.
            prefix.extend_from_slice(&buf[..take]);
            dst.write_all(prefix).await.map_err(CopyError::Write)?;
            head_due = false;
        } else if take > 0 {
            dst.write_all(&buf[..take]).await.map_err(CopyError::Write)?;
        }
        buf.advance(take);
        if done {
            return Ok(());
        }
        if fill(src, buf).await.map_err(CopyError::Read)? == 0 {
            return if kind == BodyKind::UntilClose { Ok(()) } else { Err(CopyError::Truncated) };
        }
    }
}

/// Reads the final response head, passing interim (1xx) responses straight to the client — or
/// dropping them for an HTTP/1.0 client, which would take them for the final answer.
pub async fn read_response_head<R, W>(up: &mut R, buf: &mut BytesMut, is_head: bool, interim: bool, client: &mut W, addr: SocketAddr) -> Result<Head, ProxyError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let method: &[u8] = if is_head { b"HEAD" } else { b"GET" };
    loop {
        // Nothing to parse yet (the usual case: the request just went out).
        let parsed = if buf.is_empty() { Ok(None) } else { Head::response(buf, method) };
        match parsed {
            Err(e) => return Err(ProxyError::BadResponse { addr, detail: e.to_string() }),
            Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                let mut out = Vec::with_capacity(h.len);
                h.write_to(buf, &mut out, false, &[]);
                buf.advance(h.len);
                if interim {
                    client.write_all(&out).await.map_err(|e| ProxyError::Downstream(e.to_string()))?;
                }
            }
            Ok(Some(h)) => return Ok(h),
            Ok(None) => {
                if fill(up, buf).await.map_err(|source| ProxyError::UpstreamIo { addr, source })? == 0 {
                    return Err(ProxyError::UpstreamIo { addr, source: io::ErrorKind::UnexpectedEof.into() });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_exactly_one_body_and_keeps_the_rest() {
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n"[..]);
        let mut src: &[u8] = b"";
        let mut out = Vec::new();
        copy_body(BodyKind::Chunked, &mut buf, &mut src, &mut out, &mut b"HEAD\r\n".to_vec()).await.unwrap();
        assert_eq!(out, b"HEAD\r\n3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");

        let mut buf = BytesMut::from(&b"ab"[..]);
        let mut src: &[u8] = b"cdefXYZ";
        let mut out = Vec::new();
        copy_body(BodyKind::Length(6), &mut buf, &mut src, &mut out, &mut Vec::new()).await.unwrap();
        assert_eq!(out, b"abcdef");
        assert_eq!(&buf[..], b"XYZ");
    }

    #[tokio::test]
    async fn short_body_is_an_error() {
        let mut buf = BytesMut::new();
        let mut src: &[u8] = b"abc";
        let mut out = Vec::new();
        let r = copy_body(BodyKind::Length(10), &mut buf, &mut src, &mut out, &mut Vec::new()).await;
        assert!(matches!(r, Err(CopyError::Truncated)));
    }
}
