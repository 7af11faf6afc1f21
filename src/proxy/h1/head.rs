//! HTTP/1.1 message heads: parsed in place (header positions, not copies), framing decided per
//! RFC 9112 §6, and written onward with the connection-scoped headers left out.

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::BytesMut;

use super::scan::{self, Line};

/// Larger heads are refused (431); the figure matches common server defaults.
pub const MAX_HEAD: usize = 64 * 1024;
/// At most 255: a [`Head`] keeps its `Host` field's index in a byte.
pub(super) const MAX_HEADERS: usize = 128;
/// Fields whose recognised name a head keeps; later ones are recognised again when needed.
const NAMED: usize = 16;
/// Fields with a bit in [`Head::special`]; later ones are always looked at.
const MARKED: usize = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Length(u64),
    Chunked,
    /// Only responses: the body runs until the upstream closes.
    UntilClose,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed HTTP head: {0}")]
    Malformed(String),
    #[error("HTTP head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("{0}")]
    Framing(&'static str),
}

/// A parsed head whose parts are positions in the buffer it came from.
#[derive(Debug, Clone)]
pub struct Head {
    /// Bytes the head occupies at the front of the buffer.
    pub len: usize,
    /// Request method, or empty for responses.
    pub method: Span,
    /// Request target, or the reason phrase for responses.
    pub target: Span,
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub fields: Vec<Field>,
    /// Which of `fields` is the (last) `Host`, and how many there were (saturating).
    host: Option<u8>,
    hosts: u8,
    /// A `Connection` field names other fields as hop-by-hop (not just close/keep-alive/upgrade).
    names_fields: bool,
    /// Every field line and the blank line end in CRLF (httparse also accepts a bare LF), so kept
    /// lines can be copied onward as they are.
    crlf: bool,
    /// Bit i (for the first [`MARKED`] fields): field i has one of the names the proxy acts on
    /// ([`Name`] other than `Other`), so the passes after parsing look at the names of only those.
    special: u64,
    /// The names of the first [`NAMED`] fields, as recognised while parsing.
    names: [Name; NAMED],
    pub body: BodyKind,
    /// The sender will close (or, for HTTP/1.0, did not ask to keep the connection).
    pub close: bool,
    pub upgrade: bool,
    pub expect_continue: bool,
}

/// A part of a head (method, target, reason), as positions in its buffer: half the size of a
/// `Range<usize>`, which keeps a [`Head`] small enough to move without a `memcpy` call (it is
/// moved a dozen times per request, up through the futures that parse and return it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: u32,
    end: u32,
}

impl Span {
    fn of(r: Range<usize>) -> Span {
        Span { start: r.start as u32, end: r.end as u32 }
    }

    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start as usize..self.end as usize]
    }
}

/// A field's name and value, as positions in the buffer.
pub(super) type Field = (Range<usize>, Range<usize>);

thread_local! {
    /// Field vectors of dropped heads, for the next heads parsed on this thread. Two heads are
    /// parsed per request, and allocating and freeing their vectors was ~4 % of the per-request
    /// instructions.
    static SPARE: RefCell<Vec<Vec<Field>>> = const { RefCell::new(Vec::new()) };
}

impl Drop for Head {
    fn drop(&mut self) {
        let mut fields = std::mem::take(&mut self.fields);
        if fields.capacity() == 0 || fields.capacity() > MAX_HEADERS {
            return;
        }
        fields.clear();
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < 64 {
                s.push(fields);
            }
        });
    }
}

/// Where `part` (a slice httparse returned) lies in `buf`. httparse hands back a static empty
/// string for an absent reason phrase, which lies nowhere in `buf`: that is an empty range.
fn pos(buf: &[u8], part: &[u8]) -> Range<usize> {
    match (part.as_ptr() as usize).checked_sub(buf.as_ptr() as usize) {
        Some(start) if !part.is_empty() && start + part.len() <= buf.len() => start..start + part.len(),
        _ => 0..0,
    }
}

