//! Least-privilege policy evaluation with Cedar.
//!
//! # Model (the schema is [`PolicyEngine::schema_text`], `policy/warden.cedarschema`)
//! - **Principal**: `Warden::Node::"<agent>/<node>"` when the session declared a node (its
//!   parent is `Warden::Agent::"<agent>"`, so `principal in Warden::Agent::"x"` covers all
//!   of x's nodes), else `Warden::Agent::"<agent>"`.
//! - **Action**: `Warden::Action::"<Action::as_str()>"`, one per classified access.
//! - **Resource**: the access's object (`Warden::Table::"public.customers"`,
//!   `Warden::Function`, `Warden::Channel`, `Warden::Setting`), whose parent is the session's
//!   `Warden::Target`; or the Target itself when the access names no object.
//! - **Context**: `node` (`""` when none), `agent`, `owner`, `run`, `graph_version`, `target`.
//!
//! A command is allowed only if every access is: no permit means deny, any matching forbid
//! wins, and a Cedar evaluation error denies (fail closed). An empty command is allowed.
//!
//! Decisions are pure functions of (policies, identity, classification), so the caller
//! caches them by (statement, agent, node, policy epoch). That key is only sound while the
//! inputs that vary inside it stay out of the policies' reach: a policy that reads
//! `context.run` or `context.graph_version` makes the decision depend on them too, and
//! [`RequestContext`] is deliberately not passed to Cedar yet for the same reason.

mod error;
pub mod http;
pub mod mcp;
mod reason;
mod slice;

pub use error::{PolicyError, PolicyProblem};

use crate::classification::{Access, Action, Classification, ObjectRef};
use crate::decision::{ApprovalRule, Decision, Effect};
use crate::identity::SessionIdentity;
use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Policy, PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode,
    Validator,
};
use reason::DenyCause;
use slice::Slices;
use std::collections::{HashMap, HashSet};
use std::str::FromStr;

const SCHEMA_TEXT: &str = include_str!("policy/warden.cedarschema");
const SCHEMA_SOURCE: &str = "warden.cedarschema";

/// Per-request facts that are not part of the session identity.
///
/// Not visible to policies yet: decisions are cached per (statement, agent, node, epoch),
/// so a time- or grant-dependent policy would need those in the cache key first. JIT
/// grants will be checked here (an active grant turns a default deny into an allow; it
/// never lifts a forbid).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// Seconds since the Unix epoch at which the command arrived.
    pub now_unix: i64,
    /// The session's active just-in-time grants. A grant turns a default deny of an access
    /// it covers into an allow; it never lifts a `forbid`.
    pub grants: Vec<ActiveGrant>,
}

/// A just-in-time grant as a decision sees it (already filtered to the session's agent and
/// target and to grants active now).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ActiveGrant {
    pub id: String,
    pub node: Option<String>,
    pub run: Option<String>,
    /// Action ids (`Action::as_str`).
    pub actions: Vec<String>,
    /// Object names; empty covers every object of the target (and target-wide accesses).
    pub objects: Vec<String>,
    pub expires_at: i64,
}

impl ActiveGrant {
    fn covers(&self, who: &SessionIdentity, access: &Access) -> bool {
        let object = access.object.as_ref().map(object_name);
        self.node.as_ref().is_none_or(|n| who.node.as_ref() == Some(n))
            && self.run.as_ref().is_none_or(|r| who.run.as_ref() == Some(r))
            && self.actions.iter().any(|a| a == access.action.as_str())
            && (self.objects.is_empty() || object.is_some_and(|o| self.objects.iter().any(|x| x == o)))
    }
}

fn object_name(o: &ObjectRef) -> &str {
    match o {
        ObjectRef::Table(n) | ObjectRef::Function(n) | ObjectRef::Channel(n) | ObjectRef::Setting(n) => n,
    }
}

/// Loaded, validated policies with everything a decision needs precomputed.
pub struct PolicyEngine {
    schema: Schema,
    /// Load order, for [`PolicyEngine::policy_ids`].
    ids: Vec<String>,
    slices: Slices,
    warnings: Vec<PolicyProblem>,
    names: Names,
    authorizer: Authorizer,
    /// Permits that allow only with human approval, by policy id.
    approvals: HashMap<String, ApprovalRule>,
}

impl std::fmt::Debug for PolicyEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyEngine")
            .field("policy_ids", &self.ids)
            .finish_non_exhaustive()
    }
}

