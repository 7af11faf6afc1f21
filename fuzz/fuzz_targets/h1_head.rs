//! The HTTP/1.1 head parser, differential against httparse.
//!
//! weft reads heads with a strict scanner for the usual shape and hands everything else to
//! httparse (`proxy::h1::head::parse`). The property: whatever the strict scanner accepts,
//! httparse parses identically: complete at the same length, the same method, target, version,
//! status, reason, and the same header names and values at the same positions. Where the
//! scanner is stricter (it returns `None`: bare LF, tabs, obs-text, empty values, ...) nothing
//! is compared, because weft then uses httparse's own reading; being stricter costs only speed.
//!
//! Then the whole head path (scanner or httparse, framing, Host rules) runs on the same bytes,
//! and a head it accepts is written onward as the proxy writes it and read back: it must parse,
//! completely, to the same method, target, status and body framing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::fuzzing::{Head, Scanned, scan_request, scan_response};

/// httparse's slot count: weft's limit of 128 fields (`head::MAX_HEADERS`).
const SLOTS: usize = 128;

/// Where `part` (a slice httparse returned) starts in `buf`.
fn at(buf: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

fn same_fields(buf: &[u8], fast: &Scanned, headers: &[httparse::Header<'_>]) {
    assert_eq!(fast.fields.len(), headers.len(), "field count");
    for ((name, value), h) in fast.fields.iter().zip(headers) {
        assert_eq!(&buf[name.clone()], h.name.as_bytes(), "field name");
        assert_eq!(&buf[value.clone()], h.value, "field value");
        assert_eq!(*name, at(buf, h.name.as_bytes()), "field name position");
        // An empty value never passes the scanner, so httparse's slice lies in the buffer.
        assert_eq!(*value, at(buf, h.value), "field value position");
    }
}

fn request(buf: &[u8]) {
    let Some(fast) = scan_request(buf) else { return };
    let mut headers = [httparse::EMPTY_HEADER; SLOTS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(fast.len, n, "head length"),
        other => panic!("scanner took a request head httparse reads as {other:?}"),
    }
    let method = req.method.expect("method").as_bytes();
    let path = req.path.expect("path").as_bytes();
    assert_eq!(&buf[fast.method.clone()], method);
    assert_eq!(fast.method, at(buf, method));
    assert_eq!(&buf[fast.target.clone()], path);
    assert_eq!(fast.target, at(buf, path));
    assert_eq!(Some(fast.minor), req.version);
    same_fields(buf, &fast, req.headers);
}

fn response(buf: &[u8]) {
    let Some(fast) = scan_response(buf) else { return };
    let mut headers = [httparse::EMPTY_HEADER; SLOTS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => assert_eq!(fast.len, n, "head length"),
        other => panic!("scanner took a response head httparse reads as {other:?}"),
    }
    assert_eq!(Some(fast.minor), resp.version);
    assert_eq!(Some(fast.status), resp.code);
    // httparse hands back a static "" for an empty reason; weft reads that as `0..0`.
    let reason = resp.reason.unwrap_or("").as_bytes();
    assert_eq!(&buf[fast.target.clone()], reason, "reason");
    if !reason.is_empty() {
        assert_eq!(fast.target, at(buf, reason));
    }
    same_fields(buf, &fast, resp.headers);
}

/// The head as the proxy writes it onward parses back to the same message.
fn forwarded(buf: &[u8], is_request: bool) {
    let read = |b: &[u8]| if is_request { Head::request(b) } else { Head::response(b, b"GET") };
    let Ok(Some(head)) = read(buf) else { return };
    assert!(head.len <= buf.len());
    let mut out = Vec::new();
    head.write_to(buf, &mut out, is_request, &[]);
    let again = match read(&out) {
        Ok(Some(h)) => h,
        other => panic!("the forwarded head {:?} reads as {other:?}", String::from_utf8_lossy(&out)),
    };
    assert_eq!(again.len, out.len(), "forwarded head length");
    assert_eq!(again.method(&out), head.method(buf));
    assert_eq!(again.target.get(&out), head.target.get(buf));
    assert_eq!(again.status, head.status);
    assert_eq!(again.body, head.body, "body framing");
    if is_request {
        // A response goes onward as HTTP/1.1; a request keeps its client's version.
        assert_eq!(again.minor, head.minor);
        assert_eq!(again.host(&out), head.host(buf));
    }
}

fuzz_target!(|data: &[u8]| {
    request(data);
    response(data);
    forwarded(data, true);
    forwarded(data, false);
});
