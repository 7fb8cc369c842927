//! `warden serve`: wires the store, keys, policy, audit writer, the PostgreSQL listener and
//! the admin API together, and shuts down cleanly (audit flushed) on SIGINT/SIGTERM.

use crate::config::Config;
use crate::gate::WardenGate;
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::Duration;
use warden_audit::AuditWriter;
use warden_core::policy::PolicyEngine;
use warden_pg::server::{Server, ServerConfig};
use warden_pg::session::SessionLimits;
use warden_store::{SqliteStore, Store};

/// How often the gateway polls the store for revocations; bounds how long a suspended
/// agent's live session survives.
const REVOCATION_POLL: Duration = Duration::from_millis(200);

pub fn run(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Result<()> {
    let data_dir = config.data_dir();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(config.store_path()).with_context(|| format!("cannot open store {}", config.store_path().display()))?);
    let policy_files: Vec<_> = config.policy.files.iter().map(|f| config.resolve(f)).collect();
    let policy = PolicyEngine::from_sources(&crate::cli::read_policy_sources(&policy_files)?).map_err(|e| anyhow::anyhow!("policy does not validate:\n{e}"))?;
    let tokens = Arc::new(crate::keys::load_or_create(&data_dir, "token")?);
    let audit_key = crate::keys::load_or_create(&data_dir, "audit")?;
    let audit = AuditWriter::start(store.clone(), Some(audit_key.signing_key().clone()));
    let gate = WardenGate::new(&config, store.clone(), policy, tokens.clone(), audit.clone())?;
    tokio::spawn(gate.clone().watch(REVOCATION_POLL));

    let client_tls = match &config.tls {
        Some(t) => Some(warden_pg::tls::server_config(&config.resolve(&t.cert_file).to_string_lossy(), &config.resolve(&t.key_file).to_string_lossy())?),
        None => None,
    };
    let server = Server::new(
        gate.clone(),
        ServerConfig {
            tls: client_tls,
            require_tls: config.tls.as_ref().is_some_and(|t| t.require),
            limits: SessionLimits { max_message_bytes: config.limits.max_message_bytes },
            startup_timeout: config.limits.startup_timeout,
        },
    );
    let pg_listener = tokio::net::TcpListener::bind(config.listen.postgres).await.with_context(|| format!("cannot listen on {} (listen.postgres)", config.listen.postgres))?;
    let admin_listener = tokio::net::TcpListener::bind(config.listen.admin).await.with_context(|| format!("cannot listen on {} (listen.admin)", config.listen.admin))?;
    if config.listen.http.is_some() || !config.http.targets.is_empty() {
        let addr = config.listen.http.unwrap_or_else(crate::config::default_http_listen);
        let http_listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr} (listen.http)"))?;
        let http_gateway = http_gateway(&config, &policy_files, store.clone(), tokens.clone(), audit.clone())?;
        tracing::info!(http = %http_listener.local_addr()?, targets = config.http.targets.len(), "http gateway listening");
        tokio::spawn(async move {
            if let Err(e) = http_gateway.serve(http_listener).await {
                tracing::error!(error = %e, "http gateway stopped");
            }
        });
    }
    let api_state = warden_api::ApiState { store, tokens, audit: audit.clone(), default_ttl: config.tokens.default_ttl, max_ttl: config.tokens.max_ttl, identity: identity_settings(&config, gate.clone())? };
    let api = warden_api::router(api_state.clone()).merge(warden_api::console::router(api_state, crate::console::settings(&config.console)?));
    tracing::info!(postgres = %pg_listener.local_addr()?, admin = %admin_listener.local_addr()?, data_dir = %data_dir.display(), targets = config.targets.len(), "warden listening");

    let pg = tokio::spawn(server.serve(pg_listener));
    let admin = tokio::spawn(async move { axum::serve(admin_listener, api).await });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; shutting down"),
        _ = term.recv() => tracing::info!("terminated; shutting down"),
        r = pg => tracing::error!(result = ?r.map(|r| r.map_err(|e| e.to_string())), "postgres listener stopped"),
        r = admin => tracing::error!(result = ?r.map(|r| r.map_err(|e| e.to_string())), "admin API stopped"),
    }
    gate.end_all_sessions("the gateway is shutting down", Duration::from_secs(2)).await;
    if let Some(r) = gate.recording() {
        r.shutdown().await;
    }
    audit.shutdown().await;
    Ok(())
}

