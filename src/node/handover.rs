//! Binary upgrade without refused connections: `weft run --takeover` starts a new process that
//! takes the alias listening sockets of the weft running on the same data dir, as HAProxy (`-x`)
//! and Envoy (hot restart) do. The two processes meet on a unix socket in the data dir
//! (`handover.sock`, `SOCK_SEQPACKET`, so messages keep their boundaries). The new process asks.
//! The old one sends its listening sockets (`SCM_RIGHTS`, with their addresses as JSON) and
//! stops accepting on them. It shuts down everything but the connections it has open, closes
//! the store, which one process holds at a time, and says `released`. The new process then
//! starts as usual, accepting on the sockets it was given. Connections that arrive in between
//! wait in the sockets' accept queues, because a socket stays open while either process holds
//! it. The admin API, the DNS responder and the mesh port are bound anew, so they refuse or
//! drop for the new process's start-up time.
//!
//! All of this is blocking socket work, on a thread of its own or in `spawn_blocking`.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::net::{AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer, SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketFlags, SocketType};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Sockets per message: the kernel passes at most 253 descriptors in one (`SCM_MAX_FD`).
const PER_MESSAGE: usize = 200;
const REQUEST: &[u8] = b"takeover";

#[derive(Serialize, Deserialize)]
struct Message {
    /// The addresses of the sockets attached to this message, in order.
    #[serde(default)]
    listeners: Vec<SocketAddr>,
    /// The last message: the old process has closed the store.
    #[serde(default)]
    released: bool,
}

pub(super) fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("handover.sock")
}

fn seqpacket() -> std::io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// A process that asked for the listeners: answer on `conn`.
pub(super) struct Request {
    pub conn: OwnedFd,
}

/// Listens for a new process's request, as a task on the runtime. (A thread of its own made the
/// process multi-threaded, and glibc then takes the cancellable path of every `send` and `recv`:
/// ~130 instructions per proxied request, measured with `benches/instructions.sh`.) A stale socket
/// file from an earlier process is replaced: only the process that holds the store gets here.
pub(super) fn listen(data_dir: &Path) -> std::io::Result<mpsc::UnboundedReceiver<Request>> {
    let path = socket_path(data_dir);
    let _ = std::fs::remove_file(&path);
    let fd = rustix::net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK, None)?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(&path)?)?;
    rustix::net::listen(&fd, 4)?;
    // `AsyncFd::new` is deprecated because a borrowed fd could be closed while registered; this
    // one is an `OwnedFd` the AsyncFd owns until the task ends (`register`, the replacement, is
    // `unsafe`, which this crate denies).
    #[allow(deprecated)]
    let fd = tokio::io::unix::AsyncFd::new(fd)?;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let mut ready = match fd.readable().await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "handover socket: cannot wait for requests; takeover is off");
                    return;
                }
            };
            // The accepted socket is blocking (accept4 does not pass O_NONBLOCK on).
            let conn = match ready.try_io(|l| rustix::net::accept_with(l.get_ref(), SocketFlags::CLOEXEC).map_err(std::io::Error::from)) {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "handover socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
                Err(_would_block) => continue,
            };
            // One small datagram, sent right after connecting: blocking socket work, bounded.
            let read = tokio::task::spawn_blocking(move || {
                rustix::net::sockopt::set_socket_timeout(&conn, rustix::net::sockopt::Timeout::Recv, Some(std::time::Duration::from_secs(2)))?;
                let mut buf = [0u8; 64];
                let (n, _) = rustix::net::recv(&conn, &mut buf[..], RecvFlags::empty())?;
                Ok::<_, std::io::Error>((&buf[..n] == REQUEST).then_some(conn))
            });
            match read.await {
                Ok(Ok(Some(conn))) => {
                    if tx.send(Request { conn }).is_err() {
                        return;
                    }
                }
                _ => tracing::warn!("handover socket: a request that is not a takeover; ignored"),
            }
        }
    });
    Ok(rx)
}

fn send(conn: &OwnedFd, msg: &Message, fds: &[OwnedFd]) -> std::io::Result<()> {
    let body = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    let borrowed: Vec<_> = fds.iter().map(|f| f.as_fd()).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(PER_MESSAGE))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !borrowed.is_empty() && !control.push(SendAncillaryMessage::ScmRights(&borrowed)) {
        return Err(std::io::Error::other("too many sockets for one message"));
    }
    rustix::net::sendmsg(conn, &[std::io::IoSlice::new(&body)], &mut control, SendFlags::empty())?;
    Ok(())
}

