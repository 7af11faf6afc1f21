//! The soak's figures: backend arrivals, episodes, the report and the goals missed.

use super::*;

// ---------------------------------------------------------------------------------------------
// analysis
// ---------------------------------------------------------------------------------------------

pub(super) struct Windows {
    /// per node: (fault start, heal, heal + grace)
    pub(super) w: Vec<Vec<(u64, u64, u64)>>,
}

impl Windows {
    fn new(faults: &[Fault], n: usize, grace: u64, end: u64) -> Windows {
        let mut w = vec![Vec::new(); n];
        for f in faults {
            let heal = if f.heal == 0 { end } else { f.heal };
            w[f.node].push((f.start, heal, heal + grace));
        }
        Windows { w }
    }
    /// Faulted, or within the grace after a heal, at `t`.
    fn disturbed(&self, i: usize, t: u64) -> bool {
        self.w[i].iter().any(|&(a, _, g)| a <= t && t <= g)
    }
    /// Faulted (no grace) at `t`.
    fn faulted(&self, i: usize, t: u64) -> bool {
        self.w[i].iter().any(|&(a, h, _)| a <= t && t < h)
    }
    /// Disturbed at any time within [a, b].
    fn disturbed_during(&self, i: usize, a: u64, b: u64) -> bool {
        self.w[i].iter().any(|&(s, _, g)| s <= b && g >= a)
    }
}

#[derive(Default)]
pub(super) struct ClassFig {
    pub(super) total: u64,
    pub(super) ok: u64,
    pub(super) failed: u64,
    pub(super) failed_exempt: u64,
    pub(super) tcp_in_flight: u64,
    pub(super) late: u64,
    /// an attempt that ran after the request had been answered (a retried attempt, late)
    pub(super) late_answered: u64,
    /// bytes of a TCP exchange in flight at its node's fault, delivered to that node's backend
    /// after the client's connection had ended (the node was frozen, then resumed)
    pub(super) tcp_resumed: u64,
    /// counted failures that reached no backend at all
    pub(super) failed_unreached: u64,
    pub(super) twice: u64,
    pub(super) lat_us: Vec<u64>,
}