/// SCIM token, approvers and the OIDC verifier for the admin API (issue 11).
fn identity_settings(config: &Config, gate: Arc<WardenGate>) -> Result<Arc<warden_api::IdentitySettings>> {
    let oidc = match &config.oidc {
        Some(o) => {
            let mut o = o.clone();
            o.client_secret_file = o.client_secret_file.map(|p| config.resolve(&p));
            Some(Arc::new(warden_api::oidc::OidcVerifier::new(o).map_err(|e| anyhow::anyhow!(e))?))
        }
        None => None,
    };
    let on_revocation: Arc<dyn Fn() + Send + Sync> = Arc::new(move || gate.enforce_revocations());
    Ok(Arc::new(warden_api::IdentitySettings { scim_token: config.scim_token()?, approvers: config.identity_approvers(), oidc, on_revocation: Some(on_revocation), saml: saml_sp(config)? }))
}

/// The SAML service provider (`[saml]`), its IdP metadata read from the file or inline.
fn saml_sp(config: &Config) -> Result<Option<Arc<warden_api::saml::ServiceProvider>>> {
    let Some(s) = &config.saml else { return Ok(None) };
    let xml = match (&s.idp_metadata_file, &s.idp_metadata) {
        (Some(path), _) => std::fs::read_to_string(config.resolve(path)).with_context(|| format!("saml.idp_metadata_file: cannot read {}", path.display()))?,
        (None, Some(xml)) => xml.clone(),
        (None, None) => anyhow::bail!("saml.idp_metadata_file: required"),
    };
    let fallback = config.oidc.as_ref().map(|o| o.roles.clone()).unwrap_or_default();
    Ok(Some(Arc::new(warden_api::saml::ServiceProvider::new(s.clone(), &xml, &fallback).map_err(|e| anyhow::anyhow!(e))?)))
}

/// The HTTP and LLM gateway (issue 13): its own policy engine over the same files (the
/// PostgreSQL gate owns the other), the shared store, token keys and audit log.
fn http_gateway(config: &Config, policy_files: &[std::path::PathBuf], store: Arc<dyn Store>, tokens: Arc<warden_core::token::TokenKeys>, audit: warden_audit::AuditHandle) -> Result<Arc<warden_http::HttpGateway>> {
    let policy = PolicyEngine::from_sources(&crate::cli::read_policy_sources(policy_files)?).map_err(|e| anyhow::anyhow!("policy does not validate:\n{e}"))?;
    let notifier = Arc::new(crate::notify::Notifier::new(config.approvals.webhook_url.clone(), config.webhook_secret()?));
    let on_approval_audit = audit.clone();
    let on_approval: Arc<dyn Fn(&warden_store::ApprovalRecord) + Send + Sync> = Arc::new(move |rec| {
        let audit = on_approval_audit.clone();
        let (id, agent) = (rec.id.clone(), rec.request.agent.clone());
        notifier.notify(rec, move |result| {
            let mut ev = warden_audit::AuditEvent::new("approval_notified", "hold");
            ev.agent = Some(agent);
            ev.extra.insert("approval_id".into(), id.into());
            match result {
                Ok(status) => ev.extra.insert("webhook_status".into(), status.into()),
                Err(e) => ev.extra.insert("webhook_error".into(), e.into()),
            };
            let _ = audit.record_nowait(ev);
        });
    });
    let deps = warden_http::Deps {
        store,
        policy: Arc::new(policy),
        tokens,
        audit,
        approval_timeout: config.approvals.timeout,
        resume_lifetime: config.approvals.resume_lifetime,
        on_approval: Some(on_approval),
    };
    let gateway = warden_http::HttpGateway::new(&config.http, &config.base_dir, deps).map_err(|e| anyhow::anyhow!(e))?;
    // Same rule as the database path: with it on, a token without a graph version gets nothing.
    gateway.require_approved_graph_version(config.graphs.require_approved_version);
    Ok(gateway)
}
