//! systemd's notification protocol, against a real `NOTIFY_SOCKET` listener (a unix datagram
//! socket bound here, as systemd binds one for a `Type=notify` unit): `READY=1` comes only once
//! the alias listeners answer, `WATCHDOG=1` at half of `WATCHDOG_USEC`, and `STOPPING=1` when the
//! drain begins, before the process exits. VIP net 98.
mod common;
use common::*;

use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Every notification received, with when it arrived.
fn listen(sock: UnixDatagram) -> mpsc::Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = sock.recv(&mut buf) {
            if tx.send((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned())).is_err() {
                return;
            }
        }
    });
    rx
}

fn next_with(rx: &mpsc::Receiver<(Instant, String)>, key: &str, timeout: Duration) -> (Instant, String) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((at, m)) if m.lines().any(|l| l == key) => return (at, m),
            Ok(_) => {}
            Err(_) => panic!("no {key} notification within {timeout:?}"),
        }
    }
}

#[test]
fn ready_after_the_listeners_answer_watchdog_pings_and_stopping_before_exit() {
    let tmp = TempDir::new("notify");
    let path = tmp.join("notify.sock");
    let rx = listen(UnixDatagram::bind(&path).unwrap());
    let port = free_port();
    let _b = http_backend(None, "b1", port);
    let opts = WeftOpts::new(98)
        .extra(&one_service_toml("web", "http", "web.notify", 8080, &format!("127.0.0.1:{port}")))
        .env("NOTIFY_SOCKET", &path.display().to_string())
        .env("WATCHDOG_USEC", "300000");
    let mut w = Weft::spawn_only(opts);

    let (_, ready) = next_with(&rx, "READY=1", Duration::from_secs(30));
    // The moment READY=1 is here, the route exists and its listener accepts: no waiting.
    let routes = w.routes();
    let route = routes.iter().find(|r| r["dns_name"] == "web.notify").unwrap_or_else(|| panic!("READY=1 before the route existed: {routes:?}"));
    let vip = route["vip"].as_str().unwrap().split(':').next().unwrap().to_string();
    std::net::TcpStream::connect_timeout(&format!("{vip}:8080").parse().unwrap(), Duration::from_millis(500)).unwrap_or_else(|e| panic!("READY=1 sent but the alias listener refused: {e}"));
    assert!(ready.contains("STATUS=") && ready.contains(&format!("MAINPID={}", w.pid())), "{ready}");

    // Watchdog: 300 ms asked, a ping every 150 ms.
    let t0 = Instant::now();
    for _ in 0..4 {
        next_with(&rx, "WATCHDOG=1", Duration::from_secs(2));
    }
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "4 watchdog pings took {took:?}");

    // SIGTERM: STOPPING=1 (the drain starts) arrives before the process is gone.
    let pid = w.pid();
    let stopper = std::thread::spawn(move || {
        let _ = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status();
    });
    let (_, stopping) = next_with(&rx, "STOPPING=1", Duration::from_secs(10));
    stopper.join().unwrap();
    assert!(stopping.contains("STATUS=draining"), "{stopping}");
    let exited = wait_until(Duration::from_secs(30), Duration::from_millis(20), || w.try_exit().is_some());
    assert!(exited, "weft did not exit after SIGTERM");
    assert!(w.log().contains("weft stopped"), "{}", w.log());
}
