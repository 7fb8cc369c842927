//! Revocation of in-flight HTTP, LLM and MCP calls (issue 15): when an agent is suspended
//! or its owner deactivated, a response still streaming to it is cut with an error event
//! and its next request is refused.
//!
//! The gateway polls the store's revocation epoch (the same counter the PostgreSQL path
//! watches, bumped by `warden human deactivate`, `warden agent suspend`, SCIM and grant
//! revocation, from any process sharing the store). When it moves, the cached agent statuses
//! are dropped (new requests read the store again) and every agent with a live call is
//! re-checked; those that may no longer act get their calls cut.

use crate::proxy::HttpGateway;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::watch;

struct LiveCall {
    agent: String,
    /// (target, grant id) when the call was allowed by a JIT grant: revoking the grant
    /// cuts the call too.
    grant: Option<(String, String)>,
    revoke: watch::Sender<Option<String>>,
}

/// The registry of live calls, by a process-unique id.
#[derive(Default)]
pub(crate) struct LiveCalls {
    next: AtomicU64,
    calls: Arc<Mutex<HashMap<u64, LiveCall>>>,
}

/// A registered call: resolves with the reason once the call is revoked; unregisters on
/// drop, so no exit path leaves an entry behind.
pub(crate) struct Revocation {
    id: u64,
    calls: Arc<Mutex<HashMap<u64, LiveCall>>>,
    rx: watch::Receiver<Option<String>>,
    fut: Pin<Box<dyn Future<Output = String> + Send + Sync>>,
}

async fn revoked(mut rx: watch::Receiver<Option<String>>) -> String {
    loop {
        if let Some(r) = rx.borrow_and_update().clone() {
            return r;
        }
        if rx.changed().await.is_err() {
            // The sender lives in the registry until the call unregisters.
            std::future::pending::<()>().await;
        }
    }
}

impl Revocation {
    /// Marks the call as resting on a JIT grant of `target`.
    pub(crate) fn rests_on_grant(&self, target: &str, grant: &str) {
        if let Some(c) = self.calls.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&self.id) {
            c.grant = Some((target.to_string(), grant.to_string()));
        }
    }

    /// Another handle on the same revocation, for code that only borrows the call.
    pub(crate) fn wait(&self) -> impl Future<Output = String> + Send + 'static {
        revoked(self.rx.clone())
    }
}

impl LiveCalls {
    pub(crate) fn register(&self, agent: &str) -> Revocation {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (revoke, rx) = watch::channel(None);
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).insert(id, LiveCall { agent: agent.to_string(), grant: None, revoke });
        let fut = Box::pin(revoked(rx.clone()));
        Revocation { id, calls: self.calls.clone(), rx, fut }
    }

    fn agents(&self) -> Vec<String> {
        let mut a: Vec<String> = self.calls.lock().unwrap_or_else(|e| e.into_inner()).values().map(|c| c.agent.clone()).collect();
        a.sort();
        a.dedup();
        a
    }

    /// (agent, target, grant id) of every live call resting on a grant.
    fn grants(&self) -> Vec<(String, String, String)> {
        let mut g: Vec<(String, String, String)> = self.calls.lock().unwrap_or_else(|e| e.into_inner()).values().filter_map(|c| c.grant.clone().map(|(t, id)| (c.agent.clone(), t, id))).collect();
        g.sort();
        g.dedup();
        g
    }

    fn revoke_grant(&self, grant: &str, reason: &str) {
        for c in self.calls.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|c| c.grant.as_ref().is_some_and(|(_, g)| g == grant)) {
            c.revoke.send_replace(Some(reason.to_string()));
        }
    }

    fn revoke(&self, agent: &str, reason: &str) -> usize {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let mut n = 0;
        for c in calls.values().filter(|c| c.agent == agent) {
            c.revoke.send_replace(Some(reason.to_string()));
            n += 1;
        }
        n
    }
}

impl Future for Revocation {
    type Output = String;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<String> {
        self.fut.as_mut().poll(cx)
    }
}

impl Drop for Revocation {
    fn drop(&mut self) {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl HttpGateway {
    /// Polls the store's epoch; on every change, re-checks the agents with live calls.
    pub(crate) async fn watch_revocations(self: Arc<Self>, every: Duration) {
        let mut last = None;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let store = self.deps.store.clone();
            let epoch = tokio::task::spawn_blocking(move || store.epoch()).await.ok().and_then(Result::ok);
            // An unreadable epoch re-checks every time (the check itself fails closed).
            if epoch.is_some() && epoch == last {
                continue;
            }
            last = epoch;
            self.forget_agent_statuses();
            for agent in self.live.agents() {
                let store = self.deps.store.clone();
                let name = agent.clone();
                let rec = tokio::task::spawn_blocking(move || store.agent(&name)).await.ok();
                let reason = match rec {
                    Some(Ok(Some(r))) if r.may_act() => continue,
                    Some(Ok(Some(r))) if r.owner_status != warden_store::HumanStatus::Active => format!("warden: agent \"{agent}\" cannot act: its owner {} was deactivated; the call was cut", r.owner),
                    Some(Ok(Some(_))) => format!("warden: agent \"{agent}\" was suspended; the call was cut"),
                    Some(Ok(None)) => format!("warden: agent \"{agent}\" no longer exists; the call was cut"),
                    // The store cannot say the agent may act: fail closed.
                    _ => "warden: the gateway cannot confirm the agent is active (store unavailable); the call was cut".to_string(),
                };
                let n = self.live.revoke(&agent, &reason);
                tracing::info!(agent = %agent, calls = n, "live HTTP calls revoked");
            }
            for (agent, target, grant) in self.live.grants() {
                let store = self.deps.store.clone();
                let (a, t) = (agent.clone(), target.clone());
                let now = crate::proxy::now_unix();
                let active = tokio::task::spawn_blocking(move || store.active_grants(&a, &t, now)).await.ok().and_then(Result::ok);
                // Unreadable grants count as gone (fail closed).
                if !active.is_some_and(|gs| gs.iter().any(|g| g.id == grant && !g.revoked)) {
                    self.live.revoke_grant(&grant, &format!("warden: just-in-time grant {grant} was revoked; the call was cut"));
                }
            }
        }
    }

    pub(crate) fn live_call(&self, agent: &str) -> Revocation {
        self.live.register(agent)
    }
}
