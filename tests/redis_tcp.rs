//! A real redis-server behind a `tcp` alias; redis-cli through the alias must see exactly what it
//! sees talking to redis directly: SET/GET, a 1 MiB binary value, PUBLISH/SUBSCRIBE.
mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn redis_cli(host: &str, port: u16, args: &[&str], stdin: Option<&[u8]>) -> CmdOut {
    let mut c = Command::new("redis-cli");
    c.args(["-h", host, "-p", &port.to_string()]).args(args);
    let out = run_cmd(&mut c, stdin, Duration::from_secs(30));
    out.expect_ok();
    out
}

/// A subscriber in the background; lines of its output arrive on a channel.
struct Subscriber {
    bg: Bg,
    rx: mpsc::Receiver<String>,
}

impl Subscriber {
    fn start(name: &str, host: &str, port: u16, channel: &str) -> Subscriber {
        let mut c = Command::new("redis-cli");
        c.args(["-h", host, "-p", &port.to_string(), "SUBSCRIBE", channel])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("spawn redis-cli SUBSCRIBE");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        Subscriber { bg: Bg { child, name: name.to_string(), log: None }, rx }
    }

    /// Collect lines until `want` consecutive lines have been seen (or panic after 10 s).
    fn expect_lines(&mut self, want: &[&str]) {
        let mut seen: Vec<String> = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if seen.windows(want.len()).any(|w| w.iter().zip(want).all(|(a, b)| a == b)) {
                return;
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => seen.push(l),
                Err(_) => {
                    let alive = self.bg.alive();
                    panic!("subscriber {} did not print {want:?}; got {seen:?} (alive: {alive})", self.bg.name)
                }
            }
        }
    }
}

#[test]
fn redis_through_tcp_alias_matches_direct_access() {
    if !require_program("redis_tcp", "redis-server") || !require_program("redis_tcp", "redis-cli") {
        return;
    }
    let tmp = TempDir::new("redis");
    let rport = free_port();
    let mut rc = Command::new("redis-server");
    rc.args([
        "--port",
        &rport.to_string(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        "--dir",
        tmp.path().to_str().unwrap(),
    ]);
    let _redis = Bg::spawn("redis-server", &mut rc, Some(tmp.join("redis.log")));
    wait_tcp(&format!("127.0.0.1:{rport}"), Duration::from_secs(10));

    let (_weft, vip) = Weft::start_one_service(20, "redis", "tcp", "redis.test", 6379, &format!("127.0.0.1:{rport}"));

    let direct = ("127.0.0.1", rport);
    let alias = (vip.as_str(), 6379u16);

    // PING and SET/GET both ways
    assert_eq!(redis_cli(alias.0, alias.1, &["PING"], None).stdout().trim(), "PONG");
    assert_eq!(redis_cli(alias.0, alias.1, &["SET", "k:alias", "via-weft"], None).stdout().trim(), "OK");
    assert_eq!(redis_cli(direct.0, direct.1, &["GET", "k:alias"], None).stdout().trim(), "via-weft");
    assert_eq!(redis_cli(direct.0, direct.1, &["SET", "k:direct", "direct-value"], None).stdout().trim(), "OK");
    assert_eq!(redis_cli(alias.0, alias.1, &["GET", "k:direct"], None).stdout().trim(), "direct-value");
    let a = redis_cli(alias.0, alias.1, &["INCRBY", "counter", "41"], None);
    let d = redis_cli(direct.0, direct.1, &["INCR", "counter"], None);
    assert_eq!((a.stdout().trim(), d.stdout().trim()), ("41", "42"));

    // 1 MiB of binary data (every byte value), set through the alias from stdin
    let mut value = Vec::with_capacity(1 << 20);
    let mut x: u32 = 0x1234_5678;
    while value.len() < (1 << 20) {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        value.push((x >> 24) as u8);
    }
    value[(1 << 20) - 1] = b'Z'; // no trailing newline for redis-cli -x to trim
    assert_eq!(redis_cli(alias.0, alias.1, &["-x", "SET", "big"], Some(&value)).stdout().trim(), "OK");
    let strlen = redis_cli(direct.0, direct.1, &["STRLEN", "big"], None);
    assert_eq!(strlen.stdout().trim(), (1 << 20).to_string(), "redis must hold exactly 1 MiB");
    let via_alias = redis_cli(alias.0, alias.1, &["GET", "big"], None).stdout;
    let via_direct = redis_cli(direct.0, direct.1, &["GET", "big"], None).stdout;
    assert_eq!(via_direct.len(), via_alias.len(), "GET big: length via alias differs from direct");
    assert!(via_alias == via_direct, "GET big: bytes via alias differ from direct");
    assert_eq!(&via_direct[..1 << 20], &value[..], "stored value differs from what was sent");

    // PUBLISH/SUBSCRIBE: one subscriber through the alias, one direct; publisher through the alias
    let mut sub_alias = Subscriber::start("sub via alias", alias.0, alias.1, "news");
    let mut sub_direct = Subscriber::start("sub direct", direct.0, direct.1, "news");
    sub_alias.expect_lines(&["subscribe", "news", "1"]);
    sub_direct.expect_lines(&["subscribe", "news"]);
    wait_for("both subscribers registered", Duration::from_secs(10), || {
        let n = redis_cli(direct.0, direct.1, &["PUBSUB", "NUMSUB", "news"], None).stdout();
        (n.lines().nth(1).map(|l| l.trim()) == Some("2")).then_some(())
    });
    let pubd = redis_cli(alias.0, alias.1, &["PUBLISH", "news", "hello-through-weft"], None);
    assert_eq!(pubd.stdout().trim(), "2", "PUBLISH via alias must reach both subscribers");
    sub_alias.expect_lines(&["message", "news", "hello-through-weft"]);
    sub_direct.expect_lines(&["message", "news", "hello-through-weft"]);
    let pubd = redis_cli(direct.0, direct.1, &["PUBLISH", "news", "second"], None);
    assert_eq!(pubd.stdout().trim(), "2");
    sub_alias.expect_lines(&["message", "news", "second"]);
    sub_direct.expect_lines(&["message", "news", "second"]);
}
