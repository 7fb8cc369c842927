//! The gateway's own connection to the upstream PostgreSQL: TLS if configured, then
//! authentication with the secret the gateway holds (trust, cleartext, md5, SCRAM-SHA-256).
//! The agent never takes part and never sees the secret.

use crate::codec::{self, backend::ErrorFields, frontend, Frame};
use crate::stream::BoxStream;
use bytes::{Buf, BufMut, BytesMut};
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden_core::secret::Secret;

#[derive(Clone, Debug)]
pub enum UpstreamTls {
    Disable,
    /// Encrypt, do not verify the certificate (libpq's `sslmode=require`).
    Require,
    /// Encrypt and verify the certificate chain and host name against these roots.
    VerifyFull { roots: Arc<rustls::RootCertStore> },
}

#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    pub host: String,
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: Option<Secret>,
    pub tls: UpstreamTls,
    pub connect_timeout: Duration,
}

/// Why the upstream could not be reached. Messages are safe for clients: they name the
/// target's address and the failure class, never a credential.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to upstream {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("upstream {addr} refused TLS")]
    TlsRefused { addr: String },
    #[error("TLS to upstream {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("upstream authentication failed ({code}): {message}")]
    Auth { code: String, message: String },
    #[error("upstream asks for a password but the target has none configured")]
    NoPassword,
    #[error("upstream requested an unsupported authentication method ({0})")]
    UnsupportedAuth(i32),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

pub struct UpstreamConnection {
    pub stream: BoxStream,
    /// Bytes read past the startup exchange.
    pub leftover: BytesMut,
    /// ParameterStatus frames to replay to the client.
    pub parameters: Vec<Frame>,
    pub process_id: i32,
    pub secret_key: i32,
}

impl UpstreamConfig {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

pub async fn connect(cfg: &UpstreamConfig, forwarded: &[(String, String)]) -> Result<UpstreamConnection, UpstreamError> {
    let addr = cfg.addr();
    let tcp = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| UpstreamError::Connect { addr: addr.clone(), reason: "timed out".into() })?
        .map_err(|e| UpstreamError::Connect { addr: addr.clone(), reason: e.kind().to_string() })?;
    tcp.set_nodelay(true).ok();
    let mut stream: BoxStream = match &cfg.tls {
        UpstreamTls::Disable => Box::new(tcp),
        tls => start_tls(tcp, cfg, tls).await?,
    };
    let mut params: Vec<(&str, &str)> = vec![("user", &cfg.user), ("database", &cfg.database)];
    params.extend(forwarded.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    stream.write_all(&frontend::startup(&params)).await.map_err(io_err)?;
    let mut buf = BytesMut::with_capacity(8192);
    authenticate(&mut stream, &mut buf, cfg).await?;
    let mut parameters = Vec::new();
    let (mut process_id, mut secret_key) = (0, 0);
    loop {
        let f = read_frame(&mut stream, &mut buf).await?;
        match f.tag {
            b'S' => parameters.push(f),
            b'K' if f.body.len() == 8 => {
                let mut b = f.body.clone();
                process_id = b.get_i32();
                secret_key = b.get_i32();
            }
            b'Z' => break,
            b'N' => {}
            b'E' => return Err(auth_error(&f)),
            other => return Err(UpstreamError::Protocol(format!("unexpected message {:?} during startup", other as char))),
        }
    }
    Ok(UpstreamConnection { stream, leftover: buf, parameters, process_id, secret_key })
}

async fn start_tls(mut tcp: TcpStream, cfg: &UpstreamConfig, tls: &UpstreamTls) -> Result<BoxStream, UpstreamError> {
    let addr = cfg.addr();
    tcp.write_all(&frontend::special_request(codec::SSL_REQUEST, &[])).await.map_err(io_err)?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await.map_err(io_err)?;
    if answer[0] != b'S' {
        return Err(UpstreamError::TlsRefused { addr });
    }
    let config = match tls {
        UpstreamTls::VerifyFull { roots } => rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .with_root_certificates(roots.clone())
            .with_no_client_auth(),
        _ => crate::tls::unverified_client_config(),
    };
    let name = rustls::pki_types::ServerName::try_from(cfg.host.clone())
        .map_err(|_| UpstreamError::Tls { addr: addr.clone(), reason: "invalid host name".into() })?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Tls { addr, reason: e.to_string() })?;
    Ok(Box::new(stream))
}

