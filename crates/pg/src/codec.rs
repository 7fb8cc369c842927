//! PostgreSQL wire framing (protocol 3.0). Frames are read and forwarded as raw bytes; only
//! the messages the gateway must understand are decoded. Knows nothing of policy.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

pub const PROTOCOL_3_0: i32 = 196_608;
pub const SSL_REQUEST: i32 = 80_877_103;
pub const GSSENC_REQUEST: i32 = 80_877_104;
pub const CANCEL_REQUEST: i32 = 80_877_102;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("message of {size} bytes exceeds limits.max_message_bytes ({limit})")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocol(i32),
}

fn malformed(what: &'static str) -> CodecError {
    CodecError::Malformed { what }
}

/// One tagged message: the tag byte and the body after the length word.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub tag: u8,
    pub body: Bytes,
}

impl fmt::Debug for Frame {
    // Bodies carry passwords, tokens and row data: never print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Frame({:?}, {} bytes)", self.tag as char, self.body.len())
    }
}

impl Frame {
    pub fn new(tag: u8, body: impl Into<Bytes>) -> Self {
        Frame { tag, body: body.into() }
    }

    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(5 + self.body.len());
        out.put_u8(self.tag);
        out.put_i32(self.body.len() as i32 + 4);
        out.extend_from_slice(&self.body);
    }

    pub fn encoded_len(&self) -> usize {
        5 + self.body.len()
    }
}

/// Splits one tagged frame off the front of `buf`, if a whole one is there.
pub fn split_frame(buf: &mut BytesMut, max_len: usize) -> Result<Option<Frame>, CodecError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(malformed("length word of a"));
    }
    let len = len as usize;
    if len > max_len {
        return Err(CodecError::TooLarge { size: len, limit: max_len });
    }
    if buf.len() < 1 + len {
        buf.reserve(1 + len - buf.len());
        return Ok(None);
    }
    let tag = buf[0];
    buf.advance(5);
    let body = buf.split_to(len - 4).freeze();
    Ok(Some(Frame { tag, body }))
}

/// The untagged first message of a connection.
#[derive(Clone, PartialEq, Eq)]
pub enum StartupPacket {
    Startup { params: Vec<(String, String)> },
    SslRequest,
    GssEncRequest,
    Cancel { process_id: i32, secret_key: i32 },
}

impl fmt::Debug for StartupPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartupPacket::Startup { params } => {
                let names: Vec<&str> = params.iter().map(|(k, _)| k.as_str()).collect();
                write!(f, "Startup({names:?})")
            }
            StartupPacket::SslRequest => f.write_str("SslRequest"),
            StartupPacket::GssEncRequest => f.write_str("GssEncRequest"),
            StartupPacket::Cancel { .. } => f.write_str("Cancel"),
        }
    }
}

/// Splits the untagged startup packet off `buf` (length word included in the length).
pub fn split_startup(buf: &mut BytesMut, max_len: usize) -> Result<Option<StartupPacket>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if !(8..=max_len.min(10_000) as i32).contains(&len) {
        return Err(malformed("startup"));
    }
    let len = len as usize;
    if buf.len() < len {
        return Ok(None);
    }
    let mut body = buf.split_to(len).freeze();
    body.advance(4);
    decode_startup(body).map(Some)
}

pub fn decode_startup(mut body: Bytes) -> Result<StartupPacket, CodecError> {
    if body.len() < 4 {
        return Err(malformed("startup"));
    }
    let code = body.get_i32();
    match code {
        SSL_REQUEST if body.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST if body.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST if body.len() == 8 => {
            Ok(StartupPacket::Cancel { process_id: body.get_i32(), secret_key: body.get_i32() })
        }
        PROTOCOL_3_0 => {
            let mut params = Vec::new();
            loop {
                let key = get_cstr(&mut body, "startup")?;
                if key.is_empty() {
                    break;
                }
                let value = get_cstr(&mut body, "startup")?;
                params.push((key, value));
            }
            if !body.is_empty() {
                return Err(malformed("startup"));
            }
            Ok(StartupPacket::Startup { params })
        }
        SSL_REQUEST | GSSENC_REQUEST | CANCEL_REQUEST => Err(malformed("startup")),
        other => Err(CodecError::UnsupportedProtocol(other)),
    }
}

fn get_cstr(body: &mut Bytes, what: &'static str) -> Result<String, CodecError> {
    let end = body.iter().position(|&b| b == 0).ok_or(malformed(what))?;
    let s = std::str::from_utf8(&body[..end]).map_err(|_| malformed(what))?.to_owned();
    body.advance(end + 1);
    Ok(s)
}

