//! The PostgreSQL listener: TLS negotiation, startup, token authentication, the upstream
//! connection, cancel requests, then the proxy session.

use crate::catalog::Catalog;
use crate::codec::{self, backend, backend::ErrorFields, Frame, FrontendMessage, StartupPacket};
use crate::gate::{Gatekeeper, SessionGrant};
use crate::session::{self, SessionLimits};
use crate::startup::parse_startup;
use crate::stream::BoxStream;
use crate::upstream::{self, UpstreamConfig};
use bytes::BytesMut;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct ServerConfig {
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse password authentication over plaintext.
    pub require_tls: bool,
    pub limits: SessionLimits,
    /// How long a client may take to start up and authenticate.
    pub startup_timeout: Duration,
}

/// A client's cancel key (process id, secret).
type CancelKey = (i32, i32);

/// Cancel keys handed to clients, mapped to the upstream backend they stand for.
#[derive(Default)]
struct CancelRegistry {
    keys: Mutex<HashMap<CancelKey, (UpstreamConfig, i32, i32)>>,
}

pub struct Server<G: Gatekeeper> {
    gate: Arc<G>,
    config: ServerConfig,
    cancels: CancelRegistry,
    /// One catalog reader per target, shared by its sessions.
    catalogs: Mutex<HashMap<String, Arc<Catalog>>>,
}

impl<G: Gatekeeper> Server<G> {
    pub fn new(gate: Arc<G>, config: ServerConfig) -> Arc<Self> {
        Arc::new(Server { gate, config, cancels: CancelRegistry::default(), catalogs: Mutex::new(HashMap::new()) })
    }

    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> std::io::Result<()> {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            tcp.set_nodelay(true).ok();
            let server = self.clone();
            tokio::spawn(async move { server.connection(tcp, peer).await });
        }
    }

    async fn connection(self: Arc<Self>, tcp: TcpStream, peer: SocketAddr) {
        let started = tokio::time::timeout(self.config.startup_timeout, self.start(tcp, peer)).await;
        let Ok(Some(Started { grant, client, buf, upstream: up, cancel_key: key })) = started else { return };
        let grant = Arc::new(grant);
        self.cancels.keys.lock().unwrap().insert(key, (grant.upstream.clone(), up.process_id, up.secret_key));
        let catalog = self.catalogs.lock().unwrap().entry(grant.identity.target.clone()).or_insert_with(|| Catalog::new(grant.upstream.clone())).clone();
        let reason = session::run(self.gate.clone(), grant.clone(), client, buf, up.stream, up.leftover, self.config.limits, catalog).await;
        self.cancels.keys.lock().unwrap().remove(&key);
        self.gate.session_ended(&grant, &reason);
    }

    /// Startup and authentication. On success the client has received AuthenticationOk,
    /// the upstream's parameters, our cancel key and ReadyForQuery.
    async fn start(&self, tcp: TcpStream, peer: SocketAddr) -> Option<Started> {
        let mut client: BoxStream = Box::new(tcp);
        let mut buf = BytesMut::with_capacity(8192);
        let mut tls = false;
        let params = loop {
            let packet = match read_startup(&mut client, &mut buf).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = write_frame(&mut client, ErrorFields::fatal("08P01", format!("warden: {e}")).frame()).await;
                    return None;
                }
            };
            match packet {
                StartupPacket::SslRequest if !tls && buf.is_empty() => match &self.config.tls {
                    Some(cfg) => {
                        client.write_all(b"S").await.ok()?;
                        let tls_stream = tokio_rustls::TlsAcceptor::from(cfg.clone()).accept(client).await.ok()?;
                        client = Box::new(tls_stream);
                        tls = true;
                    }
                    None => client.write_all(b"N").await.ok()?,
                },
                StartupPacket::GssEncRequest if !tls => client.write_all(b"N").await.ok()?,
                StartupPacket::Cancel { process_id, secret_key } => {
                    let target = self.cancels.keys.lock().unwrap().get(&(process_id, secret_key)).cloned();
                    if let Some((cfg, pid, key)) = target {
                        upstream::cancel(&cfg, pid, key).await;
                    }
                    return None;
                }
                StartupPacket::Startup { params } => break params,
                _ => {
                    let _ = write_frame(&mut client, ErrorFields::fatal("08P01", "warden: unexpected startup request").frame()).await;
                    return None;
                }
            }
        };
        let refuse = |code: &'static str, msg: String| ErrorFields::fatal(code, msg).frame();
        let request = match parse_startup(&params) {
            Ok(r) => r,
            Err(e) => {
                let _ = write_frame(&mut client, refuse("08P01", format!("warden: {e}"))).await;
                return None;
            }
        };
        if self.config.require_tls && !tls {
            let _ = write_frame(&mut client, refuse("28000", "warden: TLS is required (connect with sslmode=require)".into())).await;
            return None;
        }
        write_frame(&mut client, backend::authentication_cleartext()).await.ok()?;
        let password = loop {
            if let Some(f) = codec::split_frame(&mut buf, 64 * 1024).ok()? {
                match FrontendMessage::decode(&f) {
                    Ok(FrontendMessage::Password(p)) => break p,
                    _ => {
                        let _ = write_frame(&mut client, refuse("08P01", "warden: expected a password message".into())).await;
                        return None;
                    }
                }
            }
            if client.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        };
        let password = std::str::from_utf8(password.strip_suffix(&[0]).unwrap_or(&password)).unwrap_or("").to_owned();
        let grant = match self.gate.authenticate(&request, &password, peer).await {
            Ok(g) => g,
            Err(e) => {
                let _ = write_frame(&mut client, refuse(e.sqlstate, e.message)).await;
                return None;
            }
        };
        drop(password);
        let up = match upstream::connect(&grant.upstream, &request.forwarded).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(session = %grant.session_id, target = %grant.identity.target, error = %e, "upstream connection failed");
                let msg = format!("warden: target \"{}\" is unavailable", grant.identity.target);
                let _ = write_frame(&mut client, refuse("08006", msg)).await;
                self.gate.session_ended(&grant, "upstream unavailable");
                return None;
            }
        };
        let key = (rand::random::<i32>() & i32::MAX, rand::random::<i32>());
        let mut out = BytesMut::new();
        backend::authentication_ok().encode(&mut out);
        for p in &up.parameters {
            p.encode(&mut out);
        }
        backend::backend_key_data(key.0, key.1).encode(&mut out);
        backend::ready_for_query(b'I').encode(&mut out);
        if client.write_all(&out).await.is_err() || client.flush().await.is_err() {
            self.gate.session_ended(&grant, "client closed");
            return None;
        }
        Some(Started { grant, client, buf, upstream: up, cancel_key: key })
    }
}

struct Started {
    grant: SessionGrant,
    client: BoxStream,
    buf: BytesMut,
    upstream: upstream::UpstreamConnection,
    cancel_key: (i32, i32),
}

async fn write_frame(client: &mut BoxStream, f: Frame) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    f.encode(&mut out);
    client.write_all(&out).await?;
    client.flush().await
}

async fn read_startup(client: &mut BoxStream, buf: &mut BytesMut) -> Result<StartupPacket, String> {
    loop {
        match codec::split_startup(buf, 10_000) {
            Ok(Some(p)) => return Ok(p),
            Ok(None) => {}
            Err(e) => return Err(e.to_string()),
        }
        match client.read_buf(buf).await {
            Ok(0) | Err(_) => return Err("connection closed during startup".into()),
            Ok(_) => {}
        }
    }
}
