//! What the soak reads back from logs: arrivals at the backends (nginx's and the echo's logs)
//! and the endpoint weft chose for each TCP exchange (weft's access log).

use super::*;

/// node, arrival (µs) of each request id at the backends.
pub(super) type Arrivals = HashMap<String, Vec<(usize, u64)>>;

pub(super) fn read_arrivals(dirs: &[(usize, PathBuf)]) -> Arrivals {
    let mut a: Arrivals = HashMap::new();
    for (node, dir) in dirs {
        // nginx: $msec $request_time $request_method $http_x_chaos_id $status
        for line in fs::read_to_string(dir.join("access.log")).unwrap_or_default().lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 5 || f[3] == "-" {
                continue;
            }
            let (Ok(msec), Ok(rt)) = (f[0].parse::<f64>(), f[1].parse::<f64>()) else { continue };
            a.entry(f[3].to_string()).or_default().push((*node, ((msec - rt) * 1e6) as u64));
        }
        // echo: UNIX_SECONDS ID
        for line in fs::read_to_string(dir.join("echo.log")).unwrap_or_default().lines() {
            let mut it = line.split_whitespace();
            let (Some(t), Some(id)) = (it.next().and_then(|t| t.parse::<f64>().ok()), it.next()) else { continue };
            a.entry(id.to_string()).or_default().push((*node, (t * 1e6) as u64));
        }
    }
    a
}

/// Per (client node, client port): when weft's access log says a TCP connection began (µs),
/// and the node of the endpoint it chose.
pub(super) type TcpRoutes = HashMap<(usize, u16), Vec<(u64, usize)>>;

pub(super) fn read_tcp_routes(dirs: &[(usize, PathBuf)]) -> TcpRoutes {
    let mut routes: TcpRoutes = HashMap::new();
    for (node, dir) in dirs {
        for line in fs::read_to_string(dir.join("weft-access.log")).unwrap_or_default().lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
            let port = v["downstream_address"].as_str().and_then(|a| a.parse::<SocketAddr>().ok()).map(|a| a.port());
            let upstream = v["upstream_node"].as_str().and_then(|n| NAMES.iter().position(|x| *x == n));
            let start = v["start_time"].as_str().and_then(unix_us_of);
            if let (Some(port), Some(up), Some(start)) = (port, upstream, start) {
                routes.entry((*node, port)).or_default().push((start, up));
            }
        }
    }
    routes
}

/// Unix µs of an RFC 3339 UTC time as weft logs it (`2026-12-05T04:55:00.123456Z`).
fn unix_us_of(t: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| t.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss, us) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
    // days from the civil date (proleptic Gregorian)
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    u64::try_from(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000) + us).ok()
}

/// The node of the endpoint weft chose for TCP exchange `r`: its access-log record from the same
/// client port that began nearest `r`'s start (ports are reused over a soak).
pub(super) fn tcp_routed(routes: &TcpRoutes, r: &Rec) -> Option<usize> {
    let near = |t: u64| t + 1_000_000 >= r.start && t <= r.end + 1_000_000;
    routes.get(&(r.node, r.client_port))?.iter().filter(|(t, _)| near(*t)).min_by_key(|(t, _)| t.abs_diff(r.start)).map(|(_, n)| *n)
}