/// The length of a complete head, `None` while more bytes may complete it.
fn head_len(parsed: httparse::Result<usize>, buffered: usize) -> Result<Option<usize>, HeadError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) => Ok(Some(n)),
        Ok(httparse::Status::Partial) if buffered > MAX_HEAD => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(HeadError::Malformed(e.to_string())),
    }
}

/// A field vector from a dropped head, or a new one.
fn spare() -> Vec<Field> {
    SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten().unwrap_or_default()
}

/// A head's start line and fields: the strict scan for the usual shape, httparse for the rest.
fn parse(buf: &[u8], request: bool) -> Result<Option<(Line, Vec<Field>)>, HeadError> {
    let mut fields = spare();
    let scanned = if request { scan::request(buf, &mut fields) } else { scan::response(buf, &mut fields) };
    let line = match scanned {
        Some(line) => line,
        None => match general(buf, &mut fields, request)? {
            Some(line) => line,
            None => return Ok(None),
        },
    };
    Ok(Some((line, fields)))
}

/// httparse, for every head [`scan`] does not take: bare LF line ends, tabs, obs-text, empty
/// values, incomplete and malformed heads. Fills `fields` (cleared first) when complete.
pub(super) fn general(buf: &[u8], fields: &mut Vec<Field>, request: bool) -> Result<Option<Line>, HeadError> {
    // Uninitialised slots: zeroing 128 of them (4 KiB) per message was a measurable share of
    // the per-request CPU, and httparse writes every slot it hands back.
    let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    let (parsed, line, headers) = if request {
        let mut req = httparse::Request::new(&mut []);
        let parsed = req.parse_with_uninit_headers(buf, &mut slots);
        let (method, path) = (req.method.unwrap_or(""), req.path.unwrap_or(""));
        let line = Line { len: 0, method: pos(buf, method.as_bytes()), target: pos(buf, path.as_bytes()), status: 0, minor: req.version.unwrap_or(1), crlf: false };
        (parsed, line, req.headers)
    } else {
        let mut resp = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut slots);
        let reason = resp.reason.unwrap_or("");
        let line = Line { len: 0, method: 0..0, target: pos(buf, reason.as_bytes()), status: resp.code.unwrap_or(0), minor: resp.version.unwrap_or(1), crlf: false };
        (parsed, line, resp.headers)
    };
    let Some(len) = head_len(parsed, buf.len())? else { return Ok(None) };
    fields.clear();
    fields.extend(headers.iter().map(|h| (pos(buf, h.name.as_bytes()), pos(buf, h.value))));
    let crlf = buf[..len].ends_with(b"\r\n\r\n") && fields.iter().skip(1).all(|(n, _)| n.start >= 2 && &buf[n.start - 2..n.start] == b"\r\n");
    Ok(Some(Line { len, crlf, ..line }))
}

/// Methods whose repetition is harmless (RFC 9110 §9.2.2), so a request may be sent again.
pub fn idempotent(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE" | "PUT" | "DELETE")
}

fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

fn has_token(value: &[u8], token: &[u8]) -> bool {
    tokens(value).any(|t| t.eq_ignore_ascii_case(token))
}

/// The header names the proxy acts on. Recognised by length first, so most names cost one
/// comparison or none; comparing every field with every name was the largest single item of
/// the per-request CPU.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Name {
    Other,
    Host,
    Connection,
    ContentLength,
    TransferEncoding,
    Expect,
    Upgrade,
    Te,
    /// Hop-by-hop whatever `Connection` says: keep-alive, proxy-connection, proxy-authenticate,
    /// proxy-authorization.
    Hop,
}

/// `a` equals `k` ignoring ASCII case, where `k` is lowercase letters, digits and '-'. Setting
/// bit 5 maps exactly an upper- and lowercase letter onto `k`'s letter; the only other byte it
/// could map onto a digit or '-' is a control character, which no field name or value holds.
/// Eight bytes or more are compared a word at a time (the last word overlapping). Written out:
/// the std comparison, called out of line, took ~190 instructions for `keep-alive`, and the same
/// words through `step_by(8).chain(..).all(..)` ~65.
#[inline]
fn lower_eq(a: &[u8], k: &[u8]) -> bool {
    let n = k.len();
    if a.len() != n {
        return false;
    }
    if n < 8 {
        return a.iter().zip(k).all(|(a, b)| a | 0x20 == *b);
    }
    let word = |s: &[u8], i: usize| s[i..i + 8].try_into().map_or(0, u64::from_le_bytes);
    let mut i = 0;
    while i + 8 < n {
        if word(a, i) | 0x2020_2020_2020_2020 != word(k, i) {
            return false;
        }
        i += 8;
    }
    word(a, n - 8) | 0x2020_2020_2020_2020 == word(k, n - 8)
}

