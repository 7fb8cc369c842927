//! A read-side observer of each client connection that catches what hyper tolerates.
//!
//! hyper parses requests strictly (obsolete line folding, invalid `Content-Length`,
//! non-chunked `Transfer-Encoding` are its 400s), but it resolves two smuggling shapes
//! silently: `Content-Length` together with `Transfer-Encoding` (it drops the length) and
//! repeated identical `Content-Length` lines (it keeps one). A proxy must refuse both, and
//! hyper's own header-size errors cannot name our setting. So every byte hyper reads passes
//! through [`Sniffed`] first, which follows HTTP/1.1 framing (request heads, fixed-length
//! and chunked bodies) and flags the connection when a head breaks a rule. hyper hands a
//! request to the service only after reading its whole head, so by then the flag for that
//! head is set; the service refuses flagged connections (and closes them) before anything
//! is forwarded. Once flagged, the observer stops following the stream.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What the observer found; `None` while every head so far was acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Flag {
    None = 0,
    ContentLengthAndTransferEncoding = 1,
    DuplicateContentLength = 2,
    HeadersTooLarge = 3,
    TooManyHeaders = 4,
    ObsoleteFolding = 5,
    Malformed = 6,
}

impl Flag {
    fn from_u8(v: u8) -> Flag {
        match v {
            1 => Flag::ContentLengthAndTransferEncoding,
            2 => Flag::DuplicateContentLength,
            3 => Flag::HeadersTooLarge,
            4 => Flag::TooManyHeaders,
            5 => Flag::ObsoleteFolding,
            6 => Flag::Malformed,
            _ => Flag::None,
        }
    }

    /// (status, client-safe message).
    pub fn refusal(self) -> (u16, &'static str) {
        match self {
            Flag::None => (200, ""),
            Flag::ContentLengthAndTransferEncoding => (400, "warden: the request has both Content-Length and Transfer-Encoding (request smuggling shape); refused, nothing was forwarded"),
            Flag::DuplicateContentLength => (400, "warden: the request repeats Content-Length; refused, nothing was forwarded"),
            Flag::HeadersTooLarge => (431, "warden: the request line and headers exceed http.limits.max_header_bytes"),
            Flag::TooManyHeaders => (431, "warden: the request has more headers than http.limits.max_headers"),
            Flag::ObsoleteFolding => (400, "warden: the request uses obsolete header line folding; refused"),
            Flag::Malformed => (400, "warden: the request framing is malformed; refused"),
        }
    }
}

/// Shared between the observer and the request handler of one connection.
#[derive(Debug, Default)]
pub struct ConnFlag(AtomicU8);

impl ConnFlag {
    pub fn get(&self) -> Flag {
        Flag::from_u8(self.0.load(Ordering::Acquire))
    }
    fn set(&self, f: Flag) {
        let _ = self.0.compare_exchange(0, f as u8, Ordering::AcqRel, Ordering::Acquire);
    }
}

#[derive(Debug)]
enum State {
    Head,
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd(u8),
    Trailers,
    Stopped,
}

struct Observer {
    state: State,
    line: Vec<u8>,
    head_bytes: usize,
    headers: usize,
    first_line: bool,
    content_lengths: Vec<u64>,
    te: bool,
    max_head: usize,
    max_headers: usize,
    flag: Arc<ConnFlag>,
}