/// Parsed once per engine so a decision never parses a type name.
struct Names {
    agent: EntityTypeName,
    node: EntityTypeName,
    target: EntityTypeName,
    table: EntityTypeName,
    function: EntityTypeName,
    channel: EntityTypeName,
    setting: EntityTypeName,
    /// Indexed by `Action as usize` (declaration order, which `Action::ALL` follows).
    actions: Vec<EntityUid>,
}

impl Names {
    fn new() -> Names {
        let ty = |n: &str| EntityTypeName::from_str(n).expect("static entity type names parse");
        let action_ty = ty("Warden::Action");
        Names {
            agent: ty("Warden::Agent"),
            node: ty("Warden::Node"),
            target: ty("Warden::Target"),
            table: ty("Warden::Table"),
            function: ty("Warden::Function"),
            channel: ty("Warden::Channel"),
            setting: ty("Warden::Setting"),
            actions: Action::ALL
                .iter()
                .map(|a| {
                    EntityUid::from_type_name_and_id(action_ty.clone(), EntityId::new(a.as_str()))
                })
                .collect(),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }

    fn object_uid(&self, object: &ObjectRef) -> EntityUid {
        match object {
            ObjectRef::Table(n) => Self::uid(&self.table, n),
            ObjectRef::Function(n) => Self::uid(&self.function, n),
            ObjectRef::Channel(n) => Self::uid(&self.channel, n),
            ObjectRef::Setting(n) => Self::uid(&self.setting, n),
        }
    }
}

/// One policy as found in its source, before it joins the set.
struct Loaded {
    id: String,
    source: usize,
    line: Option<usize>,
    policy: Policy,
}

impl PolicyEngine {
    /// The embedded Cedar schema (`crates/core/src/policy/warden.cedarschema`).
    pub fn schema_text() -> &'static str {
        SCHEMA_TEXT
    }

