//! The chunked-body scanner: finds where a chunked body (trailers included) ends in bytes from a
//! client or an endpoint, without decoding it. Its answer must not depend on how the bytes
//! arrive (TCP splits them anywhere): scanned whole or in pieces of any size, the same count is
//! taken and the same error raised, and nothing is taken once the body has ended.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weft::fuzzing::{ChunkError, ChunkedScanner};

/// Scans `body` in pieces of `step` bytes: bytes taken, done, and the first error.
fn scan(body: &[u8], step: usize) -> (usize, bool, Option<ChunkError>) {
    let mut s = ChunkedScanner::default();
    let mut taken = 0;
    for piece in body.chunks(step) {
        match s.scan(piece) {
            Ok(n) => {
                assert!(n <= piece.len(), "took {n} of a {}-byte piece", piece.len());
                taken += n;
                if s.is_done() {
                    assert_eq!(s.scan(b"0\r\n\r\n"), Ok(0), "a finished body takes no more bytes");
                    return (taken, true, None);
                }
                assert_eq!(n, piece.len(), "an unfinished body takes every byte");
            }
            Err(e) => return (taken, false, Some(e)),
        }
    }
    (taken, false, None)
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the piece size (1 to 16), the rest is the body.
    let Some((&pick, body)) = data.split_first() else { return };
    let whole = scan(body, body.len().max(1));
    let split = scan(body, usize::from(pick % 16) + 1);
    // `taken` differs only in when an error is seen, not whether: compare it on success.
    assert_eq!((whole.1, &whole.2), (split.1, &split.2));
    if whole.2.is_none() {
        assert_eq!(whole.0, split.0);
    }
    if whole.1 {
        // The last chunk's CRLF then the empty line after the trailers.
        assert!(body[..whole.0].ends_with(b"\r\n\r\n"), "ended after {:?}", &body[..whole.0]);
    }
});