pub(super) fn pct(v: &[u64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

pub(super) struct Episode {
    pub(super) observer: usize,
    pub(super) subject: usize,
    pub(super) states: BTreeSet<String>,
    pub(super) first: u64,
    pub(super) last: u64,
    pub(super) samples: u64,
}

/// Member state of `subject` in `s` (as seen by `s.node`): alive / suspect / down / left / missing.
pub(super) fn seen_state(s: &Sample, subject: &str) -> Option<String> {
    let m = s.members.as_ref()?;
    let entries: Vec<&Member> = m.iter().filter(|e| e.name == subject).collect();
    if entries.iter().any(|e| e.state == "alive") {
        return Some("alive".into());
    }
    Some(entries.iter().max_by_key(|e| e.generation).map(|e| e.state.clone()).unwrap_or_else(|| "missing".into()))
}

pub(super) fn episodes(events: &[(usize, usize, String, u64)]) -> Vec<Episode> {
    let mut out: Vec<Episode> = Vec::new();
    let mut open: HashMap<(usize, usize), usize> = HashMap::new();
    for (o, m, st, t) in events {
        if let Some(&k) = open.get(&(*o, *m))
            && t.saturating_sub(out[k].last) <= 1_500_000
        {
            out[k].last = *t;
            out[k].samples += 1;
            out[k].states.insert(st.clone());
            continue;
        }
        out.push(Episode { observer: *o, subject: *m, states: BTreeSet::from([st.clone()]), first: *t, last: *t, samples: 1 });
        open.insert((*o, *m), out.len() - 1);
    }
    out
}

/// (ids expected present at the end, ids expected absent, ids of uncertain outcome)
pub(super) fn final_regs(ops: &[RegOp]) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
    let mut by_id: BTreeMap<&str, Vec<&RegOp>> = BTreeMap::new();
    for op in ops {
        by_id.entry(&op.id).or_default().push(op);
    }
    let (mut present, mut absent, mut unsure) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (id, ops) in by_id {
        let created = ops.iter().find(|o| o.create).map(|o| o.outcome);
        let deleted = ops.iter().find(|o| !o.create).map(|o| o.outcome);
        match (created, deleted) {
            (Some(Outcome::Acked), None | Some(Outcome::Refused)) => present.insert(id.to_string()),
            (Some(Outcome::Acked), Some(Outcome::Acked)) => absent.insert(id.to_string()),
            (Some(Outcome::Refused), _) => absent.insert(id.to_string()),
            _ => unsure.insert(id.to_string()),
        };
    }
    (present, absent, unsure)
}

/// Computes the figures, prints the table, writes the details; returns the goals missed.
pub(super) fn analyse(sh: &Shared, arrivals: &Arrivals, tcp_routes: &TcpRoutes, t_last_heal: u64, final_converged: Option<u64>, t_end: u64, out: &Path) -> Vec<String> {
    let s = &sh.s;
    let faults = sh.faults.lock().unwrap().clone();
    let samples = sh.samples.lock().unwrap().clone();
    let mut recs = sh.recs.lock().unwrap().clone();
    recs.sort_by_key(|r| r.start);
    let regs = sh.regs.lock().unwrap().clone();
    let win = Windows::new(&faults, NAMES.len(), s.heal_grace_us, t_end);
    let mut details = String::new();
    let t0 = T0.load(SeqCst);

    let _ = writeln!(details, "seed {}; t=0 at unix {:.3}\n\n== faults", s.seed, t0 as f64 / 1e6);
    for f in &faults {
        let _ = writeln!(
            details,
            "{:>7.1}s {:<3} {:<10} healed {:>7.1}s{}",
            rel(f.start),
            NAMES[f.node],
            f.kind.name(),
            rel(f.heal),
            if f.kind == Kind::Kill { format!(" (ready {:.1}s)", rel(f.ready)) } else { String::new() }
        );
    }

    // ---- requests
    let mut figs: BTreeMap<(Proto, bool), ClassFig> = BTreeMap::new();
    let mut late: Vec<String> = Vec::new();
    let mut late_answered: Vec<String> = Vec::new();
    let mut twice: Vec<String> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    let mut fail_kinds: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok_unlogged = 0u64;
    for r in &recs {
        let f = figs.entry((r.proto, r.post)).or_default();
        f.total += 1;
        let arr = arrivals.get(&r.id).cloned().unwrap_or_default();
        if arr.len() > 1 {
            f.twice += 1;
            twice.push(format!(
                "{} {} {:.3}s..{:.3}s ok={} arrivals {:?}",
                r.id,
                NAMES[r.node],
                rel(r.start),
                rel(r.end),
                r.ok,
                arr.iter().map(|(n, t)| format!("{}@{:.3}s", NAMES[*n], rel(*t))).collect::<Vec<_>>()
            ));
        }
        if r.ok {
            f.ok += 1;
            f.lat_us.push(r.end - r.start);
            if arr.is_empty() {
                ok_unlogged += 1;
            }
            for (n, t) in &arr {
                if *t > r.end + LATE_TOLERANCE_US {
                    f.late_answered += 1;
                    late_answered.push(format!(
                        "{} (client on {}) answered by {} at {:.3}s, an attempt ran on {}'s backend at {:.3}s, {:.3} s after",
                        r.id,
                        NAMES[r.node],
                        r.backend.as_deref().unwrap_or("?"),
                        rel(r.end),
                        NAMES[*n],
                        rel(*t),
                        (*t - r.end) as f64 / 1e6
                    ));
                }
            }
            continue;
        }
        // A TCP exchange routed to node F before F's fault began, which F's fault then broke: a
        // byte stream cannot be replayed. Its bytes may reach F's backend before the fault, or
        // after it (F frozen with them in its socket buffers delivers them when it resumes); the
        // second is shown as its own figure, not as a request run after its caller gave up.
        let broken_by = |n: usize| faults.iter().find(|fl| fl.node == n && r.start < fl.start && fl.start <= r.end);
        // Bytes that reached no backend: the node weft's access log says the exchange went to.
        let routed = (r.proto == Proto::Tcp && arr.is_empty()).then(|| tcp_routed(tcp_routes, r)).flatten();
        let in_flight_at_fault = r.proto == Proto::Tcp && (arr.iter().any(|(n, _)| broken_by(*n).is_some()) || routed.is_some_and(|n| broken_by(n).is_some()));
        for (n, t) in &arr {
            if *t > r.end + LATE_TOLERANCE_US && r.proto == Proto::Tcp && broken_by(*n).is_some() {
                f.tcp_resumed += 1;
            } else if *t > r.end + LATE_TOLERANCE_US {
                f.late += 1;
                late.push(format!(
                    "{} (client on {}) failed at {:.3}s [{}], ran on {}'s backend at {:.3}s, {:.3} s after",
                    r.id,
                    NAMES[r.node],
                    rel(r.end),
                    r.err,
                    NAMES[*n],
                    rel(*t),
                    (*t - r.end) as f64 / 1e6
                ));
            }
        }
        let exempt = win.disturbed_during(r.node, r.start, r.end);
        let class = if exempt {
            f.failed_exempt += 1;
            "own node disturbed"
        } else if in_flight_at_fault {
            f.tcp_in_flight += 1;
            "tcp in flight at a fault"
        } else {
            f.failed += 1;
            if arr.is_empty() {
                f.failed_unreached += 1;
            }
            *fail_kinds.entry(format!("{} {}: {}", r.proto.name(), if r.post { "POST" } else { "GET" }, r.err)).or_default() += 1;
            "COUNTED"
        };
        failures.push(format!(
            "{:>8.3}s..{:>8.3}s {:<28} {:<26} {} (reached: {:?}{})",
            rel(r.start),
            rel(r.end),
            r.id,
            class,
            r.err,
            arr.iter().map(|(n, t)| format!("{}@{:.3}s", NAMES[*n], rel(*t))).collect::<Vec<_>>(),
            routed.map(|n| format!("; routed to {}", NAMES[n])).unwrap_or_default()
        ));
    }
    for f in figs.values_mut() {
        f.lat_us.sort_unstable();
    }
    let sum = |p: &dyn Fn(&(Proto, bool)) -> bool, g: &dyn Fn(&ClassFig) -> u64| figs.iter().filter(|(k, _)| p(k)).map(|(_, f)| g(f)).sum::<u64>();
    let idem = |k: &(Proto, bool)| !k.1;
    let nonidem = |k: &(Proto, bool)| k.1;
    let failed_idem = sum(&idem, &|f| f.failed);
    let failed_nonidem = sum(&nonidem, &|f| f.failed);
    let twice_nonidem = sum(&nonidem, &|f| f.twice);
    let twice_idem = sum(&idem, &|f| f.twice);
    let late_all = sum(&|_| true, &|f| f.late);
    let tcp_resumed = sum(&|_| true, &|f| f.tcp_resumed);
    let late_answered_all = sum(&|_| true, &|f| f.late_answered);
    let unreached_nonidem = sum(&nonidem, &|f| f.failed_unreached);
    let known: std::collections::HashSet<&str> = recs.iter().map(|r| r.id.as_str()).collect();
    let orphans = arrivals.keys().filter(|id| !known.contains(id.as_str())).count();

    // ---- registrations
    let (expect_present, expect_absent, unsure) = final_regs(&regs);
    let mut lost: Vec<String> = Vec::new();
    let mut zombies: Vec<String> = Vec::new();
    for i in 0..NAMES.len() {
        let Some(last) = samples.iter().rev().find(|x| x.node == i && x.endpoints.is_some()) else {
            lost.push(format!("{}: no endpoint list at all", NAMES[i]));
            continue;
        };
        let eps = last.endpoints.as_ref().unwrap();
        for id in &expect_present {
            if !eps.contains(&format!("reg/{id}")) {
                lost.push(format!("{} lacks {id} (at {:.1}s)", NAMES[i], rel(last.at)));
            }
        }
        for id in &expect_absent {
            if eps.contains(&format!("reg/{id}")) {
                zombies.push(format!("{} still lists deleted {id}", NAMES[i]));
            }
        }
        for e in STATIC_EPS {
            if !eps.contains(e) {
                lost.push(format!("{} lacks traffic endpoint {e}", NAMES[i]));
            }
        }
    }
    let acked_creates = regs.iter().filter(|o| o.create && o.outcome == Outcome::Acked).count();
    let acked_deletes = regs.iter().filter(|o| !o.create && o.outcome == Outcome::Acked).count();
    let refused: Vec<&RegOp> = regs.iter().filter(|o| o.outcome == Outcome::Refused).collect();

    // ---- false deaths: O (undisturbed) lists M (undisturbed) as anything but alive
    let mut events: Vec<(usize, usize, String, u64)> = Vec::new();
    let mut missing: Vec<(usize, usize, String, u64)> = Vec::new();
    for x in &samples {
        if x.members.is_none() || win.disturbed(x.node, x.at) {
            continue;
        }
        for m in 0..NAMES.len() {
            if m == x.node || win.disturbed(m, x.at) {
                continue;
            }
            match seen_state(x, NAMES[m]).as_deref() {
                Some("alive") | None => {}
                Some("missing") => missing.push((x.node, m, "missing".into(), x.at)),
                Some(st) => events.push((x.node, m, st.to_string(), x.at)),
            }
        }
    }
    let false_deaths = episodes(&events);
    let missing_eps = episodes(&missing);
    let false_down = false_deaths.iter().filter(|e| e.states.iter().any(|s| s != "suspect")).count();

    // ---- convergence after each heal
    struct RegLife {
        key: String,
        owner: usize,
        created: u64,
        delete_sent: Option<u64>,
    }
    let lives: Vec<RegLife> = regs
        .iter()
        .filter(|o| o.create && o.outcome == Outcome::Acked)
        .map(|o| RegLife {
            key: format!("reg/{}", o.id),
            owner: o.node,
            created: o.done,
            delete_sent: regs.iter().find(|d| !d.create && d.id == o.id).map(|d| d.sent),
        })
        .collect();
    // per node: samples with members, samples with endpoints, by time
    let by_node = |want_eps: bool| -> Vec<Vec<&Sample>> {
        (0..NAMES.len())
            .map(|i| samples.iter().filter(|x| x.node == i && if want_eps { x.endpoints.is_some() } else { x.members.is_some() }).collect())
            .collect()
    };
    let (m_by, e_by) = (by_node(false), by_node(true));
    fn latest<'a>(v: &[&'a Sample], h: u64, t: u64) -> Option<&'a Sample> {
        let k = v.partition_point(|x| x.at <= t);
        (k > 0 && v[k - 1].at >= h).then(|| v[k - 1])
    }
    let mut conv: Vec<(usize, Kind, Option<u64>, String)> = Vec::new();
    for f in &faults {
        let h = f.heal;
        let mut result = None;
        let mut why = String::from("not within 60 s");
        let mut t = h;
        while t <= h + 60_000_000 && t <= t_end {
            t += 250_000;
            let set: BTreeSet<usize> = (0..NAMES.len()).filter(|&i| !win.faulted(i, t)).collect();
            if !set.contains(&f.node) {
                why = "faulted again first".into();
                break;
            }
            let ok = set.iter().all(|&i| {
                let (Some(m), Some(e)) = (latest(&m_by[i], h, t), latest(&e_by[i], h, t)) else { return false };
                let members_ok = set.iter().filter(|&&j| j != i).all(|&j| {
                    let g = sh.nodes[j].generation_at(t);
                    m.members.as_ref().unwrap().iter().any(|x| x.name == NAMES[j] && x.state == "alive" && x.generation >= g)
                });
                let eps = e.endpoints.as_ref().unwrap();
                let x = e.at.saturating_sub(REG_SLACK_US);
                members_ok
                    && STATIC_EPS.iter().all(|k| eps.contains(*k))
                    && lives
                        .iter()
                        .filter(|l| set.contains(&l.owner) && l.created <= x && l.delete_sent.is_none_or(|d| d > x))
                        .all(|l| eps.contains(&l.key))
            });
            if ok {
                result = Some(t - h);
                break;
            }
        }
        conv.push((f.node, f.kind, result, why));
    }
    let mut conv_times: Vec<u64> = conv.iter().filter_map(|c| c.2).collect();
    conv_times.sort_unstable();
    let not_conv = conv.iter().filter(|c| c.2.is_none() && c.3 != "faulted again first").count();

    // ---- the table
    let mut t = String::new();
    let kinds = |k: Kind| faults.iter().filter(|f| f.kind == k).count();
    let _ = writeln!(
        t,
        "\nchaos soak: {} s, {} faults ({} kill -9, {} SIGSTOP, {} link down), {} clients at ~{} req/s, seed {}\n",
        s.secs,
        faults.len(),
        kinds(Kind::Kill),
        kinds(Kind::Stop),
        kinds(Kind::Cut),
        s.clients,
        s.rate,
        s.seed
    );
    let _ = writeln!(
        t,
        "{:<9} {:>7} {:>7} {:>7} {:>10} {:>9} {:>5} {:>6} {:>7} {:>7} {:>8}",
        "requests", "total", "ok", "failed", "own-node*", "tcp-fly*", "late", "twice", "p50 ms", "p99 ms", "max ms"
    );
    for ((p, post), f) in &figs {
        let _ = writeln!(
            t,
            "{:<9} {:>7} {:>7} {:>7} {:>10} {:>9} {:>5} {:>6} {:>7.1} {:>7.1} {:>8.1}",
            if *p == Proto::Tcp { "tcp".to_string() } else { format!("{} {}", p.name(), if *post { "POST" } else { "GET" }) },
            f.total,
            f.ok,
            f.failed,
            f.failed_exempt,
            f.tcp_in_flight,
            f.late,
            f.twice,
            pct(&f.lat_us, 0.5),
            pct(&f.lat_us, 0.99),
            pct(&f.lat_us, 1.0)
        );
    }
    let _ = writeln!(
        t,
        "  * not counted as failures: own-node = the client's own proxy was faulted (or within {} s of its heal) during the request; tcp-fly = a TCP exchange routed to a node (the backend it reached, or weft's access log) before that node's fault broke it",
        s.heal_grace_us / 1_000_000
    );
    let conv_s = |v: Option<&u64>| v.map(|x| format!("{:.1} s", *x as f64 / 1e6)).unwrap_or_else(|| "-".into());
    let rss: Vec<String> = (0..NAMES.len()).map(|i| format!("{} {:.0}", NAMES[i], sh.nodes[i].peak_hwm_kb.load(SeqCst) as f64 / 1024.0)).collect();
    let rows: Vec<(String, String, &str)> = vec![
        ("failed idempotent requests (GET h1+h2, TCP)".into(), failed_idem.to_string(), "0"),
        ("failed non-idempotent requests (POST h1+h2)".into(), failed_nonidem.to_string(), "-"),
        ("  of which reached no backend (502 where a retry was safe)".into(), unreached_nonidem.to_string(), "-"),
        ("non-idempotent requests executed twice".into(), twice_nonidem.to_string(), "0"),
        ("idempotent requests executed twice".into(), twice_idem.to_string(), "-"),
        ("requests executed after their caller gave up".into(), late_all.to_string(), "0"),
        ("attempts executed after their request was answered (late retries)".into(), late_answered_all.to_string(), "-"),
        ("TCP bytes a frozen node delivered on resuming, after its client's connection ended".into(), tcp_resumed.to_string(), "-"),
        (
            format!("registrations lost (of {acked_creates} acked creates, {acked_deletes} acked deletes, {} uncertain)", unsure.len()),
            lost.len().to_string(),
            "0",
        ),
        ("deleted registrations still listed".into(), zombies.len().to_string(), "-"),
        (
            "false down/suspect declarations (episodes; down or left)".into(),
            format!("{} ({} samples); {false_down}", false_deaths.len(), events.len()),
            "0",
        ),
        ("live node missing from a member list (episodes)".into(), missing_eps.len().to_string(), "-"),
        (
            format!("convergence after heal ({} heals): median / max", conv_times.len()),
            format!("{} / {}", conv_s(conv_times.get(conv_times.len() / 2)), conv_s(conv_times.last())),
            "-",
        ),
        ("heals not converged within 60 s".into(), not_conv.to_string(), "-"),
        (
            "all nodes converged after the last heal (polled every 250 ms)".into(),
            final_converged.map(|c| format!("{:.1} s", (c - t_last_heal) as f64 / 1e6)).unwrap_or_else(|| "NO (60 s)".into()),
            "-",
        ),
        ("peak RSS per node (MiB)".into(), rss.join(", "), "-"),
        ("OK answers with no backend record (harness check)".into(), ok_unlogged.to_string(), "0"),
        ("backend arrivals of ids no client sent (harness check)".into(), orphans.to_string(), "0"),
    ];
    let _ = writeln!(t, "\n{:<72} {:>24} {:>5}", "figure", "value", "goal");
    for (k, v, g) in &rows {
        let _ = writeln!(t, "{k:<72} {v:>24} {g:>5}");
    }
    loud_line(&t);

    // ---- details
    let _ = writeln!(details, "\n== convergence after each heal");
    for (n, k, r, why) in &conv {
        let _ = writeln!(details, "{:<3} {:<10} {}", NAMES[*n], k.name(), r.map(|x| format!("{:.2} s", x as f64 / 1e6)).unwrap_or_else(|| why.clone()));
    }
    let _ = writeln!(details, "\n== false down/suspect declarations (observer: subject state, from..to, samples)");
    for e in &false_deaths {
        let _ = writeln!(
            details,
            "{} saw {} {:?} from {:.2}s to {:.2}s ({} samples)",
            NAMES[e.observer],
            NAMES[e.subject],
            e.states,
            rel(e.first),
            rel(e.last),
            e.samples
        );
    }
    let _ = writeln!(details, "\n== live node missing from a member list");
    for e in &missing_eps {
        let _ = writeln!(details, "{} did not list {} from {:.2}s to {:.2}s ({} samples)", NAMES[e.observer], NAMES[e.subject], rel(e.first), rel(e.last), e.samples);
    }
    let _ = writeln!(details, "\n== requests executed after their caller gave up");
    for l in &late {
        let _ = writeln!(details, "{l}");
    }
    let _ = writeln!(details, "\n== attempts executed after their request had been answered");
    for l in &late_answered {
        let _ = writeln!(details, "{l}");
    }
    let _ = writeln!(details, "\n== requests executed more than once");
    for l in &twice {
        let _ = writeln!(details, "{l}");
    }
    let _ = writeln!(details, "\n== counted failures by kind");
    for (k, n) in &fail_kinds {
        let _ = writeln!(details, "{n:>6} {k}");
    }
    let _ = writeln!(details, "\n== registrations lost / deleted but listed / refused");
    for l in lost.iter().chain(zombies.iter()) {
        let _ = writeln!(details, "{l}");
    }
    for o in &refused {
        let _ = writeln!(details, "refused {} {} on {}: {}", if o.create { "create" } else { "delete" }, o.id, NAMES[o.node], o.detail);
    }
    for o in regs.iter().filter(|o| o.outcome == Outcome::Unknown) {
        let _ = writeln!(
            details,
            "uncertain {} {} on {} at {:.2}s: {}",
            if o.create { "create" } else { "delete" },
            o.id,
            NAMES[o.node],
            rel(o.sent),
            o.detail
        );
    }
    let _ = writeln!(details, "\n== every failed request (counted or not)");
    for l in &failures {
        let _ = writeln!(details, "{l}");
    }
    fs::write(out.join("report.txt"), &t).unwrap();
    fs::write(out.join("details.txt"), &details).unwrap();
    let mut reqlog = String::new();
    for r in &recs {
        let _ = writeln!(reqlog, "{:.6} {:.6} {} {} {} {}", rel(r.start), rel(r.end), r.id, r.ok, r.backend.as_deref().unwrap_or("-"), r.err);
    }
    fs::write(out.join("requests.txt"), reqlog).unwrap();

    // ---- goals
    let mut missed = Vec::new();
    let total: u64 = figs.values().map(|f| f.total).sum();
    if total < s.secs * (s.rate as u64) / 4 {
        missed.push(format!("harness: only {total} requests in {} s (load far below ~{} req/s)", s.secs, s.rate));
    }
    if faults.len() as u64 + 1 < s.secs / s.every_s {
        missed.push(format!("harness: only {} faults in {} s", faults.len(), s.secs));
    }
    if orphans > 0 {
        missed.push(format!("harness: {orphans} backend arrivals of ids no client sent"));
    }
    if ok_unlogged > 0 {
        missed.push(format!("harness: {ok_unlogged} OK answers without a backend record"));
    }
    if failed_idem > 0 {
        missed.push(format!("failed idempotent requests: {failed_idem} (by kind: {fail_kinds:?})"));
    }
    if twice_nonidem > 0 {
        missed.push(format!("non-idempotent requests executed twice: {twice_nonidem}: {:?}", twice.iter().take(5).collect::<Vec<_>>()));
    }
    if late_all > 0 {
        missed.push(format!("requests executed after their caller gave up: {late_all}, e.g. {:?}", late.iter().take(5).collect::<Vec<_>>()));
    }
    if !lost.is_empty() {
        missed.push(format!("registrations lost: {}: {:?}", lost.len(), lost.iter().take(10).collect::<Vec<_>>()));
    }
    let downs: Vec<&Episode> = false_deaths.iter().filter(|e| e.states.iter().any(|s| s != "suspect")).collect();
    if !downs.is_empty() {
        let ex: Vec<String> = downs
            .iter()
            .take(10)
            .map(|e| format!("{} saw {} {:?} {:.1}s..{:.1}s", NAMES[e.observer], NAMES[e.subject], e.states, rel(e.first), rel(e.last)))
            .collect();
        missed.push(format!("false down declarations of live nodes: {} episodes, e.g. {ex:?}", downs.len()));
    }
    missed
}

