//! The head parser's tests: framing, dropped fields, the Host rules and the limits.

use super::*;

fn out(h: &Head, buf: &[u8], request: bool) -> String {
    let mut o = Vec::new();
    h.write_to(buf, &mut o, request, &[]);
    String::from_utf8(o).unwrap()
}

#[test]
fn request_framing_and_hop_by_hop() {
    let raw = b"POST /x?y=1 HTTP/1.1\r\nHost: app:80\r\nConnection: keep-alive, x-secret\r\nx-secret: 1\r\nKeep-Alive: 5\r\nContent-Length: 3\r\n\r\nabcGET";
    let h = Head::request(raw).unwrap().unwrap();
    assert_eq!(&raw[h.len..], b"abcGET");
    assert_eq!(h.body, BodyKind::Length(3));
    assert!(!h.close);
    assert_eq!(h.method(raw), "POST");
    assert_eq!(out(&h, raw, true), "POST /x?y=1 HTTP/1.1\r\nHost: app:80\r\nContent-Length: 3\r\n\r\n");
    assert!(Head::request(&raw[..20]).unwrap().is_none());
}

#[test]
fn kept_lines_go_out_as_they_came_and_bare_lf_lines_are_rewritten() {
    let raw = b"HTTP/1.1 200 OK\r\nServer: x\r\nConnection: keep-alive\r\nContent-Length:5\r\nX-A:  b \r\n\r\nhello";
    let h = Head::response(raw, b"GET").unwrap().unwrap();
    assert_eq!(out(&h, raw, false), "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length:5\r\nX-A:  b \r\n\r\n");
    let lf = b"GET / HTTP/1.1\nHost: a\nKeep-Alive: 5\nX-B: c\n\n";
    let h = Head::request(lf).unwrap().unwrap();
    assert_eq!(out(&h, lf, true), "GET / HTTP/1.1\r\nHost: a\r\nX-B: c\r\n\r\n");
    let mixed = b"GET / HTTP/1.1\r\nHost: a\nX-B: c\r\n\r\n";
    let h = Head::request(mixed).unwrap().unwrap();
    assert_eq!(out(&h, mixed, true), "GET / HTTP/1.1\r\nHost: a\r\nX-B: c\r\n\r\n");
}

#[test]
fn names_past_the_kept_ones_are_still_recognised() {
    let mut raw = b"POST / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..70 {
        raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    raw.extend_from_slice(b"Connection: close, X-39\r\nTE: gzip\r\nContent-Length: 2\r\n\r\nok");
    let h = Head::request(&raw).unwrap().unwrap();
    assert_eq!(h.body, BodyKind::Length(2));
    assert!(h.close);
    let o = out(&h, &raw, true);
    assert!(o.contains("X-38: v\r\n") && !o.contains("X-39") && !o.contains("TE") && !o.contains("Connection"), "{o}");
    assert!(o.ends_with("Content-Length: 2\r\n\r\n"));
}

/// The usual CRLF head: kept runs are copied between the dropped fields, wherever those are.
#[test]
fn dropped_fields_first_middle_last_and_adjacent() {
    let raw = b"GET / HTTP/1.1\r\nKeep-Alive: 5\r\nHost: a\r\nX-1: v\r\nProxy-Connection: x\r\nTE: gzip\r\nTE: trailers\r\nX-2: w\r\nConnection: keep-alive\r\n\r\n";
    let h = Head::request(raw).unwrap().unwrap();
    assert_eq!(out(&h, raw, true), "GET / HTTP/1.1\r\nHost: a\r\nX-1: v\r\nTE: trailers\r\nX-2: w\r\n\r\n");
    let bare = b"GET / HTTP/1.0\r\n\r\n";
    assert_eq!(out(&Head::request(bare).unwrap().unwrap(), bare, true), "GET / HTTP/1.0\r\n\r\n");
    let digits = b"HTTP/1.1 200 OK\r\nContent-Length: 0012\r\n\r\n";
    assert_eq!(Head::response(digits, b"GET").unwrap().unwrap().body, BodyKind::Length(12));
    let huge = b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n";
    assert!(Head::response(huge, b"GET").is_err());
}

#[test]
fn names_are_recognised_in_any_case_and_near_misses_are_not() {
    let names = [
        ("te", Name::Te),
        ("host", Name::Host),
        ("expect", Name::Expect),
        ("upgrade", Name::Upgrade),
        ("connection", Name::Connection),
        ("keep-alive", Name::Hop),
        ("content-length", Name::ContentLength),
        ("proxy-connection", Name::Hop),
        ("transfer-encoding", Name::TransferEncoding),
        ("proxy-authenticate", Name::Hop),
        ("proxy-authorization", Name::Hop),
    ];
    for (name, want) in names {
        assert_eq!(name_of(name.as_bytes()), want, "{name}");
        assert_eq!(name_of(name.to_ascii_uppercase().as_bytes()), want, "{name}");
        for at in 0..name.len() {
            let mut off = name.as_bytes().to_vec();
            off[at] = if off[at] == b'-' { b'_' } else { off[at] + 1 };
            assert_eq!(name_of(&off), Name::Other, "{}", String::from_utf8_lossy(&off));
        }
    }
}

#[test]
fn refuses_smuggling_shapes() {
    let both = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n";
    assert!(Head::request(both).is_err());
    let two = b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
    assert!(Head::request(two).is_err());
    let gzip = b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n";
    assert!(Head::request(gzip).is_err());
    assert!(Head::request(b"GARBAGE\r\n\r\n").is_err());
}

#[test]
fn response_bodies() {
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(Head::response(r, b"HEAD").unwrap().unwrap().body, BodyKind::Empty);
    assert_eq!(Head::response(r, b"GET").unwrap().unwrap().body, BodyKind::Length(10));
    let r = b"HTTP/1.0 200 OK\r\n\r\n";
    let h = Head::response(r, b"GET").unwrap().unwrap();
    assert_eq!(h.body, BodyKind::UntilClose);
    assert!(h.close);
    let r = b"HTTP/1.1 204 No Content\r\n\r\n";
    assert_eq!(Head::response(r, b"GET").unwrap().unwrap().body, BodyKind::Empty);
    let r = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
    let h = Head::response(r, b"GET").unwrap().unwrap();
    assert!(h.upgrade);
    assert!(out(&h, r, false).contains("Upgrade: websocket"));
}
