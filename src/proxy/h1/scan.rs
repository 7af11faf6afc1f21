//! One strict pass over the usual shape of an HTTP/1.1 head: CRLF line ends, one space between
//! the parts of the start line, printable ASCII everywhere. Every head it accepts is one httparse
//! accepts, read the same way (the tests compare the two on random heads); anything else — a bare
//! LF, a tab, obs-text, an empty value, a head not yet complete, a malformed one — returns `None`
//! and httparse decides. Parsing the two heads of a request was a third of weft's per-request
//! instructions, most of it in httparse's general machinery; this pass needs about a third of that.

use std::ops::Range;

use super::head::{Field, MAX_HEADERS};

/// A start line (and where the head ends), as positions in the buffer.
pub struct Line {
    /// Bytes the head occupies at the front of the buffer.
    pub len: usize,
    /// The method (requests; empty for responses).
    pub method: Range<usize>,
    /// The request target, or the reason phrase (empty when there is none).
    pub target: Range<usize>,
    pub status: u16,
    pub minor: u8,
    /// Every line ends in CRLF (always so here; httparse's path checks).
    pub crlf: bool,
}

/// Token characters (RFC 9110 §5.6.2), the only ones in a field name.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        b += 1;
    }
    t
};

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The first position at or after `i` whose byte is outside `low..=0x7e`, eight bytes at a time
/// (`low` at most 0x80). `None` when the buffer ends first.
fn stop(buf: &[u8], i: usize, low: u8) -> Option<usize> {
    let rest = buf.get(i..)?;
    let mut words = rest.chunks_exact(8);
    let mut at = i;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().ok()?);
        // A byte below `low` borrows into its top bit; a byte of 0x7f or more has it after adding
        // one. Borrows and carries only run upward from a flagged byte, so the lowest flag is exact.
        let below = x.wrapping_sub(ONES * u64::from(low)) & !x & HIGH;
        let above = (x.wrapping_add(ONES) | x) & HIGH;
        let flags = below | above;
        if flags != 0 {
            return Some(at + (flags.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    words.remainder().iter().position(|&b| b < low || b > 0x7e).map(|p| at + p)
}

/// `HTTP/1.0` or `HTTP/1.1`: the minor version.
fn version(part: &[u8]) -> Option<u8> {
    match part {
        b"HTTP/1.1" => Some(1),
        b"HTTP/1.0" => Some(0),
        _ => None,
    }
}

/// A request head: `METHOD SP target SP HTTP/1.x CRLF`, then the fields.
pub fn request(buf: &[u8], fields: &mut Vec<Field>) -> Option<Line> {
    let mut i = 0;
    while *buf.get(i)? != b' ' {
        if !buf[i].is_ascii_uppercase() {
            return None;
        }
        i += 1;
    }
    if i == 0 {
        return None;
    }
    let (method, from) = (0..i, i + 1);
    let end = stop(buf, from, 0x21)?;
    if end == from || buf[end] != b' ' || buf.get(end + 9..end + 11)? != b"\r\n" {
        return None;
    }
    let minor = version(&buf[end + 1..end + 9])?;
    let len = scan_fields(buf, end + 11, fields)?;
    Some(Line { len, method, target: from..end, status: 0, minor, crlf: true })
}

/// A response head: `HTTP/1.x SP 3DIGIT SP reason CRLF`, then the fields.
pub fn response(buf: &[u8], fields: &mut Vec<Field>) -> Option<Line> {
    let minor = version(buf.get(..8)?)?;
    let &[b' ', a, b, c, b' '] = buf.get(8..13)? else { return None };
    if ![a, b, c].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    let end = stop(buf, 13, 0x20)?;
    if buf.get(end..end + 2)? != b"\r\n" {
        return None;
    }
    let len = scan_fields(buf, end + 2, fields)?;
    // httparse hands back no reason at all for an empty one; the head reads both as `0..0`.
    let target = if end == 13 { 0..0 } else { 13..end };
    Some(Line { len, method: 0..0, target, status, minor, crlf: true })
}

/// `name: value CRLF` lines up to the blank line; the length of the whole head.
fn scan_fields(buf: &[u8], mut i: usize, fields: &mut Vec<Field>) -> Option<usize> {
    loop {
        if *buf.get(i)? == b'\r' {
            return (*buf.get(i + 1)? == b'\n').then_some(i + 2);
        }
        let name = i;
        let colon = i + buf[i..].iter().position(|&b| !TOKEN[usize::from(b)])?;
        if colon == name || buf[colon] != b':' {
            return None;
        }
        i = colon + 1 + buf[colon + 1..].iter().position(|&b| b != b' ')?;
        let end = stop(buf, i, 0x20)?;
        if end == i || buf[end] != b'\r' || *buf.get(end + 1)? != b'\n' || fields.len() == MAX_HEADERS {
            return None;
        }
        // Trailing spaces are not part of the value; the first byte is not one, so this stops.
        let mut last = end;
        while buf[last - 1] == b' ' {
            last -= 1;
        }
        fields.push((name..colon, i..last));
        i = end + 2;
    }
}

#[cfg(test)]
mod tests;
