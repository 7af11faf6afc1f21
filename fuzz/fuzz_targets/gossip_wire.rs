//! The gossip wire codec: datagrams (SWIM packets and the hello/welcome/bye envelope) and
//! messages (record deltas and anti-entropy digests) as read from any peer that got past TLS.
//! Decoding must never panic or allocate beyond the input; what decodes must survive a
//! re-encode unchanged (a record that changes on its way through a node would replicate as a
//! different record), and every decoded record goes through the check a receiving node applies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::fuzzing::{decode_datagram, decode_message, encode_datagram, encode_message, validate};

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode_datagram(data) {
        let again = encode_datagram(&d);
        assert_eq!(decode_datagram(&again).expect("a re-encoded datagram decodes"), d);
    }
    if let Ok((from, msg)) = decode_message(data) {
        let again = encode_message(&from, &msg);
        let (from2, msg2) = decode_message(&again).expect("a re-encoded message decodes");
        assert_eq!(from2, from);
        assert_eq!(msg2, msg);
        let records = match &msg {
            weft::fuzzing::Message::Delta(rs) => rs.as_slice(),
            weft::fuzzing::Message::Push { records, .. } => records.as_slice(),
            weft::fuzzing::Message::Pull(_) => &[],
        };
        for r in records {
            let _ = validate::record(r);
        }
    }
});
