use super::*;
use crate::proxy::h1::head::general;

/// A small deterministic generator (xorshift64*): the same heads every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// One of `parts`; when `clean`, one of the first `usual` (the shapes the strict pass takes).
    fn pick<'a>(&mut self, (usual, parts): (usize, &[&'a [u8]]), clean: bool) -> &'a [u8] {
        parts[self.below(if clean { usual } else { parts.len() })]
    }
}

type Parts = (usize, &'static [&'static [u8]]);

/// Pieces of heads: first the usual shapes, then the oddities httparse handles (or refuses).
const METHODS: Parts = (3, &[b"GET", b"POST", b"DELETE", b"get", b"M-SEARCH", b"", b"G\x01T"]);
const TARGETS: Parts = (4, &[b"/", b"/a/b?c=d&e=%20", b"*", b"http://x:1/p~!$&'()*+,;=:@[]", b"/caf\xc3\xa9", b"/a b", b"", b"/\x7f"]);
const VERSIONS: Parts = (2, &[b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.", b"http/1.1"]);
const ENDS: Parts = (1, &[b"\r\n", b"\n", b"\r", b" \r\n"]);
const NAMES: Parts = (5, &[b"Host", b"Content-Length", b"X-A", b"connection", b"x!#$%&'*+-.^_`|~9", b"", b"Bad Name", b" Folded", b"A\tB"]);
const VALUES: Parts = (6, &[b"v", b"  spaced  ", b"a,b, c", b"123", b"\"quoted\" <x> {y}", b"long value that crosses more than one eight-byte step", b"", b" ", b"tab\there", b"\t lead", b"caf\xc3\xa9", b"x\x7fy", b"a\x00b"]);
const SEPARATORS: Parts = (3, &[b": ", b":", b":  ", b" : ", b":\t"]);
const STATUS: Parts = (4, &[b"200 OK", b"404 Not Found", b"204 ", b"301  Moved  ", b"200", b"2000 OK", b"20 OK", b"500 Oh\tno", b"abc OK"]);

fn head(rng: &mut Rng, request: bool) -> Vec<u8> {
    let mut h = Vec::new();
    // Half the heads are built of usual pieces only, the rest may have an odd one anywhere.
    let clean = rng.below(2) == 0;
    if request {
        h.extend_from_slice(rng.pick(METHODS, clean));
        h.push(b' ');
        h.extend_from_slice(rng.pick(TARGETS, clean));
        h.push(b' ');
        h.extend_from_slice(rng.pick(VERSIONS, clean));
    } else {
        h.extend_from_slice(rng.pick(VERSIONS, clean));
        h.push(b' ');
        h.extend_from_slice(rng.pick(STATUS, clean));
    }
    h.extend_from_slice(rng.pick(ENDS, clean));
    for _ in 0..rng.below(6) {
        h.extend_from_slice(rng.pick(NAMES, clean));
        h.extend_from_slice(rng.pick(SEPARATORS, clean));
        h.extend_from_slice(rng.pick(VALUES, clean));
        h.extend_from_slice(rng.pick(ENDS, clean));
    }
    h.extend_from_slice(rng.pick(ENDS, clean));
    h.extend_from_slice(b"body");
    h
}

/// Every head the strict pass takes, httparse takes too and reads the same way, in whole and
/// cut short at every length (a cut head is never taken).
#[test]
fn agrees_with_httparse_on_random_heads() {
    let mut rng = Rng(0x5eed_f00d_4ead);
    let (mut taken, mut clean) = (0, 0);
    for _ in 0..4000 {
        let is_request = rng.below(2) == 0;
        let h = head(&mut rng, is_request);
        for cut in (1..=h.len()).rev() {
            let buf = &h[..cut];
            let mut fast = Vec::new();
            let Some(line) = (if is_request { request(buf, &mut fast) } else { response(buf, &mut fast) }) else { continue };
            taken += 1;
            clean += usize::from(cut == h.len());
            let mut slow = Vec::new();
            let full = general(buf, &mut slow, is_request).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(buf))).expect("httparse: complete");
            let what = String::from_utf8_lossy(buf);
            assert_eq!((line.len, line.method, line.target, line.status, line.minor), (full.len, full.method, full.target, full.status, full.minor), "{what:?}");
            assert_eq!(fast, slow, "{what:?}");
            assert!(full.crlf, "{what:?}");
        }
    }
    // The strict pass ran on a good share of the heads, and only ever on whole ones (the body
    // follows the head here, so a cut that still holds a whole head is taken too).
    assert!(clean > 1000, "{clean} whole heads taken");
    assert!(taken < clean * 6, "{taken} taken, {clean} whole");
}

#[test]
fn usual_heads_are_taken() {
    let mut f = Vec::new();
    let r = b"GET /x HTTP/1.1\r\nHost: a:80\r\nAccept: */*   \r\n\r\n";
    let line = request(r, &mut f).unwrap();
    assert_eq!((line.len, line.method, line.target, line.minor), (r.len(), 0..3, 4..6, 1));
    assert_eq!(f, vec![(17..21, 23..27), (29..35, 37..40)]);
    f.clear();
    let r = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\nrest";
    let line = response(r, &mut f).unwrap();
    assert_eq!((line.len, line.target, line.status, line.minor), (r.len() - 4, 13..32, 503, 0));
    // Long values cross the eight-byte steps; a byte past 0x7e anywhere in them is not taken.
    let mut long = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    long.extend_from_slice(&[b'a'; 37]);
    long.extend_from_slice(b"\r\n\r\n");
    assert!(response(&long, &mut Vec::new()).is_some());
    for at in 20..57 {
        let mut odd = long.clone();
        odd[at] = 0x80;
        assert!(response(&odd, &mut Vec::new()).is_none(), "{at}");
        odd[at] = 0x7f;
        assert!(response(&odd, &mut Vec::new()).is_none(), "{at}");
        odd[at] = 0x1f;
        assert!(response(&odd, &mut Vec::new()).is_none(), "{at}");
    }
}
