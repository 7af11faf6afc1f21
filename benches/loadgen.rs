//! The load client of benches/failover.sh: the shared std-only HTTP/1.1 load client of the tests
//! (tests/common/load.rs) behind a command line, so that "through weft" and "static address list"
//! are measured by the same code. Std only; the script builds it without Cargo:
//!
//!     rustc -O --edition 2024 benches/loadgen.rs -o /tmp/loadgen
//!     /tmp/loadgen --target 127.255.0.1:8080 --workers 100 --duration 25 --json out.json
//!     /tmp/loadgen --target 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003 ...   # round robin
//!
//! Each of `--workers` threads keeps one keep-alive connection per target and sends requests back
//! to back (closed loop), round-robin over the targets; a failure is not retried (it is what the
//! client sees), the connection is dropped and the worker pauses `--fail-pause-ms` (a real client
//! backs off too; it keeps a refused port from turning into a busy loop). The JSON has the start
//! time (Unix epoch, s) so the script can place its events (kill, restart) on the timeline.
#[path = "../tests/common/load.rs"]
mod load;

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn usage() -> ! {
    eprintln!(
        "usage: loadgen --target HOST:PORT[,HOST:PORT...] [--workers 100] [--duration 20] [--timeout-ms 30000]\n\
         \x20              [--connect-timeout-ms 5000] [--fail-pause-ms 10] [--path /] [--method GET] [--rate R]\n\
         \x20              [--tally HEADER] [--json FILE] [--label NAME] [--progress]"
    );
    std::process::exit(2)
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

fn main() {
    let mut targets: Vec<String> = Vec::new();
    let mut spec_workers = 100usize;
    let mut duration = 20.0f64;
    let mut timeout_ms = 30_000u64;
    let mut connect_timeout_ms = 5_000u64;
    let mut fail_pause_ms = 10u64;
    let mut path = "/".to_string();
    let mut method = "GET".to_string();
    let mut rate: Option<f64> = None;
    let mut tally: Option<String> = None;
    let mut json: Option<String> = None;
    let mut label = "load".to_string();
    let mut progress = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--target" => targets.extend(val().split(',').filter(|s| !s.is_empty()).map(str::to_string)),
            "--workers" => spec_workers = val().parse().unwrap_or_else(|_| usage()),
            "--duration" => duration = val().parse().unwrap_or_else(|_| usage()),
            "--timeout-ms" => timeout_ms = val().parse().unwrap_or_else(|_| usage()),
            "--connect-timeout-ms" => connect_timeout_ms = val().parse().unwrap_or_else(|_| usage()),
            "--fail-pause-ms" => fail_pause_ms = val().parse().unwrap_or_else(|_| usage()),
            "--path" => path = val(),
            "--method" => method = val(),
            "--rate" => rate = Some(val().parse().unwrap_or_else(|_| usage())),
            "--tally" => tally = Some(val()),
            "--json" => json = Some(val()),
            "--label" => label = val(),
            "--progress" => progress = true,
            _ => usage(),
        }
    }
    if targets.is_empty() {
        usage();
    }
    let refs: Vec<&str> = targets.iter().map(String::as_str).collect();
    let mut spec = load::Spec::new(&refs)
        .workers(spec_workers)
        .duration(Duration::from_secs_f64(duration))
        .timeout(Duration::from_millis(timeout_ms))
        .path(&path)
        .method(&method);
    spec.connect_timeout = Duration::from_millis(connect_timeout_ms);
    spec.fail_pause = Duration::from_millis(fail_pause_ms);
    if let Some(r) = rate {
        spec = spec.rate(r);
    }
    if let Some(h) = &tally {
        spec = spec.tally(h);
    }

    let start_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    let report = load::run_with(spec, |l| {
        if progress {
            let mut last = (0, 0);
            while l.elapsed() < Duration::from_secs_f64(duration) {
                std::thread::sleep(Duration::from_secs(1));
                let (t, f) = (l.total(), l.failed());
                eprintln!("  {label} {:>4.0}s: {} req/s, {} failed", l.elapsed().as_secs_f64(), t - last.0, f - last.1);
                last = (t, f);
            }
        }
    });
    report.print(&label);

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut o = String::new();
    let _ = write!(
        o,
        "{{\"label\":{},\"targets\":[{}],\"workers\":{},\"start_epoch\":{:.6},\"elapsed_s\":{:.3},\"total\":{},\"failed\":{},\
         \"rps\":{:.1},\"p50_ms\":{:.3},\"p90_ms\":{:.3},\"p99_ms\":{:.3},\"p999_ms\":{:.3},\"max_ms\":{:.3},\"connects\":{},",
        esc(&label),
        targets.iter().map(|t| esc(t)).collect::<Vec<_>>().join(","),
        spec_workers,
        start_epoch,
        report.elapsed.as_secs_f64(),
        report.total,
        report.failed,
        report.rps(),
        ms(report.p50()),
        ms(report.percentile(90.0)),
        ms(report.p99()),
        ms(report.percentile(99.9)),
        ms(report.max()),
        report.connects,
    );
    let errors: Vec<String> = report.errors.iter().map(|(k, v)| format!("{}:{v}", esc(k))).collect();
    let tallies: Vec<String> = report.tally.iter().map(|(k, v)| format!("{}:{v}", esc(k))).collect();
    let timeline: Vec<String> = report.timeline.iter().map(|(n, f)| format!("[{n},{f}]")).collect();
    let first: Vec<String> = report.first_failures.iter().map(|(t, e)| format!("[{t:.4},{}]", esc(e))).collect();
    let _ = write!(
        o,
        "\"errors\":{{{}}},\"tally\":{{{}}},\"timeline\":[{}],\"first_failures\":[{}]}}",
        errors.join(","),
        tallies.join(","),
        timeline.join(","),
        first.join(",")
    );
    match json {
        Some(f) => std::fs::write(&f, o + "\n").unwrap_or_else(|e| panic!("write {f}: {e}")),
        None => println!("{o}"),
    }
}