async fn authenticate(stream: &mut BoxStream, buf: &mut BytesMut, cfg: &UpstreamConfig) -> Result<(), UpstreamError> {
    let mut scram: Option<ScramSha256> = None;
    loop {
        let f = read_frame(stream, buf).await?;
        if f.tag == b'E' {
            return Err(auth_error(&f));
        }
        if f.tag != b'R' || f.body.len() < 4 {
            return Err(UpstreamError::Protocol("expected an authentication request".into()));
        }
        let mut body = f.body.clone();
        let code = body.get_i32();
        let password = || cfg.password.as_ref().ok_or(UpstreamError::NoPassword);
        let reply: BytesMut = match code {
            0 => return Ok(()),
            3 => password_message(password()?.expose().as_bytes()),
            5 => {
                if body.len() != 4 {
                    return Err(UpstreamError::Protocol("bad MD5 salt".into()));
                }
                let salt = [body[0], body[1], body[2], body[3]];
                let hash = postgres_protocol::authentication::md5_hash(cfg.user.as_bytes(), password()?.expose().as_bytes(), salt);
                password_message(hash.as_bytes())
            }
            10 => {
                let mechanisms = body.split(|b| *b == 0).filter(|m| !m.is_empty()).collect::<Vec<_>>();
                if !mechanisms.contains(&&b"SCRAM-SHA-256"[..]) {
                    return Err(UpstreamError::UnsupportedAuth(code));
                }
                let s = ScramSha256::new(password()?.expose().as_bytes(), ChannelBinding::unsupported());
                let mut b = BytesMut::new();
                codec::put_cstr(&mut b, "SCRAM-SHA-256");
                b.put_i32(s.message().len() as i32);
                b.extend_from_slice(s.message());
                scram = Some(s);
                tagged(b'p', b)
            }
            11 => {
                let s = scram.as_mut().ok_or_else(|| UpstreamError::Protocol("SASL continue before start".into()))?;
                s.update(&body).map_err(|e| UpstreamError::Auth { code: "28P01".into(), message: e.to_string() })?;
                tagged(b'p', BytesMut::from(s.message()))
            }
            12 => {
                let mut s = scram.take().ok_or_else(|| UpstreamError::Protocol("SASL final before start".into()))?;
                s.finish(&body).map_err(|e| UpstreamError::Auth { code: "28P01".into(), message: e.to_string() })?;
                continue;
            }
            other => return Err(UpstreamError::UnsupportedAuth(other)),
        };
        stream.write_all(&reply).await.map_err(io_err)?;
    }
}

fn password_message(password: &[u8]) -> BytesMut {
    let mut b = BytesMut::with_capacity(password.len() + 1);
    b.extend_from_slice(password);
    b.put_u8(0);
    tagged(b'p', b)
}

fn tagged(tag: u8, body: BytesMut) -> BytesMut {
    let mut out = BytesMut::new();
    Frame::new(tag, body.freeze()).encode(&mut out);
    out
}

fn auth_error(f: &Frame) -> UpstreamError {
    let e = ErrorFields::decode(&f.body);
    UpstreamError::Auth { code: e.code, message: e.message }
}

fn io_err(e: std::io::Error) -> UpstreamError {
    UpstreamError::Protocol(e.kind().to_string())
}

/// Startup messages are small; the cap only guards against a broken upstream.
const STARTUP_FRAME_LIMIT: usize = 1 << 20;

async fn read_frame(stream: &mut BoxStream, buf: &mut BytesMut) -> Result<Frame, UpstreamError> {
    loop {
        if let Some(f) = codec::split_frame(buf, STARTUP_FRAME_LIMIT).map_err(|e| UpstreamError::Protocol(e.to_string()))? {
            return Ok(f);
        }
        if stream.read_buf(buf).await.map_err(io_err)? == 0 {
            return Err(UpstreamError::Protocol("upstream closed the connection".into()));
        }
    }
}

/// Sends a CancelRequest for an upstream backend; errors are ignored as PostgreSQL does.
pub async fn cancel(cfg: &UpstreamConfig, process_id: i32, secret_key: i32) {
    if let Ok(Ok(mut tcp)) = tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(cfg.addr())).await {
        let _ = tcp.write_all(&frontend::special_request(codec::CANCEL_REQUEST, &[process_id, secret_key])).await;
    }
}