fn name_of(name: &[u8]) -> Name {
    let is = |k: &[u8]| lower_eq(name, k);
    // Length and first letter rule out nearly every other name before any comparison.
    match (name.len(), name.first().map_or(0, u8::to_ascii_lowercase)) {
        (2, b't') if is(b"te") => Name::Te,
        (4, b'h') if is(b"host") => Name::Host,
        (6, b'e') if is(b"expect") => Name::Expect,
        (7, b'u') if is(b"upgrade") => Name::Upgrade,
        (10, b'c') if is(b"connection") => Name::Connection,
        (10, b'k') if is(b"keep-alive") => Name::Hop,
        (14, b'c') if is(b"content-length") => Name::ContentLength,
        (16, b'p') if is(b"proxy-connection") => Name::Hop,
        (17, b't') if is(b"transfer-encoding") => Name::TransferEncoding,
        (18, b'p') if is(b"proxy-authenticate") => Name::Hop,
        (19, b'p') if is(b"proxy-authorization") => Name::Hop,
        _ => Name::Other,
    }
}

impl Head {
    pub fn method<'a>(&self, buf: &'a [u8]) -> &'a str {
        match self.method.get(buf) {
            b"GET" => "GET",
            b"POST" => "POST",
            b"HEAD" => "HEAD",
            b"PUT" => "PUT",
            b"DELETE" => "DELETE",
            other => std::str::from_utf8(other).unwrap_or(""),
        }
    }

    pub fn target<'a>(&self, buf: &'a [u8]) -> &'a str {
        std::str::from_utf8(self.target.get(buf)).unwrap_or("")
    }

    /// The `Host` field's value (a request has exactly one; see [`Head::request`]).
    pub fn host<'a>(&self, buf: &'a [u8]) -> Option<&'a [u8]> {
        self.host.map(|i| &buf[self.fields[usize::from(i)].1.clone()])
    }

    /// Parses a request head at the front of `buf`; `None` when more bytes are needed.
    pub fn request(buf: &[u8]) -> Result<Option<Head>, HeadError> {
        let Some((line, fields)) = parse(buf, true)? else { return Ok(None) };
        let minor = line.minor;
        let mut head = Head::new(line, fields, buf);
        head.body = head.framing(buf, true)?;
        // RFC 9112 §3.2: exactly one Host in HTTP/1.1; two would let weft and the endpoint
        // disagree about where the request goes.
        if head.hosts > 1 || (head.hosts == 0 && minor == 1) {
            return Err(HeadError::Framing(if head.hosts > 1 { "more than one host header" } else { "HTTP/1.1 request without a host header" }));
        }
        Ok(Some(head))
    }

    /// Parses a response head; `request_method` decides whether a body may follow (HEAD: never).
    pub fn response(buf: &[u8], request_method: &[u8]) -> Result<Option<Head>, HeadError> {
        let Some((line, fields)) = parse(buf, false)? else { return Ok(None) };
        let code = line.status;
        let mut head = Head::new(line, fields, buf);
        head.body = if request_method == b"HEAD" || (100..200).contains(&code) || code == 204 || code == 304 {
            BodyKind::Empty
        } else {
            head.framing(buf, false)?
        };
        Ok(Some(head))
    }

    fn new(line: Line, fields: Vec<Field>, buf: &[u8]) -> Head {
        let mut head = Head {
            len: line.len,
            method: Span::of(line.method),
            target: Span::of(line.target),
            status: line.status,
            minor: line.minor,
            fields,
            host: None,
            hosts: 0,
            names_fields: false,
            crlf: line.crlf,
            special: 0,
            names: [Name::Other; NAMED],
            body: BodyKind::Empty,
            close: line.minor == 0,
            upgrade: false,
            expect_continue: false,
        };
        for (i, (n, v)) in head.fields.iter().enumerate() {
            let name = name_of(&buf[n.clone()]);
            if name == Name::Other {
                continue;
            }
            if i < MARKED {
                head.special |= 1 << i;
                if let Some(slot) = head.names.get_mut(i) {
                    *slot = name;
                }
            }
            let value = &buf[v.clone()];
            match name {
                Name::Host => {
                    head.host = Some(i as u8);
                    head.hosts = head.hosts.saturating_add(1);
                }
                Name::Connection => {
                    for t in tokens(value) {
                        if lower_eq(t, b"close") {
                            head.close = true;
                        } else if lower_eq(t, b"keep-alive") {
                            head.close = false;
                        } else if lower_eq(t, b"upgrade") {
                            head.upgrade = true;
                        } else if !t.is_empty() {
                            head.names_fields = true;
                        }
                    }
                }
                Name::Expect if has_token(value, b"100-continue") => head.expect_continue = true,
                _ => {}
            }
        }
        head
    }

    /// The fields with a name the proxy acts on, in order, and every field past the marked ones.
    fn specials(&self) -> impl Iterator<Item = usize> {
        let mut bits = self.special;
        let marked = std::iter::from_fn(move || {
            (bits != 0).then(|| {
                let i = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                i
            })
        });
        marked.chain(MARKED..self.fields.len().max(MARKED))
    }

    /// What field `i` (named at `n`) is, from the record made while parsing.
    fn name(&self, buf: &[u8], i: usize, n: &Range<usize>) -> Name {
        match self.names.get(i) {
            _ if i < MARKED && self.special & (1 << i) == 0 => Name::Other,
            Some(name) => *name,
            None => name_of(&buf[n.clone()]),
        }
    }

    /// Message framing; ambiguous framing is refused outright, since a proxy that reads it one
    /// way while the endpoint reads it another is how requests get smuggled.
    fn framing(&self, buf: &[u8], request: bool) -> Result<BodyKind, HeadError> {
        let mut length: Option<u64> = None;
        let mut chunked = false;
        let mut encoded = false;
        for i in self.specials() {
            let (n, v) = &self.fields[i];
            let (name, value) = (self.name(buf, i, n), &buf[v.clone()]);
            if name == Name::TransferEncoding {
                encoded = true;
                let last = value.rsplit(|b| *b == b',').next().unwrap_or(b"").trim_ascii();
                chunked = lower_eq(last, b"chunked");
            } else if name == Name::ContentLength {
                // Digits only: `+5` or exotic whitespace parse here but maybe not at the endpoint.
                let digits = value.trim_ascii();
                if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::Framing("content-length is not a number"));
                }
                // At most 19 digits: fits in a u64.
                let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Framing("conflicting content-length headers"));
                }
                length = Some(n);
            }
        }
        match (encoded, chunked, length) {
            (true, _, Some(_)) => Err(HeadError::Framing("both transfer-encoding and content-length")),
            (true, true, None) => Ok(BodyKind::Chunked),
            (true, false, None) if request => Err(HeadError::Framing("request transfer-encoding must end in chunked")),
            (true, false, None) => Ok(BodyKind::UntilClose),
            (false, _, Some(0)) => Ok(BodyKind::Empty),
            (false, _, Some(n)) => Ok(BodyKind::Length(n)),
            (false, _, None) if request => Ok(BodyKind::Empty),
            (false, _, None) => Ok(BodyKind::UntilClose),
        }
    }

    /// Writes the head onward: start line as HTTP/1.1, every field except the ones that only
    /// describe the hop we came in on; `extra` fields are appended (e.g. `connection: close`).
    pub fn write_to(&self, buf: &[u8], out: &mut Vec<u8>, request: bool, extra: &[&str]) {
        if request {
            out.extend_from_slice(self.method.get(buf));
            out.push(b' ');
            out.extend_from_slice(self.target.get(buf));
            // The client's own version: an HTTP/1.0 client must not be sent chunked responses,
            // and an endpoint only chunks for an HTTP/1.1 request.
            out.extend_from_slice(if self.minor == 0 { b" HTTP/1.0\r\n" } else { b" HTTP/1.1\r\n" });
        } else {
            out.extend_from_slice(b"HTTP/1.1 ");
            // httparse accepts exactly three digits.
            let s = self.status;
            out.extend_from_slice(&[b'0' + (s / 100 % 10) as u8, b'0' + (s / 10 % 10) as u8, b'0' + (s % 10) as u8]);
            out.push(b' ');
            out.extend_from_slice(self.target.get(buf));
            out.extend_from_slice(b"\r\n");
        }
        let end = if buf[..self.len].ends_with(b"\r\n\r\n") { self.len - 2 } else { 0 };
        // Unless `Connection` names other fields to drop (and they are dropped: no upgrade), only
        // fields with a recognised name can be dropped: copy the runs between those.
        let only_named_dropped = self.upgrade || !self.names_fields;
        if self.crlf && only_named_dropped {
            let mut from = self.fields.first().map_or(end, |(n, _)| n.start);
            for i in self.specials() {
                let (n, v) = &self.fields[i];
                if self.skip(buf, i, n, v) {
                    out.extend_from_slice(&buf[from..n.start]);
                    from = self.fields.get(i + 1).map_or(end, |(next, _)| next.start);
                }
            }
            out.extend_from_slice(&buf[from..end]);
        } else {
            self.write_fields(buf, out, end);
        }
        for e in extra {
            out.extend_from_slice(e.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Whether field `i` stays behind: it only describes the hop it came in on.
    fn skip(&self, buf: &[u8], i: usize, n: &Range<usize>, v: &Range<usize>) -> bool {
        match self.name(buf, i, n) {
            Name::Hop => true,
            // An upgrade (WebSocket) needs its Connection/Upgrade fields to reach the endpoint.
            Name::Connection | Name::Upgrade => !self.upgrade,
            Name::Te => !buf[v.clone()].trim_ascii().eq_ignore_ascii_case(b"trailers"),
            // Framing and routing fields stay even if `Connection` names them: dropping them
            // would forward a body without its length, which is how requests get smuggled.
            Name::ContentLength | Name::TransferEncoding | Name::Host => false,
            // Only a `Connection` field naming other fields makes a search per field necessary.
            Name::Other | Name::Expect => {
                !self.upgrade
                    && self.names_fields
                    && self.fields.iter().enumerate().any(|(j, (cn, cv))| self.name(buf, j, cn) == Name::Connection && has_token(&buf[cv.clone()], &buf[n.clone()]))
            }
        }
    }

    /// The fields one by one, for a head with bare-LF lines or a `Connection` field naming
    /// others: kept lines that end in CRLF are still copied in runs, the others written anew.
    fn write_fields(&self, buf: &[u8], out: &mut Vec<u8>, end: usize) {
        let mut run: Option<usize> = None;
        for (i, (n, v)) in self.fields.iter().enumerate() {
            let skip = self.skip(buf, i, n, v);
            let line_end = self.fields.get(i + 1).map_or(end, |(next, _)| next.start);
            let whole_line = line_end >= v.end + 2 && &buf[line_end - 2..line_end] == b"\r\n";
            if !skip && whole_line {
                run.get_or_insert(n.start);
                continue;
            }
            if let Some(start) = run.take() {
                out.extend_from_slice(&buf[start..n.start]);
            }
            if !skip {
                out.extend_from_slice(&buf[n.clone()]);
                out.extend_from_slice(b": ");
                out.extend_from_slice(&buf[v.clone()]);
                out.extend_from_slice(b"\r\n");
            }
        }
        if let Some(start) = run {
            out.extend_from_slice(&buf[start..end]);
        }
    }
}

/// Keeps a buffer's unread bytes contiguous and room to read into.
pub fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(16 * 1024);
    }
}

#[cfg(test)]
mod tests;