/// Old process: sends the listening sockets (duplicates; ours close with the accept loops).
pub(super) fn send_listeners(conn: &OwnedFd, listeners: Vec<(SocketAddr, OwnedFd)>) -> std::io::Result<()> {
    let mut listeners = listeners;
    while !listeners.is_empty() {
        let rest = listeners.split_off(listeners.len().min(PER_MESSAGE));
        let (addrs, fds): (Vec<SocketAddr>, Vec<OwnedFd>) = listeners.into_iter().unzip();
        send(conn, &Message { listeners: addrs, released: false }, &fds)?;
        listeners = rest;
    }
    Ok(())
}

/// Old process: the store is closed; the new process may open it.
pub(super) fn send_released(conn: &OwnedFd) -> std::io::Result<()> {
    send(conn, &Message { listeners: Vec::new(), released: true }, &[])
}

/// New process: asks the weft running on `data_dir` for its listeners and waits until it has
/// closed the store. Blocking.
pub(super) fn take_over(data_dir: &Path) -> Result<HashMap<SocketAddr, std::net::TcpListener>, String> {
    let path = socket_path(data_dir);
    let fail = |what: &str, e: std::io::Error| format!("--takeover: {what} {}: {e}", path.display());
    let conn = seqpacket().map_err(|e| fail("cannot make a socket for", e))?;
    let addr = SocketAddrUnix::new(&path).map_err(|e| fail("bad socket path", e.into()))?;
    rustix::net::connect(&conn, &addr).map_err(|e| fail("no weft runs with this data dir: nothing answers at", e.into()))?;
    rustix::net::send(&conn, REQUEST, SendFlags::empty()).map_err(|e| fail("cannot ask", e.into()))?;
    let mut out = HashMap::new();
    loop {
        let mut body = vec![0u8; 64 * 1024];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(PER_MESSAGE))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(&conn, &mut [IoSliceMut::new(&mut body)], &mut control, RecvFlags::CMSG_CLOEXEC)
            .map_err(|e| fail("lost the old process at", e.into()))?;
        if got.bytes == 0 {
            return Err(format!("--takeover: the old process closed {} before releasing the store (see its log)", path.display()));
        }
        let mut fds = Vec::new();
        for msg in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = msg {
                fds.extend(rights);
            }
        }
        let msg: Message = serde_json::from_slice(&body[..got.bytes]).map_err(|e| format!("--takeover: a message from the old process does not parse: {e}"))?;
        if msg.listeners.len() != fds.len() {
            return Err(format!("--takeover: {} addresses came with {} sockets", msg.listeners.len(), fds.len()));
        }
        for (addr, fd) in msg.listeners.into_iter().zip(fds) {
            let listener = std::net::TcpListener::from(fd);
            listener.set_nonblocking(true).map_err(|e| fail("cannot use a socket from", e))?;
            out.insert(addr, listener);
        }
        if msg.released {
            return Ok(out);
        }
    }
}

/// Old process: the next request from a new process (never, without a handover socket).
pub(super) async fn next_request(requests: &mut Option<mpsc::UnboundedReceiver<Request>>) -> Option<Request> {
    match requests {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Old process: sends duplicates of the listening sockets. On failure nothing has changed, and
/// the node serves on.
pub(super) async fn offer(req: Request, fds: &crate::proxy::ListenerFds) -> Option<OwnedFd> {
    let listeners: Vec<(SocketAddr, OwnedFd)> = {
        let held = fds.lock().unwrap_or_else(|p| p.into_inner());
        held.iter().filter_map(|(addr, fd)| fd.try_clone().ok().map(|fd| (*addr, fd))).collect()
    };
    let n = listeners.len();
    let sent = tokio::task::spawn_blocking(move || send_listeners(&req.conn, listeners).map(|()| req.conn)).await;
    match sent {
        Ok(Ok(conn)) => {
            tracing::info!(listeners = n, "takeover: listening sockets sent to the new process; stopping here");
            Some(conn)
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "takeover: cannot send the listening sockets; this process serves on");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "takeover: the send failed; this process serves on");
            None
        }
    }
}

/// Old process: the store is closed; tell the new process.
pub(super) async fn release(conn: OwnedFd) {
    match tokio::task::spawn_blocking(move || send_released(&conn)).await {
        Ok(Ok(())) => tracing::info!("takeover: store released to the new process"),
        Ok(Err(e)) => tracing::error!(error = %e, "takeover: cannot tell the new process that the store is free"),
        Err(e) => tracing::error!(error = %e, "takeover: release failed"),
    }
}
