//! Per-agent policy slices, so a decision evaluates only the policies that could apply to
//! its principal (DESIGN.md "classification cost"): with thousands of agents each owning a
//! few rules, scanning every rule per access would make the policy the bottleneck.
//!
//! A policy whose principal scope names an agent (`== / in Warden::Agent::"x"`) or one of
//! its nodes (`== / in Warden::Node::"x/n"`) goes only into that agent's slice; every other
//! policy (unscoped, `principal is ...`, `when { context.agent == ... }`) is global and is
//! copied into every slice. Putting a policy into too many slices is harmless (Cedar still
//! checks its scope); leaving it out of one would be a wrong decision, so ambiguous node ids
//! are over-included.
//!
//! Cost: each slice holds its own copy of the global policies (cheap `Arc` clones inside
//! Cedar), so memory is O(agents × global policies). If that ever matters, evaluate the
//! global set and the agent set separately and combine (allow iff some permit and no
//! forbid in either), at the price of two evaluations per access.

use cedar_policy::{Policy, PolicySet, PrincipalConstraint};
use std::collections::HashMap;

const AGENT: &str = "Warden::Agent";
const NODE: &str = "Warden::Node";

pub(crate) struct Slices {
    global: PolicySet,
    by_agent: HashMap<String, PolicySet>,
}

impl Slices {
    /// `policies` must have unique ids (checked by the loader), so adding cannot fail.
    pub(crate) fn build(policies: &[Policy]) -> Slices {
        let mut global = PolicySet::new();
        let mut scoped: HashMap<String, Vec<&Policy>> = HashMap::new();
        for p in policies {
            let keys = agent_keys(p);
            if keys.is_empty() {
                add(&mut global, p);
            } else {
                for k in keys {
                    scoped.entry(k).or_default().push(p);
                }
            }
        }
        let by_agent = scoped
            .into_iter()
            .map(|(agent, own)| {
                let mut set = global.clone();
                for p in own {
                    add(&mut set, p);
                }
                (agent, set)
            })
            .collect();
        Slices { global, by_agent }
    }

    pub(crate) fn for_agent(&self, agent: &str) -> &PolicySet {
        self.by_agent.get(agent).unwrap_or(&self.global)
    }
}

fn add(set: &mut PolicySet, p: &Policy) {
    // Ids are unique by construction; a failure here would be a loader bug, and dropping
    // the policy could turn a forbid into an allow, so it must not be silent.
    set.add(p.clone()).expect("policy ids are checked for uniqueness before slicing");
}

/// The agents a policy can apply to, or empty when it may apply to any agent.
fn agent_keys(p: &Policy) -> Vec<String> {
    let uid = match p.principal_constraint() {
        PrincipalConstraint::Eq(uid) | PrincipalConstraint::In(uid) | PrincipalConstraint::IsIn(_, uid) => uid,
        PrincipalConstraint::Any | PrincipalConstraint::Is(_) => return Vec::new(),
    };
    let ty = uid.type_name().to_string();
    let id = uid.id().unescaped();
    if ty == AGENT {
        vec![id.to_string()]
    } else if ty == NODE {
        // "<agent>/<node>" where either part may itself contain '/': every split point is
        // a possible agent name. A node id without '/' yields no key and so stays global,
        // which is the safe direction.
        id.match_indices('/').map(|(i, _)| &id[..i]).filter(|a| !a.is_empty()).map(str::to_string).collect()
    } else {
        // Any other principal type never matches a Warden principal; keeping it global
        // keeps this function from deciding anything.
        Vec::new()
    }
}