    /// Parses every source, gives each policy its id (`@id("...")`, else
    /// `<source_name>#<index>` with a 0-based index within the source), and validates the
    /// whole set against the schema in strict mode. All problems are reported, each with
    /// its source and line, not only the first.
    pub fn from_sources(sources: &[(String, String)]) -> Result<PolicyEngine, PolicyError> {
        let schema = load_schema()?;
        let mut problems = Vec::new();
        let mut loaded: Vec<Loaded> = Vec::new();
        for (index, (name, text)) in sources.iter().enumerate() {
            parse_source(index, name, text, &mut loaded, &mut problems);
        }

        // Duplicates are an error rather than a rename: audit records and denial messages
        // cite policies by id, and two rules answering to one name make both ambiguous.
        let mut first_seen: HashMap<&str, &Loaded> = HashMap::new();
        for l in &loaded {
            if let Some(first) = first_seen.get(l.id.as_str()) {
                let at = match first.line {
                    Some(line) => format!("{}:{line}", sources[first.source].0),
                    None => sources[first.source].0.clone(),
                };
                problems.push(PolicyProblem {
                    source: sources[l.source].0.clone(),
                    line: l.line,
                    column: None,
                    policy_id: Some(l.id.clone()),
                    message: format!("duplicate policy id \"{}\" (first defined at {at})", l.id),
                    help: Some("give every policy a unique @id(\"...\")".to_string()),
                });
            } else {
                first_seen.insert(&l.id, l);
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError {
                problems: error::collapse(problems, sources),
            });
        }

        let mut set = PolicySet::new();
        for l in &loaded {
            set.add(l.policy.clone())
                .expect("ids were checked for uniqueness above");
        }
        let by_id: HashMap<&str, &Loaded> = loaded.iter().map(|l| (l.id.as_str(), l)).collect();
        let locate = |id: &PolicyId| -> (&str, &str) {
            match by_id.get(AsRef::<str>::as_ref(id)) {
                Some(l) => (sources[l.source].0.as_str(), sources[l.source].1.as_str()),
                None => ("<policies>", ""),
            }
        };

        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        for e in result.validation_errors() {
            let (source, text) = locate(e.policy_id());
            problems.push(error::from_diagnostic(
                source,
                text,
                Some(e.policy_id().to_string()),
                e,
                e.to_string(),
            ));
        }
        let warnings = result
            .validation_warnings()
            .map(|w| {
                let (source, text) = locate(w.policy_id());
                error::from_diagnostic(
                    source,
                    text,
                    Some(w.policy_id().to_string()),
                    w,
                    format!("warning: {w}"),
                )
            })
            .collect::<Vec<_>>();
        let warnings = error::collapse(warnings, sources);
        if !problems.is_empty() {
            return Err(PolicyError {
                problems: error::collapse(problems, sources),
            });
        }

        let mut approvals = HashMap::new();
        for l in &loaded {
            match approval_rule(l) {
                Ok(Some(rule)) => {
                    approvals.insert(l.id.clone(), rule);
                }
                Ok(None) => {}
                Err(message) => problems.push(PolicyProblem {
                    source: sources[l.source].0.clone(),
                    line: l.line,
                    column: None,
                    policy_id: Some(l.id.clone()),
                    message,
                    help: Some("use @approval(\"wait\"), @approval(\"resume\") or @approval(\"required\") on a permit, and @quorum(\"N\") with N >= 1".to_string()),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(PolicyError { problems });
        }

        let policies: Vec<Policy> = loaded.iter().map(|l| l.policy.clone()).collect();
        Ok(PolicyEngine {
            schema,
            ids: loaded.into_iter().map(|l| l.id).collect(),
            slices: Slices::build(&policies),
            warnings,
            names: Names::new(),
            authorizer: Authorizer::new(),
            approvals,
        })
    }

    /// Ids of all loaded policies, in load order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.ids.clone()
    }

    /// Validator warnings (e.g. a policy that can never apply): accepted, but worth
    /// printing in `warden policy check`.
    pub fn warnings(&self) -> &[PolicyProblem] {
        &self.warnings
    }

    /// The parsed schema, for callers that validate entities or requests themselves.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Decides one classified command for one session.
    ///
    /// Accesses are checked in statement order and the first denial ends the evaluation,
    /// so `denied_access` is the first denied access as the command wrote it.
    pub fn decide(
        &self,
        who: &SessionIdentity,
        command: &Classification,
        ctx: &RequestContext,
    ) -> Decision {
        let mut accesses: Vec<&Access> = Vec::new();
        for a in command.statements.iter().flat_map(|s| s.accesses.iter()) {
            // Commands touch a handful of objects; a linear scan beats hashing here.
            if !accesses.contains(&a) {
                accesses.push(a);
            }
        }
        let Some(first) = accesses.first() else {
            return Decision {
                effect: Effect::Allow,
                policy_ids: Vec::new(),
                denied_access: None,
                reason: "warden: empty command".to_string(),
                approval: None,
                valid_until: None,
            };
        };

        let Ok((principal, entities, context, target)) = self.request_parts(who, &accesses) else {
            return deny(who, first, DenyCause::EvaluationError, Vec::new());
        };

        let mut permits: Vec<String> = Vec::new();
        let mut valid_until: Option<i64> = None;
        for access in &accesses {
            let resource = match &access.object {
                Some(o) => self.names.object_uid(o),
                None => target.clone(),
            };
            let action = self.names.actions[access.action as usize].clone();
            let Ok(request) =
                Request::new(principal.clone(), action, resource, context.clone(), None)
            else {
                return deny(who, access, DenyCause::EvaluationError, Vec::new());
            };
            let policies = self.slices.get(&who.agent, access.action);
            let response = self.authorizer.is_authorized(&request, policies, &entities);
            let diagnostics = response.diagnostics();
            if diagnostics.errors().next().is_some() {
                // Even when the remaining policies allow, an erroring policy might have
                // been the forbid meant to stop this access.
                let ids = sorted(diagnostics.errors().map(|e| match e {
                    cedar_policy::AuthorizationError::PolicyEvaluationError(e) => {
                        e.policy_id().to_string()
                    }
                }));
                return deny(who, access, DenyCause::EvaluationError, ids);
            }
            let reasons = sorted(diagnostics.reason().map(|id| id.to_string()));
            match response.decision() {
                CedarDecision::Allow => permits.extend(reasons),
                CedarDecision::Deny if reasons.is_empty() => {
                    match ctx.grants.iter().filter(|g| g.covers(who, access)).max_by_key(|g| g.expires_at) {
                        Some(g) => {
                            permits.push(format!("grant:{}", g.id));
                            valid_until = Some(valid_until.map_or(g.expires_at, |v| v.min(g.expires_at)));
                        }
                        None => return deny(who, access, DenyCause::Default, Vec::new()),
                    }
                }
                CedarDecision::Deny => {
                    let reason = reason::denial(who, access, DenyCause::Forbid(&reasons));
                    return Decision {
                        effect: Effect::Deny,
                        policy_ids: reasons,
                        denied_access: Some((*access).clone()),
                        reason,
                        approval: None,
                        valid_until: None,
                    };
                }
            }
        }
        let policy_ids = sorted(permits.into_iter());
        self.allow_or_hold(policy_ids, "command", valid_until)
    }

    /// The decision once every access is permitted by `policy_ids`: Hold when any of those
    /// permits asks for approval (conservatively, even if another permit alone would have
    /// allowed it), else Allow. Shared by the database, HTTP, LLM and MCP decisions.
    pub(crate) fn allow_or_hold(&self, policy_ids: Vec<String>, what: &str, valid_until: Option<i64>) -> Decision {
        let approval = policy_ids.iter().filter_map(|id| self.approvals.get(id)).max_by_key(|r| r.quorum).cloned();
        if let Some(rule) = approval {
            let reason = format!("warden: policy \"{}\" requires human approval of this exact {what}", rule.policy_id);
            return Decision { effect: Effect::Hold, policy_ids, denied_access: None, reason, approval: Some(rule), valid_until };
        }
        let reason = format!("warden: allowed by {}", quoted_list(&policy_ids));
        Decision { effect: Effect::Allow, policy_ids, denied_access: None, reason, approval: None, valid_until }
    }

    /// Principal, entities, context and target uid shared by every access of a command:
    /// built once per decision, with one entity per distinct object.
    fn request_parts(
        &self,
        who: &SessionIdentity,
        accesses: &[&Access],
    ) -> Result<(EntityUid, Entities, Context, EntityUid), ()> {
        let n = &self.names;
        let agent_uid = Names::uid(&n.agent, &who.agent);
        let target_uid = Names::uid(&n.target, &who.target);
        let mut entities = Vec::with_capacity(accesses.len() + 3);
        entities.push(entity(agent_uid.clone(), &[("owner", &who.owner)], None)?);
        entities.push(entity(target_uid.clone(), &[("name", &who.target)], None)?);
        let principal = match &who.node {
            Some(node) => {
                let uid = Names::uid(&n.node, &format!("{}/{node}", who.agent));
                entities.push(entity(uid.clone(), &[("name", node)], Some(&agent_uid))?);
                uid
            }
            None => agent_uid,
        };
        let mut seen: Vec<&ObjectRef> = Vec::with_capacity(accesses.len());
        for object in accesses.iter().filter_map(|a| a.object.as_ref()) {
            if seen.contains(&object) {
                continue;
            }
            seen.push(object);
            let uid = n.object_uid(object);
            let e = match object {
                ObjectRef::Table(name) => {
                    // The classifier always qualifies table names; an unqualified one gets
                    // schema "" so `resource.schema == "public"` cannot match it by accident.
                    let (schema, rel) = name.split_once('.').unwrap_or(("", name));
                    entity(uid, &[("schema", schema), ("name", rel)], Some(&target_uid))?
                }
                ObjectRef::Function(name) | ObjectRef::Channel(name) | ObjectRef::Setting(name) => {
                    entity(uid, &[("name", name)], Some(&target_uid))?
                }
            };
            entities.push(e);
        }
        let entities = Entities::from_entities(entities, None).map_err(|_| ())?;
        let node = who.node.as_deref().unwrap_or("");
        let context = Context::from_pairs([
            (
                "node".to_string(),
                RestrictedExpression::new_string(node.to_string()),
            ),
            (
                "agent".to_string(),
                RestrictedExpression::new_string(who.agent.clone()),
            ),
            (
                "owner".to_string(),
                RestrictedExpression::new_string(who.owner.clone()),
            ),
            (
                "run".to_string(),
                RestrictedExpression::new_string(who.run.clone().unwrap_or_default()),
            ),
            (
                "graph_version".to_string(),
                RestrictedExpression::new_string(who.graph_version.clone().unwrap_or_default()),
            ),
            (
                "target".to_string(),
                RestrictedExpression::new_string(who.target.clone()),
            ),
        ])
        .map_err(|_| ())?;
        Ok((principal, entities, context, target_uid))
    }
}

fn entity(
    uid: EntityUid,
    attrs: &[(&str, &str)],
    parent: Option<&EntityUid>,
) -> Result<Entity, ()> {
    let attrs: HashMap<String, RestrictedExpression> = attrs
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                RestrictedExpression::new_string(v.to_string()),
            )
        })
        .collect();
    let parents: HashSet<EntityUid> = parent.into_iter().cloned().collect();
    Entity::new(uid, attrs, parents).map_err(|_| ())
}

