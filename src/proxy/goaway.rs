//! Notices an endpoint's HTTP/2 GOAWAY on the wire. hyper does not say when a client connection
//! has received one, and a stream opened on such a connection is ignored by the endpoint (nginx
//! keeps the connection open for a lingering close while it finishes older streams), so a request
//! sent there would wait for its timeout. The pool reads this flag and stops handing the
//! connection out the moment the frame arrives.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

const FRAME_HEADER: usize = 9;
const GOAWAY: u8 = 0x7;

/// The read side of an HTTP/2 client connection, followed frame by frame (the server sends frames
/// from its first byte: no preface on that side).
pub struct Sniffed<S> {
    inner: S,
    header: [u8; FRAME_HEADER],
    have: usize,
    /// Payload bytes of the current frame still to skip.
    skip: usize,
    pub going_away: Arc<AtomicBool>,
    /// Never sent on: its receivers learn that the connection is gone when it is dropped.
    gone: watch::Sender<()>,
}

impl<S> Sniffed<S> {
    pub fn new(inner: S) -> Sniffed<S> {
        Sniffed { inner, header: [0; FRAME_HEADER], have: 0, skip: 0, going_away: Arc::default(), gone: watch::Sender::new(()) }
    }

    /// Resolves (`changed()` errs) once this connection's bytes are dropped.
    pub fn gone(&self) -> watch::Receiver<()> {
        self.gone.subscribe()
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER {
                let h = self.header;
                self.skip = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
                if h[3] == GOAWAY {
                    self.going_away.store(true, Relaxed);
                }
                self.have = 0;
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut me.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            me.scan(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_goaway_across_reads_and_skips_payloads() {
        let mut s = Sniffed::new(());
        // SETTINGS with a 6-byte payload whose bytes look like a GOAWAY header, then a GOAWAY split
        // across two reads.
        let settings = [0, 0, 6, 0x4, 0, 0, 0, 0, 0, 0, 0, 8, 0x7, 0, 0];
        s.scan(&settings);
        assert!(!s.going_away.load(Relaxed), "payload bytes are not frame headers");
        let goaway = [0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0];
        s.scan(&goaway[..4]);
        s.scan(&goaway[4..]);
        assert!(s.going_away.load(Relaxed));
    }
}
