//! The data plane's TCP sockets: registered with tokio's reactor as any socket is, but read and
//! written with direct system calls (rustix) instead of glibc's `recv`/`send`.
//!
//! Why: glibc's socket calls are thread-cancellation points. Once a process has a second thread
//! (weft has several: the store writer, the routing-table builder, the catalog publisher, the
//! control plane's runtime, the blocking pool), each call switches cancellation on and off around
//! the system call, two atomic read-modify-writes: ~50 instructions per call, four calls per
//! proxied HTTP/1.1 request, ~200 of a request's ~10,300 user-space instructions (callgrind,
//! `benches/instructions.sh`). weft never cancels threads, so that bookkeeping buys nothing.
//!
//! Readiness is handled as tokio's own `TcpStream` does: a read or write that moved fewer bytes
//! than asked clears the readiness it used, so the next one waits for the reactor instead of
//! making a system call that would only say "would block".

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};

/// A connected TCP stream, as small as tokio's: an upstream connection moves with every answer
/// and held connection.
pub struct Sock {
    fd: AsyncFd<std::net::TcpStream>,
}

/// A listening TCP socket whose accepted streams are [`Sock`]s (registered once, as they are).
pub struct SockListener {
    fd: AsyncFd<std::net::TcpListener>,
}

impl SockListener {
    /// Takes over a bound listener (from `bind` or handed over by a previous process).
    pub fn new(l: std::net::TcpListener) -> io::Result<SockListener> {
        l.set_nonblocking(true)?;
        #[allow(unsafe_code)]
        // SAFETY: a std listener owns its descriptor and names the same one for its whole life.
        let fd = unsafe { AsyncFd::register_with_interest(l, Interest::READABLE) };
        Ok(SockListener { fd: fd.map_err(|e| e.into_parts().1)? })
    }

    /// The next connection, and its peer's address as `accept` gave it (the access log's client
    /// address, without a `getpeername` per request).
    pub async fn accept(&self) -> io::Result<(Sock, Option<SocketAddr>)> {
        let flags = SocketFlags::NONBLOCK | SocketFlags::CLOEXEC;
        let (fd, peer) = self.fd.async_io(Interest::READABLE, |l| Ok(rustix::net::acceptfrom_with(l, flags)?)).await?;
        Ok((Sock::new(std::net::TcpStream::from(fd))?, peer.and_then(|a| SocketAddr::try_from(a).ok())))
    }
}

impl std::os::fd::AsFd for SockListener {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

impl Sock {
    /// A non-blocking connected stream.
    fn new(s: std::net::TcpStream) -> io::Result<Sock> {
        #[allow(unsafe_code)]
        // SAFETY: a std stream owns its descriptor and names the same one for its whole life.
        let fd = unsafe { AsyncFd::register(s) };
        Ok(Sock { fd: fd.map_err(|e| e.into_parts().1)? })
    }

