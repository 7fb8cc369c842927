//! Per-agent, per-action policy slices, so a decision evaluates only the policies that could
//! apply to its principal and action (DESIGN.md "classification cost"): with thousands of agents each owning a
//! few rules, scanning every rule per access would make the policy the bottleneck.
//!
//! A policy whose principal scope names an agent (`== / in Warden::Agent::"x"`) or one of
//! its nodes (`== / in Warden::Node::"x/n"`) goes only into that agent's slice; every other
//! policy (unscoped, `principal is ...`, `when { context.agent == ... }`) is global and is
//! copied into every slice. Putting a policy into too many slices is harmless (Cedar still
//! checks its scope); leaving it out of one would be a wrong decision, so ambiguous node ids
//! are over-included.
//!
//! Within a slice, policies are split again by the actions their scope names
//! (`action == ...`, `action in [...]`), so a `delete` never evaluates `select` rules.
//!
//! Cost: each slice holds its own copy of the global policies (cheap `Arc` clones inside
//! Cedar), so memory is O(agents × global policies). If that ever matters, evaluate the
//! global set and the agent set separately and combine (allow iff some permit and no
//! forbid in either), at the price of two evaluations per access.

use crate::classification::Action;
use cedar_policy::{ActionConstraint, EntityUid, Policy, PolicySet, PrincipalConstraint};
use std::collections::HashMap;

const AGENT: &str = "Warden::Agent";
const NODE: &str = "Warden::Node";
const ACTION: &str = "Warden::Action";

/// One policy set per action, indexed by `Action as usize`.
type PerAction = Vec<PolicySet>;

pub(crate) struct Slices {
    global: PerAction,
    by_agent: HashMap<String, PerAction>,
}

impl Slices {
    /// `policies` must have unique ids (checked by the loader), so adding cannot fail.
    pub(crate) fn build(policies: &[Policy]) -> Slices {
        let empty = || -> PerAction { Action::ALL.iter().map(|_| PolicySet::new()).collect() };
        let mut global = empty();
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
                let mut sets = global.clone();
                for p in own {
                    add(&mut sets, p);
                }
                (agent, sets)
            })
            .collect();
        Slices { global, by_agent }
    }

    /// Every policy that could apply to this agent (or one of its nodes) doing `action`.
    pub(crate) fn get(&self, agent: &str, action: Action) -> &PolicySet {
        let sets = self.by_agent.get(agent).unwrap_or(&self.global);
        &sets[action as usize]
    }
}

fn add(sets: &mut PerAction, p: &Policy) {
    for i in action_indices(p) {
        // Ids are unique by construction; a failure here would be a loader bug, and
        // dropping the policy could turn a forbid into an allow, so it must not be silent.
        sets[i]
            .add(p.clone())
            .expect("policy ids are checked for uniqueness before slicing");
    }
}

/// The actions a policy's scope can match. Anything unrecognised (an action group, should
/// the schema ever declare one) counts as every action, the safe direction.
fn action_indices(p: &Policy) -> Vec<usize> {
    let all = || (0..Action::ALL.len()).collect();
    let uids: Vec<EntityUid> = match p.action_constraint() {
        ActionConstraint::Any => return all(),
        ActionConstraint::Eq(uid) => vec![uid],
        ActionConstraint::In(uids) => uids,
    };
    let mut out = Vec::with_capacity(uids.len());
    for uid in &uids {
        let found = (uid.type_name().to_string() == ACTION)
            .then(|| {
                Action::ALL
                    .iter()
                    .position(|a| a.as_str() == uid.id().unescaped())
            })
            .flatten();
        match found {
            Some(i) => out.push(i),
            None => return all(),
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The agents a policy can apply to, or empty when it may apply to any agent.
fn agent_keys(p: &Policy) -> Vec<String> {
    let uid = match p.principal_constraint() {
        PrincipalConstraint::Eq(uid)
        | PrincipalConstraint::In(uid)
        | PrincipalConstraint::IsIn(_, uid) => uid,
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
        id.match_indices('/')
            .map(|(i, _)| &id[..i])
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    } else {
        // Any other principal type never matches a Warden principal; keeping it global
        // keeps this function from deciding anything.
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::{action_indices, agent_keys};
    use crate::classification::Action;
    use cedar_policy::{Policy, PolicyId};

    fn policy(text: &str) -> Policy {
        Policy::parse(Some(PolicyId::new("p")), text).unwrap()
    }

    #[test]
    fn node_ids_with_slashes_key_every_possible_agent() {
        let p = policy(r#"permit(principal == Warden::Node::"a/b/c", action, resource);"#);
        assert_eq!(agent_keys(&p), vec!["a".to_string(), "a/b".to_string()]);
        let p =
            policy(r#"permit(principal is Warden::Node in Warden::Agent::"a", action, resource);"#);
        assert_eq!(agent_keys(&p), vec!["a".to_string()]);
        let p = policy(r#"permit(principal == Warden::Node::"noslash", action, resource);"#);
        assert!(agent_keys(&p).is_empty(), "malformed node ids stay global");
    }

    #[test]
    fn unknown_actions_count_as_every_action() {
        let p = policy(
            r#"permit(principal, action in [Warden::Action::"delete", Warden::Action::"select"], resource);"#,
        );
        assert_eq!(
            action_indices(&p),
            vec![Action::Select as usize, Action::Delete as usize]
        );
        let p = policy(r#"permit(principal, action in Warden::Action::"writes", resource);"#);
        assert_eq!(action_indices(&p).len(), Action::ALL.len());
    }
}
