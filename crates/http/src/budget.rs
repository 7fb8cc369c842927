//! Token and spend budgets that hold under concurrency: a call reserves its maximum cost
//! (prompt bound + output cap, at the model's prices) against every budget that applies,
//! all or nothing under one lock, before it is forwarded; when the call ends the
//! reservation is replaced by the provider's reported usage. A call whose usage never
//! arrives (stream cut, client gone) keeps its whole reservation as spent.
//!
//! In memory: one gateway process. Several gateway nodes each enforce the full budget on
//! their own, so N nodes can spend up to N times it; a shared ledger in the store (a
//! reservation row per call, settled by the same rule) closes that gap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    target: String,
    scope: &'static str,
    name: String,
    window: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Account {
    tokens: u64,
    micros: u64,
}

/// One limit as configured.
#[derive(Clone, Debug)]
pub struct Limit {
    /// "agent", "owner" or "run".
    pub scope: &'static str,
    /// The agent name, owner email or run id this call is charged to.
    pub name: String,
    pub max_tokens: Option<u64>,
    pub max_micros: Option<u64>,
    /// The config key, for the refusal message (`http.targets[2].budgets.per_run_*`).
    pub setting: String,
}

#[derive(Debug, Default)]
pub struct Ledger {
    accounts: Mutex<HashMap<Key, Account>>,
}

/// A granted reservation; settle it (or drop it, which settles at the full amount).
#[must_use]
pub struct Reservation {
    ledger: Arc<Ledger>,
    keys: Vec<Key>,
    tokens: u64,
    micros: u64,
    settled: bool,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation").field("tokens", &self.tokens).field("micros", &self.micros).finish()
    }
}

impl Ledger {
    /// Reserves `tokens` and `micros` under every limit, or none. `Err` names the budget.
    pub fn reserve(self: &Arc<Self>, target: &str, window: u64, limits: &[Limit], tokens: u64, micros: u64) -> Result<Reservation, String> {
        let keys: Vec<Key> = limits.iter().map(|l| Key { target: target.to_string(), scope: l.scope, name: l.name.clone(), window }).collect();
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        for (l, k) in limits.iter().zip(&keys) {
            let a = accounts.get(k).copied().unwrap_or_default();
            if let Some(max) = l.max_tokens {
                if a.tokens.saturating_add(tokens) > max {
                    return Err(format!(
                        "warden: token budget exceeded for {} \"{}\": {} of {max} tokens spent or reserved, this call may need {tokens} ({}_tokens)",
                        l.scope, l.name, a.tokens, l.setting
                    ));
                }
            }
            if let Some(max) = l.max_micros {
                if a.micros.saturating_add(micros) > max {
                    return Err(format!(
                        "warden: spend budget exceeded for {} \"{}\": ${:.6} of ${:.6} spent or reserved, this call may cost ${:.6} ({}_usd)",
                        l.scope, l.name, a.micros as f64 / 1e6, max as f64 / 1e6, micros as f64 / 1e6, l.setting
                    ));
                }
            }
        }
        for k in &keys {
            let a = accounts.entry(k.clone()).or_default();
            a.tokens += tokens;
            a.micros += micros;
        }
        // Old windows are of no use any more.
        if accounts.len() > 4096 {
            accounts.retain(|k, _| k.window >= window);
        }
        Ok(Reservation { ledger: self.clone(), keys, tokens, micros, settled: false })
    }

    /// Tokens and micro-dollars spent or reserved under one limit (tests, metrics).
    pub fn spent(&self, target: &str, window: u64, scope: &'static str, name: &str) -> (u64, u64) {
        let accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let a = accounts.get(&Key { target: target.into(), scope, name: name.into(), window }).copied().unwrap_or_default();
        (a.tokens, a.micros)
    }
}

impl Reservation {
    pub fn reserved(&self) -> (u64, u64) {
        (self.tokens, self.micros)
    }

    /// Replaces the reservation by what the call actually cost.
    pub fn settle(mut self, tokens: u64, micros: u64) {
        self.apply(tokens, micros);
    }

    fn apply(&mut self, tokens: u64, micros: u64) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut accounts = self.ledger.accounts.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            let a = accounts.entry(k.clone()).or_default();
            a.tokens = a.tokens.saturating_sub(self.tokens).saturating_add(tokens);
            a.micros = a.micros.saturating_sub(self.micros).saturating_add(micros);
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (t, m) = (self.tokens, self.micros);
        self.apply(t, m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(max: u64) -> Vec<Limit> {
        vec![Limit { scope: "run", name: "r1".into(), max_tokens: Some(max), max_micros: None, setting: "b.per_run".into() }]
    }

    #[test]
    fn concurrent_reservations_never_overshoot() {
        let l = Arc::new(Ledger::default());
        let granted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..50 {
                s.spawn(|| {
                    if let Ok(r) = l.reserve("t", 0, &limit(1000), 100, 0) {
                        granted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        std::mem::forget(r);
                    }
                });
            }
        });
        assert_eq!(granted.into_inner(), 10);
    }

    #[test]
    fn settling_returns_the_unused_part() {
        let l = Arc::new(Ledger::default());
        let r = l.reserve("t", 0, &limit(1000), 600, 0).unwrap();
        assert!(l.reserve("t", 0, &limit(1000), 600, 0).is_err());
        r.settle(100, 0);
        assert_eq!(l.spent("t", 0, "run", "r1"), (100, 0));
        let r = l.reserve("t", 0, &limit(1000), 600, 0).unwrap();
        drop(r);
        assert_eq!(l.spent("t", 0, "run", "r1"), (700, 0));
        let e = l.reserve("t", 0, &limit(1000), 600, 0).unwrap_err();
        assert!(e.contains("b.per_run_tokens"), "{e}");
    }
}