fn get_i16(body: &mut Bytes, what: &'static str) -> Result<i16, CodecError> {
    if body.remaining() < 2 {
        return Err(malformed(what));
    }
    Ok(body.get_i16())
}

fn get_i32(body: &mut Bytes, what: &'static str) -> Result<i32, CodecError> {
    if body.remaining() < 4 {
        return Err(malformed(what));
    }
    Ok(body.get_i32())
}

fn get_count(body: &mut Bytes, what: &'static str) -> Result<usize, CodecError> {
    let n = get_i16(body, what)?;
    usize::try_from(n).map_err(|_| malformed(what))
}

/// Frontend messages the gateway understands. Anything else is `Other` and is refused by
/// the session (fail closed), except the copy sub-protocol which it forwards.
#[derive(Clone, PartialEq, Eq)]
pub enum FrontendMessage {
    Query { sql: String },
    Parse { statement: String, sql: String, param_types: Vec<u32> },
    Bind { portal: String, statement: String, params: Vec<Option<Bytes>> },
    Describe { kind: u8, name: String },
    Execute { portal: String, max_rows: i32 },
    Close { kind: u8, name: String },
    Sync,
    Flush,
    Terminate,
    CopyData,
    CopyDone,
    CopyFail,
    /// 'p': password, SASL initial response or SASL response; only valid during authentication.
    Password(Bytes),
    /// 'F': the fast-path function call interface. Calls any function by OID: refused.
    FunctionCall,
    Other(u8),
}

impl fmt::Debug for FrontendMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrontendMessage::Query { .. } => f.write_str("Query"),
            FrontendMessage::Parse { statement, .. } => write!(f, "Parse({statement:?})"),
            FrontendMessage::Bind { portal, statement, params } => {
                write!(f, "Bind({portal:?}, {statement:?}, {} params)", params.len())
            }
            FrontendMessage::Describe { kind, name } => write!(f, "Describe({}, {name:?})", *kind as char),
            FrontendMessage::Execute { portal, max_rows } => write!(f, "Execute({portal:?}, {max_rows})"),
            FrontendMessage::Close { kind, name } => write!(f, "Close({}, {name:?})", *kind as char),
            FrontendMessage::Password(_) => f.write_str("Password(..)"),
            FrontendMessage::Other(t) => write!(f, "Other({:?})", *t as char),
            other => write!(f, "{}", frontend_name(other)),
        }
    }
}

fn frontend_name(m: &FrontendMessage) -> &'static str {
    match m {
        FrontendMessage::Sync => "Sync",
        FrontendMessage::Flush => "Flush",
        FrontendMessage::Terminate => "Terminate",
        FrontendMessage::CopyData => "CopyData",
        FrontendMessage::CopyDone => "CopyDone",
        FrontendMessage::CopyFail => "CopyFail",
        FrontendMessage::FunctionCall => "FunctionCall",
        _ => "Message",
    }
}

impl FrontendMessage {
    pub fn decode(frame: &Frame) -> Result<FrontendMessage, CodecError> {
        let mut b = frame.body.clone();
        let msg = match frame.tag {
            b'Q' => FrontendMessage::Query { sql: get_cstr(&mut b, "Query")? },
            b'P' => {
                let statement = get_cstr(&mut b, "Parse")?;
                let sql = get_cstr(&mut b, "Parse")?;
                let n = get_count(&mut b, "Parse")?;
                let mut param_types = Vec::with_capacity(n.min(b.remaining() / 4));
                for _ in 0..n {
                    param_types.push(get_i32(&mut b, "Parse")? as u32);
                }
                FrontendMessage::Parse { statement, sql, param_types }
            }
            b'B' => {
                let portal = get_cstr(&mut b, "Bind")?;
                let statement = get_cstr(&mut b, "Bind")?;
                let nformats = get_count(&mut b, "Bind")?;
                for _ in 0..nformats {
                    get_i16(&mut b, "Bind")?;
                }
                let nparams = get_count(&mut b, "Bind")?;
                let mut params = Vec::with_capacity(nparams.min(b.remaining() / 4));
                for _ in 0..nparams {
                    let len = get_i32(&mut b, "Bind")?;
                    if len == -1 {
                        params.push(None);
                    } else {
                        let len = usize::try_from(len).map_err(|_| malformed("Bind"))?;
                        if b.remaining() < len {
                            return Err(malformed("Bind"));
                        }
                        params.push(Some(b.split_to(len)));
                    }
                }
                let nresults = get_count(&mut b, "Bind")?;
                for _ in 0..nresults {
                    get_i16(&mut b, "Bind")?;
                }
                FrontendMessage::Bind { portal, statement, params }
            }
            b'D' | b'C' => {
                let what = if frame.tag == b'D' { "Describe" } else { "Close" };
                if b.remaining() < 1 {
                    return Err(malformed(what));
                }
                let kind = b.get_u8();
                if kind != b'S' && kind != b'P' {
                    return Err(malformed(what));
                }
                let name = get_cstr(&mut b, what)?;
                if frame.tag == b'D' {
                    FrontendMessage::Describe { kind, name }
                } else {
                    FrontendMessage::Close { kind, name }
                }
            }
            b'E' => {
                let portal = get_cstr(&mut b, "Execute")?;
                let max_rows = get_i32(&mut b, "Execute")?;
                FrontendMessage::Execute { portal, max_rows }
            }
            b'S' => FrontendMessage::Sync,
            b'H' => FrontendMessage::Flush,
            b'X' => FrontendMessage::Terminate,
            b'd' => return Ok(FrontendMessage::CopyData),
            b'c' => FrontendMessage::CopyDone,
            b'f' => return Ok(FrontendMessage::CopyFail),
            b'p' => return Ok(FrontendMessage::Password(b)),
            b'F' => return Ok(FrontendMessage::FunctionCall),
            other => return Ok(FrontendMessage::Other(other)),
        };
        if b.has_remaining() {
            return Err(malformed("trailing bytes in a"));
        }
        Ok(msg)
    }
}

