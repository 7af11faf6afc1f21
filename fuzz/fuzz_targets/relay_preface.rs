//! The relay preface: the first bytes of a data-path stream from another node (kind byte,
//! big-endian u16 length, postcard body naming the endpoint, optional 8-byte deadline), read
//! by the far side before it connects anywhere. Reading must never panic, never take more than
//! the stream holds, and a request it reads must read back the same from what the caller side
//! would send for it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::fuzzing::{RelayRequest, relay_preface};

fuzz_target!(|data: &[u8]| {
    // The body alone, as `RelayRequest::decode` sees it after the framing.
    if let Some(req) = RelayRequest::decode(data) {
        let body = req.encode().expect("a decoded request encodes");
        assert_eq!(RelayRequest::decode(&body).as_ref(), Some(&req));
    }
    let Some((req, used)) = relay_preface(data) else { return };
    assert!(used <= data.len() && used <= 3 + 1024, "preface took {used} of {} bytes", data.len());
    // The caller's framing (`relay::open`): the same kind byte, the body's length, the body.
    let body = req.encode().expect("a decoded request encodes");
    let mut sent = vec![data[0]];
    sent.extend_from_slice(&(body.len() as u16).to_be_bytes());
    sent.extend_from_slice(&body);
    assert_eq!(relay_preface(&sent), Some((req, sent.len())));
});
