//! `weft top`: a live view of every service's traffic (like `linkerd viz top/stat`), redrawn each
//! interval from the admin API's `/v1/stats`. Rates are worked out here from the counters of the
//! last few samples; latency percentiles are the node's (since it started). Plain ANSI: keys pick
//! the sort column, `q` (or Ctrl-C) quits and gives the terminal back as it was.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::Client;

/// Rates are taken over up to this many of the last samples (5 s at the default interval):
/// steadier than one interval, still live.
const WINDOW: usize = 6;

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum SortBy {
    Name,
    Rps,
    Success,
    P50,
    P99,
    Conns,
}

impl SortBy {
    fn key(c: u8) -> Option<SortBy> {
        Some(match c {
            b'n' => SortBy::Name,
            b'r' => SortBy::Rps,
            b's' => SortBy::Success,
            b'5' => SortBy::P50,
            b'9' => SortBy::P99,
            b'c' => SortBy::Conns,
            _ => return None,
        })
    }
}

/// One service's line.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub rps: f64,
    /// Share of responses in the window that were not 5xx; `None` without responses.
    pub success: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub conns: i64,
    pub retries: u64,
    pub ejected: usize,
}

/// Requests and non-5xx / all responses of one service at one moment.
type Counts = BTreeMap<String, (u64, u64, u64)>;

fn counts(stats: &Value) -> Counts {
    let Some(m) = stats.as_object() else { return Counts::new() };
    m.iter()
        .map(|(name, s)| {
            let resp = |k: &str| s["responses"][k].as_u64().unwrap_or(0);
            let all: u64 = ["1xx", "2xx", "3xx", "4xx", "5xx", "other"].iter().map(|k| resp(k)).sum();
            (name.clone(), (s["requests"].as_u64().unwrap_or(0), all - resp("5xx"), all))
        })
        .collect()
}

/// The rows for the newest sample, with rates over the oldest one kept.
pub fn rows(samples: &VecDeque<(Instant, Value)>) -> Vec<Row> {
    let Some((t1, now)) = samples.back() else { return Vec::new() };
    let (t0, then) = samples.front().expect("non-empty");
    let secs = t1.duration_since(*t0).as_secs_f64();
    let (c1, c0) = (counts(now), counts(then));
    let Some(m) = now.as_object() else { return Vec::new() };
    m.iter()
        .map(|(name, s)| {
            let (r1, ok1, all1) = c1[name];
            let (r0, ok0, all0) = c0.get(name).copied().unwrap_or((r1, ok1, all1));
            let answered = all1.saturating_sub(all0);
            Row {
                name: name.clone(),
                rps: if secs > 0.0 { r1.saturating_sub(r0) as f64 / secs } else { 0.0 },
                success: (answered > 0).then(|| ok1.saturating_sub(ok0) as f64 / answered as f64),
                p50_ms: s["latency_p50_us"].as_u64().map(|u| u as f64 / 1000.0),
                p99_ms: s["latency_p99_us"].as_u64().map(|u| u as f64 / 1000.0),
                conns: s["active_connections"].as_i64().unwrap_or(0),
                retries: s["retries"].as_u64().unwrap_or(0),
                ejected: s["endpoints"].as_array().map_or(0, |e| e.iter().filter(|e| e["ejected"] == true).count()),
            }
        })
        .collect()
}

pub fn sort(rows: &mut [Row], by: SortBy) {
    let f = |o: Option<f64>| o.unwrap_or(-1.0);
    rows.sort_by(|a, b| match by {
        SortBy::Name => a.name.cmp(&b.name),
        SortBy::Rps => b.rps.total_cmp(&a.rps),
        SortBy::Success => f(a.success).total_cmp(&f(b.success)),
        SortBy::P50 => f(b.p50_ms).total_cmp(&f(a.p50_ms)),
        SortBy::P99 => f(b.p99_ms).total_cmp(&f(a.p99_ms)),
        SortBy::Conns => b.conns.cmp(&a.conns),
    });
}