/// Frontend message builders (the gateway speaks as a client to the upstream).
pub mod frontend {
    use super::*;

    pub fn query(sql: &str) -> Frame {
        let mut b = BytesMut::with_capacity(sql.len() + 1);
        put_cstr(&mut b, sql);
        Frame::new(b'Q', b.freeze())
    }

    pub fn parse(statement: &str, sql: &str) -> Frame {
        let mut b = BytesMut::new();
        put_cstr(&mut b, statement);
        put_cstr(&mut b, sql);
        b.put_i16(0);
        Frame::new(b'P', b.freeze())
    }

    pub fn bind(portal: &str, statement: &str) -> Frame {
        let mut b = BytesMut::new();
        put_cstr(&mut b, portal);
        put_cstr(&mut b, statement);
        b.put_i16(0);
        b.put_i16(0);
        b.put_i16(0);
        Frame::new(b'B', b.freeze())
    }

    pub fn describe_portal(portal: &str) -> Frame {
        let mut b = BytesMut::new();
        b.put_u8(b'P');
        put_cstr(&mut b, portal);
        Frame::new(b'D', b.freeze())
    }

    pub fn execute(portal: &str) -> Frame {
        let mut b = BytesMut::new();
        put_cstr(&mut b, portal);
        b.put_i32(0);
        Frame::new(b'E', b.freeze())
    }

    pub fn startup(params: &[(&str, &str)]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(0);
        b.put_i32(PROTOCOL_3_0);
        for (k, v) in params {
            put_cstr(&mut b, k);
            put_cstr(&mut b, v);
        }
        b.put_u8(0);
        let len = b.len() as i32;
        b[..4].copy_from_slice(&len.to_be_bytes());
        b
    }

    pub fn special_request(code: i32, extra: &[i32]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_i32(8 + 4 * extra.len() as i32);
        b.put_i32(code);
        for v in extra {
            b.put_i32(*v);
        }
        b
    }
}

pub fn put_cstr(b: &mut BytesMut, s: &str) {
    b.extend_from_slice(s.as_bytes());
    b.put_u8(0);
}

/// Backend message builders and readers.
pub mod backend {
    use super::*;

