//! Approval notifications: a Slack-compatible JSON webhook, signed with HMAC-SHA256 so the
//! receiver can tell it came from this gateway, retried with backoff.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;
use warden_core::secret::Secret;
use warden_store::ApprovalRecord;

const ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub struct Notifier {
    url: Option<String>,
    secret: Option<Secret>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(url: Option<String>, secret: Option<Secret>) -> Self {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("a client with a timeout builds");
        Notifier { url, secret, client }
    }

    pub fn body(rec: &ApprovalRecord) -> serde_json::Value {
        let r = &rec.request;
        let what = match (&r.statement, &r.grant) {
            (Some(sql), _) => format!("```{}```", sql.replace("```", "'''")),
            (None, Some(g)) => format!("grant {} on {} for {}s", g.actions.join(","), if g.objects.is_empty() { "the whole target".to_string() } else { g.objects.join(",") }, g.duration_secs),
            _ => String::new(),
        };
        let text = format!(
            "Warden approval {} requested: agent *{}* (owner {}) node {} on target {} asks to run {} (rule: {}). Approve: `warden approvals approve {} --as YOU --reason ...`",
            rec.id, r.agent, r.owner, r.node.as_deref().unwrap_or("-"), r.target, what, r.rule, rec.id
        );
        serde_json::json!({
            "text": text,
            "approval": {
                "id": rec.id, "kind": r.kind, "agent": r.agent, "owner": r.owner, "node": r.node, "run": r.run,
                "target": r.target, "statement": r.statement, "params_digest": r.params_digest, "rule": r.rule,
                "quorum": r.quorum, "mode": r.mode, "expires_at": r.expires_at,
            }
        })
    }

    /// Delivers in the background; returns at once. Reports the outcome through `done`.
    pub fn notify(&self, rec: &ApprovalRecord, done: impl FnOnce(Result<u16, String>) + Send + 'static) {
        let Some(url) = self.url.clone() else { return };
        let body = Self::body(rec).to_string();
        let signature = self.secret.as_ref().map(|s| {
            let mut mac = Hmac::<Sha256>::new_from_slice(s.expose().as_bytes()).expect("HMAC takes keys of any length");
            mac.update(body.as_bytes());
            format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
        });
        let client = self.client.clone();
        tokio::spawn(async move {
            let mut last = String::new();
            for attempt in 0..ATTEMPTS {
                if attempt > 0 {
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                let mut req = client.post(&url).header("content-type", "application/json").body(body.clone());
                if let Some(sig) = &signature {
                    req = req.header("x-warden-signature", sig);
                }
                match req.send().await {
                    Ok(resp) if resp.status().is_success() => return done(Ok(resp.status().as_u16())),
                    Ok(resp) => last = format!("HTTP {}", resp.status().as_u16()),
                    Err(e) => last = if e.is_timeout() { "timed out".into() } else { "connection failed".into() },
                }
            }
            done(Err(last));
        });
    }
}
