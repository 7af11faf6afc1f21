//! `weft top` in a real terminal (tmux): under a steady load of known rate it shows the service's
//! req/s within 10 %, changes its sort on a key, and exits cleanly on `q`.
mod common;
use common::load::{Load, Spec};
use common::*;
use std::process::Command;
use std::time::Duration;

struct Tmux(String);

impl Tmux {
    fn start(name: &str, cmd: &str) -> Tmux {
        let st = Command::new("tmux").args(["new-session", "-d", "-s", name, "-x", "160", "-y", "40", cmd]).status().expect("tmux");
        assert!(st.success(), "tmux new-session");
        Tmux(name.to_string())
    }
    fn pane(&self) -> String {
        let out = Command::new("tmux").args(["capture-pane", "-p", "-t", &self.0]).output().expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn keys(&self, k: &str) {
        assert!(Command::new("tmux").args(["send-keys", "-t", &self.0, k]).status().unwrap().success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.0]).status();
    }
}

/// The REQ/S figure of `service` in the pane, if its line is there.
fn rps_of(pane: &str, service: &str) -> Option<f64> {
    pane.lines().find(|l| l.starts_with(service))?.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn top_shows_the_load_sent_and_quits_on_q() {
    if !require_program("top_shows_the_load_sent_and_quits_on_q", "tmux") {
        return;
    }
    let port = free_port();
    let _b = http_backend(None, "b1", port);
    let toml = format!(
        "[[service]]\nnamespace = \"default\"\nname = \"web\"\nprotocol = \"http\"\naliases = [{{ dns_name = \"web.test\", port = 8080 }}]\n\n[[endpoint]]\nnamespace = \"default\"\nservice = \"web\"\nid = \"b1\"\naddress = \"127.0.0.1:{port}\"\n"
    );
    let w = Weft::start(WeftOpts::new(165).extra(&toml));
    let vip = w.vip("web.test", 8080);
    wait_for("web.test serving", Duration::from_secs(10), || http(&vip, 8080, "GET", "/", None).ok().filter(|r| r.status == 200));

    let rate = 200.0;
    let load = Load::start(Spec::new(&[&format!("{vip}:8080")]).workers(10).rate(rate).duration(Duration::from_secs(30)).timeout(Duration::from_secs(5)));
    let session = format!("weft-top-{}", std::process::id());
    let tmux = Tmux::start(&session, &format!("{WEFT} top --admin {} ; echo TOP-EXITED; sleep 60", w.admin));
    // The rate is taken over the last ~5 s: wait until the window is full of load, then read.
    load.sleep_until(Duration::from_secs(9));
    let seen = wait_for("a req/s figure for default/web within 10 % of the load", Duration::from_secs(10), || {
        let pane = tmux.pane();
        rps_of(&pane, "default/web").filter(|r| (r - rate).abs() <= rate * 0.10).map(|r| (r, pane))
    });
    // The load really was that rate (the generator may fall behind on a loaded machine).
    let sent = load.total() as f64 / load.elapsed().as_secs_f64();
    eprintln!("weft top showed {:.1} req/s; the load ran at {sent:.1} req/s\n{}", seen.0, seen.1);
    assert!((sent - rate).abs() <= rate * 0.10, "the load generator itself ran at {sent:.1} req/s");
    assert!(seen.1.contains("SUCCESS") && seen.1.contains("100.0%"), "{}", seen.1);

    tmux.keys("n");
    wait_for("sorted by Name", Duration::from_secs(5), || tmux.pane().contains("sorted by Name").then_some(()));
    tmux.keys("q");
    wait_for("weft top exits on q", Duration::from_secs(5), || tmux.pane().contains("TOP-EXITED").then_some(()));
    load.stop();
    let report = load.join();
    assert_eq!(report.failed, 0, "no request failed");
}