    /// An ErrorResponse or NoticeResponse's fields, by their one-byte codes.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct ErrorFields {
        pub severity: String,
        pub code: String,
        pub message: String,
        pub detail: Option<String>,
        pub hint: Option<String>,
    }

    impl ErrorFields {
        pub fn error(code: &str, message: impl Into<String>) -> Self {
            ErrorFields { severity: "ERROR".into(), code: code.into(), message: message.into(), ..Default::default() }
        }

        pub fn fatal(code: &str, message: impl Into<String>) -> Self {
            ErrorFields { severity: "FATAL".into(), code: code.into(), message: message.into(), ..Default::default() }
        }

        pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
            self.hint = Some(hint.into());
            self
        }

        pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
            self.detail = Some(detail.into());
            self
        }

        pub fn frame(&self) -> Frame {
            let mut b = BytesMut::new();
            for (code, value) in [(b'S', Some(&self.severity)), (b'V', Some(&self.severity)), (b'C', Some(&self.code)), (b'M', Some(&self.message)), (b'D', self.detail.as_ref()), (b'H', self.hint.as_ref())] {
                if let Some(v) = value {
                    b.put_u8(code);
                    put_cstr(&mut b, v);
                }
            }
            b.put_u8(0);
            Frame::new(b'E', b.freeze())
        }

        pub fn decode(body: &Bytes) -> ErrorFields {
            let mut f = ErrorFields::default();
            let mut b = body.clone();
            while b.has_remaining() {
                let code = b.get_u8();
                if code == 0 {
                    break;
                }
                let Ok(value) = get_cstr(&mut b, "ErrorResponse") else { break };
                match code {
                    b'S' => f.severity = value,
                    b'C' => f.code = value,
                    b'M' => f.message = value,
                    b'D' => f.detail = Some(value),
                    b'H' => f.hint = Some(value),
                    _ => {}
                }
            }
            f
        }
    }

    pub fn authentication_ok() -> Frame {
        Frame::new(b'R', Bytes::from_static(&[0, 0, 0, 0]))
    }

    pub fn authentication_cleartext() -> Frame {
        Frame::new(b'R', Bytes::from_static(&[0, 0, 0, 3]))
    }

    pub fn backend_key_data(process_id: i32, secret_key: i32) -> Frame {
        let mut b = BytesMut::with_capacity(8);
        b.put_i32(process_id);
        b.put_i32(secret_key);
        Frame::new(b'K', b.freeze())
    }

    pub fn ready_for_query(status: u8) -> Frame {
        Frame::new(b'Z', Bytes::copy_from_slice(&[status]))
    }

    /// The row count a CommandComplete tag reports ("DELETE 3" → 3, "INSERT 0 5" → 5).
    pub fn command_rows(body: &Bytes) -> Option<i64> {
        let tag = body.strip_suffix(&[0]).unwrap_or(body);
        let tag = std::str::from_utf8(tag).ok()?;
        tag.rsplit(' ').next()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(tag: u8, body: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        Frame::new(tag, Bytes::copy_from_slice(body)).encode(&mut out);
        out
    }

    #[test]
    fn frames_split_only_when_whole() {
        let mut buf = framed(b'Q', b"select 1\0");
        let whole = buf.clone();
        buf.truncate(7);
        assert_eq!(split_frame(&mut buf, 1 << 20).unwrap(), None);
        let mut buf = whole;
        let f = split_frame(&mut buf, 1 << 20).unwrap().unwrap();
        assert_eq!(FrontendMessage::decode(&f).unwrap(), FrontendMessage::Query { sql: "select 1".into() });
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_and_negative_lengths_are_errors() {
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0, 0, 0][..]);
        assert!(matches!(split_frame(&mut buf, 1024), Err(CodecError::TooLarge { .. })));
        let mut buf = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(split_frame(&mut buf, 1024).is_err());
        let mut buf = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(split_frame(&mut buf, 1024).is_err());
    }

    #[test]
    fn bind_with_lying_counts_is_malformed() {
        let f = Frame::new(b'B', Bytes::from_static(b"\0\0\0\0\x00\x05\0\0\0\x10ab"));
        assert!(FrontendMessage::decode(&f).is_err());
        let f = Frame::new(b'B', Bytes::from_static(b"\0\0\0\0\xff\xff"));
        assert!(FrontendMessage::decode(&f).is_err());
    }

    #[test]
    fn startup_round_trip() {
        let mut b = frontend::startup(&[("user", "bot"), ("database", "test")]);
        let p = split_startup(&mut b, 1 << 20).unwrap().unwrap();
        assert_eq!(p, StartupPacket::Startup { params: vec![("user".into(), "bot".into()), ("database".into(), "test".into())] });
        let mut b = frontend::special_request(SSL_REQUEST, &[]);
        assert_eq!(split_startup(&mut b, 1 << 20).unwrap().unwrap(), StartupPacket::SslRequest);
    }

    #[test]
    fn error_fields_round_trip_and_command_rows() {
        let e = backend::ErrorFields::error("42501", "denied").with_hint("ask");
        assert_eq!(backend::ErrorFields::decode(&e.frame().body), backend::ErrorFields { severity: "ERROR".into(), ..e.clone() });
        assert_eq!(backend::command_rows(&Bytes::from_static(b"DELETE 3\0")), Some(3));
        assert_eq!(backend::command_rows(&Bytes::from_static(b"INSERT 0 5\0")), Some(5));
        assert_eq!(backend::command_rows(&Bytes::from_static(b"BEGIN\0")), None);
    }
}