impl Observer {
    fn stop(&mut self, f: Flag) {
        self.flag.set(f);
        self.state = State::Stopped;
    }

    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Body(n) => {
                    let take = (n as usize).min(data.len()) as u64;
                    data = &data[take as usize..];
                    self.state = if n == take { self.reset_head() } else { State::Body(n - take) };
                }
                State::ChunkData(n) => {
                    let take = (n.min(data.len() as u64)) as usize;
                    data = &data[take..];
                    self.state = if n == take as u64 { State::ChunkDataEnd(0) } else { State::ChunkData(n - take as u64) };
                }
                State::ChunkDataEnd(seen) => {
                    // CRLF after chunk data (LF alone tolerated, as hyper does not: it then errors).
                    let c = data[0];
                    data = &data[1..];
                    match (seen, c) {
                        (0, b'\r') => self.state = State::ChunkDataEnd(1),
                        (_, b'\n') => self.state = State::ChunkSize,
                        _ => return self.stop(Flag::Malformed),
                    }
                }
                State::Head | State::ChunkSize | State::Trailers => {
                    let Some(nl) = data.iter().position(|&c| c == b'\n') else {
                        self.push_line_bytes(data);
                        return;
                    };
                    self.push_line_bytes(&data[..nl]);
                    data = &data[nl + 1..];
                    if matches!(self.state, State::Stopped) {
                        return;
                    }
                    let mut line = std::mem::take(&mut self.line);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    self.line_done(&line);
                    line.clear();
                    self.line = line;
                }
            }
        }
    }

    fn push_line_bytes(&mut self, b: &[u8]) {
        if matches!(self.state, State::Head) {
            self.head_bytes += b.len() + 1;
            if self.head_bytes > self.max_head {
                return self.stop(Flag::HeadersTooLarge);
            }
        } else if self.line.len() + b.len() > 64 * 1024 {
            return self.stop(Flag::Malformed);
        }
        self.line.extend_from_slice(b);
    }

    fn reset_head(&mut self) -> State {
        self.head_bytes = 0;
        self.headers = 0;
        self.first_line = true;
        self.content_lengths.clear();
        self.te = false;
        State::Head
    }

    fn line_done(&mut self, line: &[u8]) {
        match self.state {
            State::Head => {
                if self.first_line {
                    if !line.is_empty() {
                        self.first_line = false;
                    }
                    return;
                }
                if line.is_empty() {
                    return self.end_of_head();
                }
                if line[0] == b' ' || line[0] == b'\t' {
                    return self.stop(Flag::ObsoleteFolding);
                }
                self.headers += 1;
                if self.headers > self.max_headers {
                    return self.stop(Flag::TooManyHeaders);
                }
                let Some(colon) = line.iter().position(|&c| c == b':') else { return self.stop(Flag::Malformed) };
                let name = &line[..colon];
                let value = std::str::from_utf8(&line[colon + 1..]).unwrap_or("").trim();
                if name.eq_ignore_ascii_case(b"content-length") {
                    match value.parse::<u64>() {
                        Ok(n) if value.bytes().all(|c| c.is_ascii_digit()) => self.content_lengths.push(n),
                        _ => self.stop(Flag::Malformed),
                    }
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    self.te = true;
                }
            }
            State::ChunkSize => {
                let s = std::str::from_utf8(line).unwrap_or("");
                let size = s.split(';').next().unwrap_or("").trim();
                match u64::from_str_radix(size, 16) {
                    Ok(0) => self.state = State::Trailers,
                    Ok(n) => self.state = State::ChunkData(n),
                    Err(_) => self.stop(Flag::Malformed),
                }
            }
            State::Trailers => {
                if line.is_empty() {
                    self.state = self.reset_head();
                }
            }
            _ => {}
        }
    }

    fn end_of_head(&mut self) {
        if self.te && !self.content_lengths.is_empty() {
            return self.stop(Flag::ContentLengthAndTransferEncoding);
        }
        if self.content_lengths.len() > 1 {
            return self.stop(Flag::DuplicateContentLength);
        }
        self.state = if self.te {
            State::ChunkSize
        } else {
            match self.content_lengths.first() {
                Some(&n) if n > 0 => State::Body(n),
                _ => self.reset_head(),
            }
        };
        if matches!(self.state, State::ChunkSize | State::Body(_)) {
            // The next head starts fresh once the body ends.
            self.head_bytes = 0;
            self.headers = 0;
            self.first_line = true;
            self.content_lengths.clear();
            self.te = false;
        }
    }
}

/// A client stream whose reads are observed. Writes pass straight through.
pub struct Sniffed<S> {
    inner: S,
    obs: Observer,
}

impl<S> Sniffed<S> {
    pub fn new(inner: S, max_head: usize, max_headers: usize) -> (Self, Arc<ConnFlag>) {
        let flag = Arc::new(ConnFlag::default());
        let obs = Observer {
            state: State::Head,
            line: Vec::new(),
            head_bytes: 0,
            headers: 0,
            first_line: true,
            content_lengths: Vec::new(),
            te: false,
            max_head,
            max_headers,
            flag: flag.clone(),
        };
        (Sniffed { inner, obs }, flag)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Sniffed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &r {
            this.obs.feed(&buf.filled()[before..]);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Sniffed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Flag {
        let flag = Arc::new(ConnFlag::default());
        let mut o = Observer { state: State::Head, line: Vec::new(), head_bytes: 0, headers: 0, first_line: true, content_lengths: Vec::new(), te: false, max_head: 1024, max_headers: 10, flag: flag.clone() };
        for c in chunks {
            o.feed(c);
        }
        flag.get()
    }

    #[test]
    fn smuggling_shapes_are_flagged() {
        assert_eq!(run(&[b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]), Flag::ContentLengthAndTransferEncoding);
        assert_eq!(run(&[b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n"]), Flag::ContentLengthAndTransferEncoding);
        assert_eq!(run(&[b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"]), Flag::DuplicateContentLength);
        assert_eq!(run(&[b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"]), Flag::ObsoleteFolding);
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(run(&[big.as_bytes()]), Flag::HeadersTooLarge);
    }

    #[test]
    fn bodies_are_skipped_so_body_bytes_are_not_read_as_heads() {
        // The body of the first request looks like a smuggled head; it is a body.
        let body = b"GET /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let req = format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len());
        let mut all = req.into_bytes();
        all.extend_from_slice(body);
        all.extend_from_slice(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        // Byte by byte too: splits anywhere must not matter.
        assert_eq!(run(&[&all]), Flag::None);
        let singles: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(run(&singles), Flag::None);
        all.extend_from_slice(b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(run(&[&all]), Flag::DuplicateContentLength);
    }
}
