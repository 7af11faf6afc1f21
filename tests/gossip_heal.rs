//! Issue 16, item 8: "live nodes are declared down after a partition heals". In the deterministic
//! simulator (`weft::gossip::sim`), five nodes; one at a time is cut off from the rest (its link
//! down) for 5-15 s and brought back, as the chaos soak does. A node that can reach no one must
//! not declare the others down, and when it comes back its stale suspicions must not outvote the
//! nodes that could see them: no node but the one cut off (unreachable: rightly declared down by
//! the others) is ever seen Down, by anyone, during the cut or after it.
use weft::gossip::sim::{Micros, Sim, SimConfig};
use weft::gossip::{MemberState, Role};

const S: Micros = 1_000_000;

/// Every (observer, member) pair where `observer` sees `member` Down although `member` was never
/// cut off (`victim` is the node cut off now or last). `observers`: who may be asked.
fn false_deaths(sim: &Sim, victim: usize, observers: impl Fn(usize) -> bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, n) in sim.nodes.iter().enumerate().filter(|(i, _)| observers(*i)) {
        let Some(core) = n.core.as_ref() else { continue };
        for m in core.members() {
            let live = sim.nodes.iter().position(|x| x.id.name == m.name).is_some_and(|j| j != victim);
            if live && m.state == MemberState::Down {
                out.push((sim.nodes[i].id.name.clone(), m.name));
            }
        }
    }
    out
}

fn full_mesh(sim: &Sim) -> bool {
    sim.nodes.iter().filter_map(|n| n.core.as_ref()).all(|c| c.members().iter().filter(|m| m.state == MemberState::Alive).count() == sim.nodes.len() - 1)
}

#[test]
fn a_node_cut_off_and_back_declares_no_live_node_down() {
    for seed in [5u64, 17, 29] {
        let mut sim = Sim::new(5, SimConfig::default(), seed, |i| if i < 2 { Role::Registry } else { Role::Proxy });
        sim.converge_membership(None);
        sim.run_for(3 * S);
        assert!(full_mesh(&sim), "seed {seed}: no full mesh to start from");
        // (round, observer, member) -> first time seen, as text.
        let mut seen: std::collections::BTreeMap<(usize, String, String), String> = Default::default();
        // Each node in turn, registries included, for 5, 10 and 15 s.
        for (round, victim) in [4usize, 0, 2, 1, 3, 4].into_iter().enumerate() {
            let cut = (5 + 5 * (round as u64 % 3)) * S;
            let t0 = sim.now;
            sim.partition(|i| u32::from(i == victim));
            // While it is cut off, the others may see it Suspect or Down (it is unreachable),
            // never each other; what the cut-off node believes meanwhile reaches no one.
            sim.run_until(t0 + cut, |s| {
                for (who, whom) in false_deaths(s, victim, |i| i != victim) {
                    let at = format!("n{victim} cut off, +{:.2} s", (s.now - t0) as f64 / 1e6);
                    seen.entry((round, who, whom)).or_insert(at);
                }
                false
            });
            sim.heal();
            let t1 = sim.now;
            // After the heal, nobody — the node that was cut off included — sees a live one Down.
            sim.run_until(t1 + 20 * S, |s| {
                for (who, whom) in false_deaths(s, victim, |_| true) {
                    let at = format!("n{victim} back, +{:.2} s", (s.now - t1) as f64 / 1e6);
                    seen.entry((round, who, whom)).or_insert(at);
                }
                false
            });
            assert!(full_mesh(&sim), "seed {seed} round {round}: not all alive 20 s after the heal: {:?}", (0..5).map(|i| sim.core(i).members()).collect::<Vec<_>>());
        }
        let lines: Vec<String> = seen.iter().map(|((round, who, whom), at)| format!("round {round} ({at}): {who} saw {whom} down")).collect();
        assert!(lines.is_empty(), "seed {seed}: live nodes seen down:\n{}", lines.join("\n"));
        // The rules did their part (`gossip::local_health`).
        let (held, told): (u64, u64) = (0..5).map(|i| (sim.core(i).stats().downs_held, sim.core(i).stats().suspects_told)).fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert!(held > 0 && told > 0, "seed {seed}: downs held {held}, suspects told {told}");
        println!("seed {seed}: no live node seen down; Down timers held {held}, suspects told {told}");
    }
}

/// With one peer, silence says nothing about this node: "no peer speaks" and "that peer is gone"
/// are the same observation. A partition of a two-node mesh must be declared as promptly as a
/// crash (`tests/mesh_vpc.rs` runs the real thing), not after the isolation patience (20 s).
#[test]
fn two_nodes_cut_apart_declare_each_other_down_promptly() {
    for seed in [3u64, 11] {
        let mut sim = Sim::new(2, SimConfig::default(), seed, |i| if i == 0 { Role::Registry } else { Role::Proxy });
        sim.converge_membership(None);
        sim.run_for(3 * S);
        assert!(full_mesh(&sim), "seed {seed}: no mesh to start from");
        let t0 = sim.now;
        sim.partition(|i| i as u32);
        let both_down = |s: &Sim| (0..2).all(|i| s.core(i).members().iter().all(|m| m.state == MemberState::Down));
        let done = sim.run_until(t0 + 20 * S, both_down);
        let took = (sim.now - t0) as f64 / 1e6;
        assert!(done && took < 8.0, "seed {seed}: after {took:.1} s: {:?} / {:?}", sim.core(0).members(), sim.core(1).members());
        println!("seed {seed}: both sides declared the other down {took:.1} s after the cut");
    }
}
