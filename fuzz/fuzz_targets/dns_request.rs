//! DNS request handling: one datagram from any client on the node (UDP, or a TCP message
//! without its length prefix) answered as the responder answers it, with two aliases and no
//! upstream. The responder must never panic, never answer a response or a fragment (reflection
//! loops start that way), and every answer it sends is a well-formed response to the request's
//! id: an alias asked for (A or ANY, class IN or ANY) gets its VIP, anything else a reply
//! without one.
#![no_main]

use std::net::Ipv4Addr;

use hickory_proto::op::{Message, MessageType};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use libfuzzer_sys::fuzz_target;
use weft::fuzzing::dns_answer;

const NAMES: [(&str, Ipv4Addr); 2] = [("web.svc", Ipv4Addr::new(10, 200, 0, 1)), ("db.internal.example", Ipv4Addr::new(10, 200, 0, 2))];

fuzz_target!(|data: &[u8]| {
    // The first byte's low bit: over TCP or UDP (it changes only forwarding, which has no
    // upstream here, but both paths run).
    let Some((&how, raw)) = data.split_first() else { return };
    let out = dns_answer(raw, how & 1 == 1, &NAMES, 30);
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        assert!(out.is_none(), "answered a response or a fragment");
        return;
    }
    let out = out.expect("every query gets an answer");
    assert!(out.len() <= usize::from(u16::MAX), "an answer too long for TCP framing");
    let resp = Message::from_vec(&out).expect("the answer parses");
    assert_eq!(resp.metadata.id, u16::from_be_bytes([raw[0], raw[1]]));
    assert_eq!(resp.metadata.message_type, MessageType::Response);
    // Records only ever answer an alias: its VIP, under the asked name.
    for a in &resp.answers {
        let RData::A(ip) = &a.data else { panic!("a record other than A: {a:?}") };
        assert!(NAMES.iter().any(|(_, vip)| ip.0 == *vip), "an A record that is no VIP: {a:?}");
        let q = resp.queries.first().expect("an answer echoes its question");
        assert!(matches!(q.query_type(), RecordType::A | RecordType::ANY) && matches!(q.query_class(), DNSClass::IN | DNSClass::ANY));
    }
});
