//! HTTP/2 request bodies that can be sent again: the first try streams the client's body to the
//! endpoint as it arrives (a bidirectional gRPC stream must not wait for its end) and keeps a
//! copy of up to 64 KiB on the side; a retry replays the copy if the body was complete by then.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Larger bodies are not kept, and their requests are retried only while nothing was sent.
pub const REPLAY_LIMIT: usize = 64 * 1024;

#[derive(Default)]
pub struct Kept {
    data: Vec<Bytes>,
    trailers: Option<HeaderMap>,
    size: usize,
    complete: bool,
    overflow: bool,
}

impl Kept {
    fn add(&mut self, frame: &Frame<Bytes>) {
        if self.overflow {
            return;
        }
        if let Some(d) = frame.data_ref() {
            self.size += d.len();
            if self.size > REPLAY_LIMIT {
                self.overflow = true;
                self.data = Vec::new();
                return;
            }
            self.data.push(d.clone());
        } else if let Some(t) = frame.trailers_ref() {
            self.trailers = Some(t.clone());
        }
    }
}

/// The shared copy of one request's body.
#[derive(Clone, Default)]
pub struct Replay(Arc<Mutex<Kept>>);

impl Replay {
    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wraps the client's body for the first try.
    pub fn tee(&self, inner: Incoming) -> UpBody {
        if inner.is_end_stream() {
            self.lock().complete = true;
        }
        UpBody::Tee { inner, keep: self.clone() }
    }

    /// The body again for another try, if all of it was seen and kept.
    pub fn again(&self) -> Option<UpBody> {
        let k = self.lock();
        (k.complete && !k.overflow).then(|| UpBody::Kept { data: k.data.iter().cloned().collect(), trailers: k.trailers.clone() })
    }

    pub fn ready(&self) -> bool {
        let k = self.lock();
        k.complete && !k.overflow
    }
}

/// A request body sent upstream over HTTP/2.
pub enum UpBody {
    Tee { inner: Incoming, keep: Replay },
    Kept { data: VecDeque<Bytes>, trailers: Option<HeaderMap> },
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Tee { inner, keep } => {
                let frame = ready!(Pin::new(&mut *inner).poll_frame(cx));
                let mut k = keep.lock();
                match &frame {
                    Some(Ok(f)) => k.add(f),
                    None => k.complete = true,
                    Some(Err(_)) => {}
                }
                // hyper stops polling once the body says it has ended (END_STREAM goes on the
                // last data frame), so the end is noted here too, not only on `None`.
                if inner.is_end_stream() {
                    k.complete = true;
                }
                drop(k);
                Poll::Ready(frame)
            }
            UpBody::Kept { data, trailers } => {
                Poll::Ready(data.pop_front().map(|d| Ok(Frame::data(d))).or_else(|| trailers.take().map(|t| Ok(Frame::trailers(t)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Tee { inner, .. } => inner.is_end_stream(),
            UpBody::Kept { data, trailers } => data.is_empty() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Tee { inner, .. } => inner.size_hint(),
            UpBody::Kept { data, trailers: None } => SizeHint::with_exact(data.iter().map(|d| d.len() as u64).sum()),
            UpBody::Kept { .. } => SizeHint::default(),
        }
    }
}