fn deny(
    who: &SessionIdentity,
    access: &Access,
    cause: DenyCause<'_>,
    policy_ids: Vec<String>,
) -> Decision {
    Decision {
        effect: Effect::Deny,
        reason: reason::denial(who, access, cause),
        policy_ids,
        denied_access: Some(access.clone()),
        approval: None,
        valid_until: None,
    }
}

fn sorted(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = ids.collect();
    v.sort();
    v.dedup();
    v
}

fn quoted_list(ids: &[String]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("\"{id}\"")).collect();
    let noun = if ids.len() == 1 { "policy" } else { "policies" };
    format!("{noun} {}", quoted.join(", "))
}

fn load_schema() -> Result<Schema, PolicyError> {
    Schema::from_cedarschema_str(SCHEMA_TEXT)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| PolicyError {
            problems: vec![error::from_diagnostic(
                SCHEMA_SOURCE,
                SCHEMA_TEXT,
                None,
                &e,
                e.to_string(),
            )],
        })
}

/// Parses one source into `loaded`, or records why it cannot be.
fn parse_source(
    index: usize,
    name: &str,
    text: &str,
    loaded: &mut Vec<Loaded>,
    problems: &mut Vec<PolicyProblem>,
) {
    let set = match PolicySet::from_str(text) {
        Ok(set) => set,
        Err(errs) => {
            for e in errs.iter() {
                problems.push(error::from_diagnostic(name, text, None, e, e.to_string()));
            }
            return;
        }
    };
    // Cedar names policies "policy<N>" in source order; its sets iterate in hash order.
    let ordinal = |id: &PolicyId| -> usize {
        AsRef::<str>::as_ref(id)
            .strip_prefix("policy")
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX)
    };
    let mut items: Vec<(usize, Option<&Policy>, Option<String>)> = set
        .policies()
        .map(|p| (ordinal(p.id()), Some(p), p.to_cedar()))
        .chain(
            set.templates()
                .map(|t| (ordinal(t.id()), None, Some(t.to_cedar()))),
        )
        .collect();
    items.sort_by_key(|(n, _, _)| *n);

    // Cedar keeps each policy's exact text but not its offset; finding the texts in order
    // recovers the line, which duplicate-id and template errors need.
    let mut cursor = 0;
    for (position, (_, policy, policy_text)) in items.into_iter().enumerate() {
        let line = policy_text
            .and_then(|t| text[cursor..].find(&t).map(|at| (at + cursor, t.len())))
            .map(|(start, len)| {
                cursor = start + len;
                error::line_col(text, start).0
            });
        let Some(policy) = policy else {
            problems.push(PolicyProblem {
                source: name.to_string(),
                line,
                column: None,
                policy_id: None,
                message:
                    "templates (policies with ?principal or ?resource slots) are not supported"
                        .to_string(),
                help: Some("write a static policy naming the principal or resource".to_string()),
            });
            continue;
        };
        let id = match policy.annotation("id") {
            Some(id) if !id.trim().is_empty() => id.to_string(),
            Some(_) => {
                problems.push(PolicyProblem {
                    source: name.to_string(),
                    line,
                    column: None,
                    policy_id: None,
                    message: "empty @id annotation".to_string(),
                    help: Some("write @id(\"some-name\") or drop the annotation".to_string()),
                });
                continue;
            }
            None => format!("{name}#{position}"),
        };
        loaded.push(Loaded {
            policy: policy.new_id(PolicyId::new(&id)),
            id,
            source: index,
            line,
        });
    }
}

/// Reads `@approval` / `@quorum` from a policy. Only permits can ask for approval: a
/// forbid that "requires approval" would be a permit in disguise.
fn approval_rule(l: &Loaded) -> Result<Option<ApprovalRule>, String> {
    let Some(mode) = l.policy.annotation("approval") else {
        if l.policy.annotation("quorum").is_some() {
            return Err("@quorum without @approval".to_string());
        }
        return Ok(None);
    };
    if l.policy.effect() != cedar_policy::Effect::Permit {
        return Err("@approval only applies to permit policies".to_string());
    }
    let mode = match mode {
        "wait" | "resume" => Some(mode.to_string()),
        "required" | "" => None,
        other => return Err(format!("@approval(\"{other}\") is not wait, resume or required")),
    };
    let quorum = match l.policy.annotation("quorum") {
        None => 1,
        Some(q) => q.parse::<u32>().ok().filter(|q| *q >= 1).ok_or_else(|| format!("@quorum(\"{q}\") is not a whole number >= 1"))?,
    };
    Ok(Some(ApprovalRule { policy_id: l.id.clone(), mode, quorum }))
}