    /// Connects to `addr` (no Nagle delay: requests and responses are written whole).
    pub async fn connect(addr: SocketAddr) -> io::Result<Sock> {
        let family = if addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
        let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::NONBLOCK | SocketFlags::CLOEXEC, None)?;
        match rustix::net::connect(&fd, &addr) {
            Ok(()) | Err(rustix::io::Errno::INPROGRESS) => {}
            Err(e) => return Err(e.into()),
        }
        let sock = Sock::new(std::net::TcpStream::from(fd))?;
        // Writable once the handshake is done, either way; the socket's error says which.
        let mut ready = sock.fd.writable().await?;
        ready.retain_ready();
        rustix::net::sockopt::socket_error(sock.fd.get_ref())?.map_err(io::Error::from)?;
        Ok(sock)
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.fd.get_ref().set_nodelay(on)
    }

    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get_ref().peer_addr()
    }

    /// Closing resets the connection (RST) instead of a FIN.
    pub fn set_zero_linger(&self) -> io::Result<()> {
        Ok(rustix::net::sockopt::set_socket_linger(self.fd.get_ref(), Some(std::time::Duration::ZERO))?)
    }

    /// A read that never waits: `WouldBlock` when nothing has arrived.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.try_io(Interest::READABLE, |s| Ok(rustix::net::recv(s, buf, RecvFlags::empty())?.0))
    }

    fn poll_recv(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.fd.poll_read_ready(cx))?;
            #[allow(unsafe_code)]
            // SAFETY: `recv` only writes bytes into the unfilled part; none is de-initialised.
            let unfilled = unsafe { buf.unfilled_mut() };
            let asked = unfilled.len();
            match rustix::net::recv(self.fd.get_ref(), unfilled, RecvFlags::empty()) {
                Ok(((got, _), _)) => {
                    let n = got.len();
                    if n > 0 && n < asked {
                        ready.clear_ready();
                    }
                    #[allow(unsafe_code)]
                    // SAFETY: `recv` initialised these `n` bytes.
                    unsafe {
                        buf.assume_init(n)
                    };
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn poll_send(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // NOSIGNAL: a peer that went away is an error here, not a SIGPIPE.
        self.poll_write_with(cx, buf.len(), |s| rustix::net::send(s, buf, SendFlags::NOSIGNAL))
    }

    /// Several buffers in one call (hyper's HTTP/2 writes frames so).
    fn poll_send_vectored(&self, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let asked = bufs.iter().map(|b| b.len()).sum();
        self.poll_write_with(cx, asked, |s| rustix::net::sendmsg(s, bufs, &mut Default::default(), SendFlags::NOSIGNAL))
    }

    fn poll_write_with(&self, cx: &mut Context<'_>, asked: usize, write: impl Fn(&std::net::TcpStream) -> rustix::io::Result<usize>) -> Poll<io::Result<usize>> {
        loop {
            let mut ready = ready!(self.fd.poll_write_ready(cx))?;
            match write(self.fd.get_ref()) {
                Ok(n) => {
                    if n > 0 && n < asked {
                        ready.clear_ready();
                    }
                    return Poll::Ready(Ok(n));
                }
                Err(rustix::io::Errno::AGAIN) => ready.clear_ready(),
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }

    fn shutdown_write(&self) -> Poll<io::Result<()>> {
        Poll::Ready(self.fd.get_ref().shutdown(std::net::Shutdown::Write))
    }
}

// Reads and writes need only `&Sock`, so a request body can flow up while the response head is
// read: the borrowed halves are plain references.
macro_rules! socket_io {
    ($($t:ty),+) => {$(
        impl AsyncRead for $t {
            fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
                self.poll_recv(cx, buf)
            }
        }

        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                self.poll_send(cx, buf)
            }
            fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
                self.shutdown_write()
            }
            fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
                self.poll_send_vectored(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
        }
    )+};
}

socket_io!(Sock, &Sock);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn accepts_connects_and_carries_bytes_both_ways() {
        let std = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = std.local_addr().unwrap();
        let l = SockListener::new(std).unwrap();
        let (a, b) = tokio::join!(l.accept(), Sock::connect(addr));
        let ((mut a, peer), mut b) = (a.unwrap(), b.unwrap());
        assert_eq!(peer, Some(b.fd.get_ref().local_addr().unwrap()));
        assert_eq!(a.peer_addr().unwrap(), b.fd.get_ref().local_addr().unwrap());
        assert_eq!(b.peer_addr().unwrap(), addr);
        // More than a socket buffer holds: short writes and reads, readiness cleared and regained.
        let big = vec![7u8; 4 << 20];
        let send = async {
            b.write_all(&big).await.unwrap();
            b.shutdown().await.unwrap();
            b
        };
        let mut got = Vec::new();
        let (mut b, read) = tokio::join!(send, a.read_to_end(&mut got));
        assert_eq!(read.unwrap(), big.len());
        assert!(got == big);
        let two = [io::IoSlice::new(b"ba"), io::IoSlice::new(b"ck")];
        assert_eq!(a.write_vectored(&two).await.unwrap(), 4);
        let mut four = [0u8; 4];
        b.read_exact(&mut four).await.unwrap();
        assert_eq!(&four, b"back");
        let mut none = [0u8; 1];
        assert_eq!(b.try_read(&mut none).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop(a);
        // The peer closed: readable, end of stream.
        assert_eq!(b.read(&mut none).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let e = Sock::connect(port).await.err().expect("nothing listens there");
        assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused);
    }
}
