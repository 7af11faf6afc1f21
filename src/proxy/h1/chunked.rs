//! Finds where a chunked body ends without decoding it: the proxy forwards the chunk framing as
//! it came, and only needs to know how many bytes belong to this message (trailers included).

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size,
    /// After the size: extensions up to CRLF.
    Ext,
    SizeLf,
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines, ended by an empty line.
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed chunked body: {0}")]
pub struct ChunkError(&'static str);

#[derive(Debug)]
pub struct ChunkedScanner {
    state: State,
    size: u64,
    digits: u8,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        ChunkedScanner { state: State::Size, size: 0, digits: 0 }
    }
}

impl ChunkedScanner {
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes bytes of the body; returns how many belong to it (all of `buf` unless the body
    /// ends inside it).
    pub fn scan(&mut self, buf: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                // Skip chunk data in one step instead of byte by byte.
                let take = left.min((buf.len() - i) as u64) as usize;
                i += take;
                self.state = if left == take as u64 { State::DataCr } else { State::Data(left - take as u64) };
                continue;
            }
            let b = buf[i];
            i += 1;
            self.state = match (self.state, b) {
                (State::Size, b) if b.is_ascii_hexdigit() => {
                    self.digits += 1;
                    if self.digits > 15 {
                        return Err(ChunkError("chunk size too large"));
                    }
                    self.size = self.size * 16 + (b as char).to_digit(16).unwrap_or(0) as u64;
                    State::Size
                }
                (State::Size, b';' | b' ' | b'\t') if self.digits > 0 => State::Ext,
                (State::Size, b'\r') if self.digits > 0 => State::SizeLf,
                (State::Size, _) => return Err(ChunkError("bad chunk size")),
                (State::Ext, b'\r') => State::SizeLf,
                (State::Ext, b'\n') => return Err(ChunkError("bare LF after chunk size")),
                (State::Ext, _) => State::Ext,
                (State::SizeLf, b'\n') => {
                    let size = std::mem::take(&mut self.size);
                    self.digits = 0;
                    if size == 0 { State::TrailerStart } else { State::Data(size) }
                }
                (State::SizeLf, _) => return Err(ChunkError("expected LF after chunk size")),
                (State::DataCr, b'\r') => State::DataLf,
                (State::DataCr, _) => return Err(ChunkError("expected CR after chunk data")),
                (State::DataLf, b'\n') => State::Size,
                (State::DataLf, _) => return Err(ChunkError("expected LF after chunk data")),
                // Bare LFs are refused: some servers end lines on them, others do not, and that
                // difference is a desync (a smuggled request inside "trailers").
                (State::TrailerStart, b'\r') => State::EndLf,
                (State::TrailerStart, b'\n') => return Err(ChunkError("bare LF in trailers")),
                (State::TrailerStart, _) => State::TrailerLine,
                (State::TrailerLine, b'\r') => State::TrailerLf,
                (State::TrailerLine, b'\n') => return Err(ChunkError("bare LF in trailers")),
                (State::TrailerLine, _) => State::TrailerLine,
                (State::TrailerLf, b'\n') => State::TrailerStart,
                (State::TrailerLf, _) => return Err(ChunkError("expected LF after trailer")),
                (State::EndLf, b'\n') => {
                    self.state = State::Done;
                    return Ok(i);
                }
                (State::EndLf, _) => return Err(ChunkError("expected LF at end of body")),
                // Data is consumed in bulk above and the loop stops at Done.
                (State::Data(_), _) | (State::Done, _) => return Err(ChunkError("internal scanner state")),
            };
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_end_across_splits() {
        let body = b"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nx-trailer: 1\r\n\r\nNEXT";
        for split in 0..body.len() {
            let mut s = ChunkedScanner::default();
            let a = s.scan(&body[..split]).unwrap();
            let b = if s.is_done() { 0 } else { s.scan(&body[split..]).unwrap() };
            assert!(s.is_done(), "split {split}");
            assert_eq!(a + b, body.len() - 4);
            assert_eq!(s.scan(b"more").unwrap(), 0);
        }
    }

    #[test]
    fn rejects_garbage() {
        assert!(ChunkedScanner::default().scan(b"zz\r\n").is_err());
        assert!(ChunkedScanner::default().scan(b"3\r\nabcX").is_err());
        assert!(ChunkedScanner::default().scan(b"ffffffffffffffffff\r\n").is_err());
        assert!(ChunkedScanner::default().scan(b"0\r\n\nGET /smuggled HTTP/1.1\r\n\r\n").is_err());
        assert!(ChunkedScanner::default().scan(b"0\r\nx: 1\nGET / HTTP/1.1\r\n\r\n").is_err());
    }
}
