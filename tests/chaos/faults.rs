//! The soak's faults: kill -9, SIGSTOP or link down, and their heals.

use super::*;

// ---------------------------------------------------------------------------------------------
// the faults
// ---------------------------------------------------------------------------------------------

pub(super) struct Active {
    pub(super) fault: usize,
    pub(super) heal_at: Instant,
}

pub(super) fn inflict(sh: &Shared, net: &Net, nodes: &mut [Weft], i: usize, kind: Kind) -> u64 {
    let rt = &sh.nodes[i];
    let pid = nodes[i].pid();
    let t = now_us();
    match kind {
        Kind::Kill => {
            if let Some(kb) = vm_hwm_kb(pid) {
                rt.note_hwm(kb);
            }
            rt.state.store(KILLED, SeqCst);
            nodes[i].kill9();
        }
        Kind::Stop => {
            rt.state.store(FROZEN, SeqCst);
            let st = Command::new("kill").args(["-STOP", &pid.to_string()]).status().unwrap();
            assert!(st.success(), "kill -STOP {pid}");
        }
        Kind::Cut => {
            rt.state.store(CUT, SeqCst);
            net.link(i, false);
        }
    }
    t
}

/// Undo the fault; returns (heal time, ready time).
pub(super) fn heal(sh: &Shared, net: &Net, nodes: &mut [Weft], i: usize, kind: Kind) -> (u64, u64) {
    let rt = &sh.nodes[i];
    let t = now_us();
    match kind {
        Kind::Kill => {
            nodes[i].restart();
            let ready = now_us();
            rt.pid.store(nodes[i].pid(), SeqCst);
            rt.gens.lock().unwrap().push((ready, nodes[i].generation()));
            rt.state.store(UP, SeqCst);
            return (t, ready);
        }
        Kind::Stop => {
            let pid = nodes[i].pid();
            let st = Command::new("kill").args(["-CONT", &pid.to_string()]).status().unwrap();
            assert!(st.success(), "kill -CONT {pid}");
        }
        Kind::Cut => net.link(i, true),
    }
    rt.state.store(UP, SeqCst);
    (t, t)
}

/// Runs the fault schedule for `secs`, then heals what is still broken; returns when all is healed.
pub(super) fn fault_loop(sh: &Shared, net: &Net, nodes: &mut [Weft], t_begin: Instant) {
    let s = &sh.s;
    let mut rng = StdRng::seed_from_u64(s.seed);
    let end = t_begin + Duration::from_secs(s.secs);
    let mut next = t_begin + Duration::from_secs(s.every_s);
    let mut active: Vec<Active> = Vec::new();
    loop {
        let now = Instant::now();
        if let Some(k) = active.iter().position(|a| a.heal_at <= now) {
            let a = active.remove(k);
            let (i, kind) = {
                let f = &sh.faults.lock().unwrap()[a.fault];
                (f.node, f.kind)
            };
            let (t, ready) = heal(sh, net, nodes, i, kind);
            let mut faults = sh.faults.lock().unwrap();
            faults[a.fault].heal = t;
            faults[a.fault].ready = ready;
            loud_line(&format!("  {:>6.1}s heal   {} ({})", secs_since(sh, t), NAMES[i], kind.name()));
            continue;
        }
        if next <= now && now < end {
            next += Duration::from_secs(s.every_s);
            // a node neither faulted nor within its grace after a heal
            let t = now_us();
            let busy: BTreeSet<usize> = {
                let faults = sh.faults.lock().unwrap();
                faults.iter().filter(|f| f.heal == 0 || t < f.heal + s.heal_grace_us).map(|f| f.node).collect()
            };
            let free: Vec<usize> = (0..NAMES.len()).filter(|i| !busy.contains(i)).collect();
            if free.is_empty() {
                loud_line("  (no undisturbed node to fault this round)");
                continue;
            }
            let i = free[rng.random_range(0..free.len())];
            let kind = [Kind::Kill, Kind::Stop, Kind::Cut][rng.random_range(0..3)];
            let dur = Duration::from_millis(rng.random_range(s.fault_min_s * 1000..=s.fault_max_s * 1000));
            let start = inflict(sh, net, nodes, i, kind);
            let mut faults = sh.faults.lock().unwrap();
            faults.push(Fault { node: i, kind, start, heal: 0, ready: 0 });
            active.push(Active { fault: faults.len() - 1, heal_at: Instant::now() + dur });
            loud_line(&format!("  {:>6.1}s fault  {} ({}, {:.1} s)", secs_since(sh, start), NAMES[i], kind.name(), dur.as_secs_f64()));
            continue;
        }
        if now >= end && active.is_empty() {
            return;
        }
        let mut wake = active.iter().map(|a| a.heal_at).min().unwrap_or(end);
        if now < end {
            wake = wake.min(next).min(end);
        }
        std::thread::sleep(wake.saturating_duration_since(Instant::now()).min(Duration::from_millis(100)));
    }
}

pub(super) static T0: AtomicU64 = AtomicU64::new(0);

pub(super) fn secs_since(_sh: &Shared, t: u64) -> f64 {
    (t as f64 - T0.load(SeqCst) as f64) / 1e6
}

pub(super) fn rel(t: u64) -> f64 {
    (t as f64 - T0.load(SeqCst) as f64) / 1e6
}

pub(super) fn loud_line(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}
