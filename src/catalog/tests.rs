use std::collections::BTreeMap;

use super::*;

fn temp_store(tag: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("weft-cat-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    (Store::open(&dir).unwrap(), dir)
}

fn catalog(tag: &str) -> (Catalog, std::path::PathBuf) {
    let (store, dir) = temp_store(tag);
    (Catalog::open(store, "n1", VipRange::parse("127.255.9.0/24").unwrap()).unwrap(), dir)
}

fn ns(name: &str) -> Body {
    Body::Namespace(Namespace { name: name.into(), description: String::new() })
}

fn svc(name: &str, alias: &str, port: u16) -> Body {
    Body::Service(Service {
        namespace: "shop".into(),
        name: name.into(),
        protocol: Protocol::Http,
        aliases: vec![Alias { dns_name: alias.into(), port }],
        timeouts: Timeouts::default(),
        ..Default::default()
    })
}

fn ep(id: &str, port: u16) -> Endpoint {
    Endpoint {
        namespace: "shop".into(),
        service: "app".into(),
        id: id.into(),
        node: String::new(),
        address: format!("127.0.0.1:{port}").parse().unwrap(),
        zone: String::new(),
        attributes: BTreeMap::new(),
        health: Health::Healthy,
        draining: false,
    }
}

#[test]
fn writes_check_references_and_conflicts() {
    let (c, dir) = catalog("refs");
    assert!(matches!(c.write(svc("app", "app", 80), Origin::Api), Err(CatalogError::NotFound(_))));
    c.write(ns("shop"), Origin::Api).unwrap();
    c.write(svc("app", "app", 80), Origin::Api).unwrap();
    let err = c.write(svc("other", "app", 80), Origin::Api).unwrap_err();
    assert!(err.to_string().contains("already used by service shop/app"), "{err}");
    // Same name, other port: allowed, and it shares the name's VIP.
    c.write(svc("other", "app", 81), Origin::Api).unwrap();
    c.write(Body::Endpoint(ep("e1", 9000)), Origin::Api).unwrap();
    assert!(matches!(c.delete(&Key::Service("shop".into(), "app".into())), Err(CatalogError::InUse { .. })));
    assert!(matches!(c.delete(&Key::Namespace("shop".into())), Err(CatalogError::InUse { .. })));
    let snap = c.snapshot();
    assert_eq!(snap.vips.len(), 1);
    assert_eq!(snap.endpoints_of("shop", "app")[0].node, "n1");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn revision_follows_registration_not_health() {
    let (c, dir) = catalog("rev");
    c.write(ns("shop"), Origin::Api).unwrap();
    c.write(svc("app", "app", 80), Origin::Api).unwrap();
    c.write(Body::Endpoint(ep("e1", 9000)), Origin::Api).unwrap();
    let key = ("shop".to_string(), "app".to_string());
    let r1 = c.snapshot().revisions[&key];
    let mut sick = ep("e1", 9000);
    sick.health = Health::Unhealthy;
    c.write(Body::Endpoint(sick), Origin::Api).unwrap();
    assert_eq!(c.snapshot().revisions[&key], r1);
    c.write(Body::Endpoint(ep("e2", 9001)), Origin::Api).unwrap();
    let r2 = c.snapshot().revisions[&key];
    assert!(r2 > r1);
    c.delete(&Key::Endpoint("shop".into(), "app".into(), "e2".into())).unwrap();
    assert!(c.snapshot().revisions[&key] > r2);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn restart_restores_records_and_vips() {
    let (store, dir) = temp_store("restart");
    let range = VipRange::parse("127.255.9.0/24").unwrap();
    let vip = {
        let c = Catalog::open(store, "n1", range).unwrap();
        c.write(ns("shop"), Origin::Api).unwrap();
        c.write(svc("app", "app", 80), Origin::Api).unwrap();
        c.write(svc("db", "db", 5432), Origin::Api).unwrap();
        c.delete(&Key::Service("shop".into(), "app".into())).unwrap();
        c.vip_of("db").unwrap()
    };
    let c = Catalog::open(Store::open(&dir).unwrap(), "n1", range).unwrap();
    let snap = c.snapshot();
    assert_eq!(snap.services.len(), 1);
    assert_eq!(snap.vips["db"], vip);
    // A deleted-then-recreated alias gets its old VIP back.
    let old_app = c.vip_of("app").unwrap();
    c.write(svc("app", "app", 80), Origin::Api).unwrap();
    assert_eq!(c.snapshot().vips["app"], old_app);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn merge_is_last_writer_wins_in_any_order() {
    let (a, da) = catalog("lww-a");
    let (b, db) = catalog("lww-b");
    let rec = |hlc: u64, desc: &str| Record {
        key: Key::Namespace("shop".into()),
        body: Some(Body::Namespace(Namespace { name: "shop".into(), description: desc.into() })),
        version: Version { hlc, writer: "x".into() },
        origin: Origin::Remote,
        registered: 0,
    };
    assert!(a.merge(rec(1, "old")).unwrap());
    assert!(a.merge(rec(2, "new")).unwrap());
    assert!(b.merge(rec(2, "new")).unwrap());
    assert!(!b.merge(rec(1, "old")).unwrap());
    assert_eq!(a.snapshot().namespaces["shop"].description, "new");
    assert_eq!(b.snapshot().namespaces["shop"].description, "new");
    std::fs::remove_dir_all(da).unwrap();
    std::fs::remove_dir_all(db).unwrap();
}

#[test]
fn a_grpc_health_service_name_over_127_bytes_is_refused() {
    let Body::Service(mut s) = svc("api", "api.shop", 50051) else { unreachable!() };
    s.health_check.kind = CheckKind::Grpc;
    s.health_check.grpc_service = "x".repeat(127);
    assert!(validate::service(&s).is_ok());
    s.health_check.grpc_service = "x".repeat(128);
    let e = validate::service(&s).unwrap_err().to_string();
    assert!(e.contains("health_check.grpc_service") && e.contains("128 bytes"), "{e}");
}

/// Two registries created services claiming the same alias concurrently: every replica gives it
/// to the same one whatever order the records arrive in, reports the conflict, and serves the
/// alias for one service only.
#[test]
fn an_alias_claimed_twice_goes_to_the_same_service_in_any_order() {
    let rec = |body: Body, writer: &str, hlc: u64| Record { key: body.key(), body: Some(body), version: Version { hlc, writer: writer.into() }, origin: Origin::Api, registered: hlc };
    let records = [rec(ns("shop"), "r1", 1 << 16), rec(svc("web", "front.shop", 80), "r1", 2 << 16), rec(svc("api", "front.shop", 80), "r2", 3 << 16)];
    let mut owners = Vec::new();
    for (tag, order) in [("alias-a", [0, 1, 2]), ("alias-b", [0, 2, 1])] {
        let (c, dir) = catalog(tag);
        for i in order {
            c.merge(records[i].clone()).unwrap();
        }
        let snap = c.snapshot();
        let holders: Vec<&str> = snap.services.values().filter(|s| !s.aliases.is_empty()).map(|s| s.name.as_str()).collect();
        assert_eq!(holders.len(), 1, "one service holds front.shop:80: {holders:?}");
        assert_eq!(snap.alias_conflicts, vec![AliasConflict { alias: "front.shop:80".into(), owner: "shop/api".into(), refused: vec!["shop/web".into()] }]);
        owners.push(holders[0].to_string());
        let _ = std::fs::remove_dir_all(dir);
    }
    assert_eq!(owners, ["api", "api"]);
}

/// The writer index kept as records change (`index.rs`) must equal the reference summary over
/// the records held, for every scope, through local writes, deletes, merges that replace another
/// writer's record, and a restart.
#[test]
fn the_writer_index_follows_every_change() {
    let (store, dir) = temp_store("index");
    let range = VipRange::parse("127.255.9.0/24").unwrap();
    let check = |c: &Catalog| {
        let state = c.lock();
        let shop: std::collections::BTreeSet<String> = ["shop".to_string()].into();
        for scope in [None, Some(&shop)] {
            let reference = crate::gossip::summarize(state.records.values().filter(|r| r.key.namespace().is_none_or(|n| scope.is_none_or(|s| s.contains(n)))));
            let totals = state.index.totals(scope);
            let got: BTreeMap<String, (u64, u64, u64)> = totals.iter().map(|(w, t)| (w.clone(), (t.max_hlc, t.count, t.hash))).collect();
            let want: BTreeMap<String, (u64, u64, u64)> = reference.iter().map(|(w, s)| (w.clone(), (s.max_hlc, s.count, s.hash))).collect();
            assert_eq!(got, want, "scope {scope:?}");
            for w in want.keys() {
                let mut walked = Vec::new();
                state.index.walk_newest(w, scope, &mut |hlc, _| {
                    walked.push(hlc);
                    true
                });
                assert!(walked.windows(2).all(|p| p[0] >= p[1]), "newest first");
                assert_eq!(walked.len() as u64, want[w].1);
            }
        }
    };
    let peer = |body: Body, hlc: u64| Record { key: body.key(), body: Some(body), version: Version { hlc, writer: "n2".into() }, origin: Origin::Remote, registered: hlc };
    {
        let c = Catalog::open(store, "n1", range).unwrap();
        c.write(ns("shop"), Origin::Api).unwrap();
        c.write(svc("app", "app", 80), Origin::Api).unwrap();
        for i in 0..40 {
            c.write(Body::Endpoint(ep(&format!("e{i}"), 1000 + i)), Origin::Api).unwrap();
        }
        check(&c);
        c.delete(&Key::Endpoint("shop".into(), "app".into(), "e3".into())).unwrap();
        // n2 replaces some of n1's endpoints and adds a namespace of its own.
        let newer = c.record(&Key::Endpoint("shop".into(), "app".into(), "e4".into())).unwrap().version.hlc + 1;
        let replaced: Vec<Record> = (4..9).map(|i| peer(Body::Endpoint(ep(&format!("e{i}"), 2000 + i)), newer + u64::from(i))).collect();
        c.merge_many(replaced, |_, _| true).unwrap();
        c.merge(peer(Body::Namespace(Namespace { name: "pay".into(), description: String::new() }), newer + 100)).unwrap();
        check(&c);
        c.flush().unwrap();
    }
    let c = Catalog::open(Store::open(&dir).unwrap(), "n1", range).unwrap();
    check(&c);
    std::fs::remove_dir_all(dir).unwrap();
}