pub fn render(rows: &[Row], by: SortBy, admin: &str) -> String {
    let opt = |o: Option<f64>, d: usize| o.map_or("-".to_string(), |v| format!("{v:.d$}"));
    let mut s = String::from("\x1b[H\x1b[2J");
    s.push_str(&format!("weft top — {admin} — sorted by {by:?} (keys: n r s 5 9 c; q quits)\r\n\r\n"));
    s.push_str(&format!("{:<32} {:>9} {:>8} {:>9} {:>9} {:>6} {:>8} {:>7}\r\n", "SERVICE", "REQ/S", "SUCCESS", "P50_MS", "P99_MS", "CONNS", "RETRIES", "EJECTED"));
    for r in rows {
        let success = r.success.map_or("-".to_string(), |v| format!("{:.1}%", v * 100.0));
        s.push_str(&format!(
            "{:<32} {:>9.1} {:>8} {:>9} {:>9} {:>6} {:>8} {:>7}\r\n",
            r.name,
            r.rps,
            success,
            opt(r.p50_ms, 2),
            opt(r.p99_ms, 2),
            r.conns,
            r.retries,
            r.ejected
        ));
    }
    if rows.is_empty() {
        s.push_str("(no services with traffic figures yet)\r\n");
    }
    s
}

/// The terminal in raw mode while it lives (keys arrive one by one, unechoed; Ctrl-C is a key).
struct RawMode(Option<rustix::termios::Termios>);

impl RawMode {
    fn enter() -> RawMode {
        use rustix::termios::{LocalModes, OptionalActions, SpecialCodeIndex, isatty, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        if !isatty(&stdin) {
            return RawMode(None);
        }
        let Ok(saved) = tcgetattr(&stdin) else { return RawMode(None) };
        let mut t = saved.clone();
        t.local_modes.remove(LocalModes::ICANON | LocalModes::ECHO | LocalModes::ISIG);
        t.special_codes[SpecialCodeIndex::VMIN] = 1;
        t.special_codes[SpecialCodeIndex::VTIME] = 0;
        if tcsetattr(&stdin, OptionalActions::Now, &t).is_err() {
            return RawMode(None);
        }
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = rustix::termios::tcsetattr(std::io::stdin(), rustix::termios::OptionalActions::Now, t);
        }
    }
}

/// Runs until `q`, Ctrl-C, or `iterations` redraws (0: no limit).
pub fn run(client: &Client, interval: Duration, mut by: SortBy, iterations: u64) -> Result<(), String> {
    let raw = RawMode::enter();
    let (tx, keys) = mpsc::channel();
    if raw.0.is_some() {
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            while std::io::stdin().read(&mut b).is_ok_and(|n| n == 1) {
                if tx.send(b[0]).is_err() {
                    break;
                }
            }
        });
    }
    let mut samples: VecDeque<(Instant, Value)> = VecDeque::new();
    let mut out = std::io::stdout();
    let admin = client.addr.to_string();
    let mut drawn = 0;
    let result = loop {
        match client.request("GET", "/v1/stats", None) {
            Ok(v) => {
                samples.push_back((Instant::now(), v));
                if samples.len() > WINDOW {
                    samples.pop_front();
                }
            }
            Err(e) => break Err(e.to_string()),
        }
        let mut r = rows(&samples);
        sort(&mut r, by);
        let _ = out.write_all(render(&r, by, &admin).as_bytes()).and_then(|()| out.flush());
        drawn += 1;
        if iterations > 0 && drawn >= iterations {
            break Ok(());
        }
        let until = Instant::now() + interval;
        let mut quit = false;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match keys.recv_timeout(left) {
                Ok(b'q' | b'Q' | 3) => {
                    quit = true;
                    break;
                }
                Ok(c) => {
                    if let Some(s) = SortBy::key(c) {
                        by = s;
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => break,
                // No terminal to read keys from: just wait out the interval.
                Err(mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(left),
            }
        }
        if quit {
            break Ok(());
        }
    };
    drop(raw);
    let _ = out.write_all(b"\r\n");
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_over_the_window() {
        let t0 = Instant::now();
        let s = |req: u64, ok: u64, bad: u64| json!({"default/web": {"requests": req, "responses": {"2xx": ok, "5xx": bad}, "active_connections": 3, "retries": 1, "latency_p50_us": 1500, "latency_p99_us": 9000, "endpoints": [{"ejected": true}, {"ejected": false}]}});
        let samples = VecDeque::from([(t0, s(100, 100, 0)), (t0 + Duration::from_secs(2), s(300, 290, 10))]);
        let r = rows(&samples);
        assert_eq!(r.len(), 1);
        assert!((r[0].rps - 100.0).abs() < 1e-9);
        assert!((r[0].success.unwrap() - 0.95).abs() < 1e-9);
        assert_eq!((r[0].p50_ms, r[0].conns, r[0].ejected), (Some(1.5), 3, 1));
        assert!(render(&r, SortBy::Rps, "x").contains("default/web"));
    }
}
