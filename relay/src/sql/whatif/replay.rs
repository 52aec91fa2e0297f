//! One flow's replay: its first packet (local endpoint, peer, direction,
//! protocol, port, ICMP type; read by [`super::packet`]) judged by
//! `cluster_spec::policy::Judge` twice,
//! against the state its node had in force when it passed (recorded in
//! [`PolicyStates`], named by the flow's `policy_version`) and against that
//! state with the draft applied. Each state's two judges are compiled once
//! and shared by every partition of the query.
//!
//! The draft applies as `observe policy apply` would: a draft policy with the
//! namespace and name of one in force replaces it (in its place, so ties
//! between allows still go to the same index), the others are added.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cluster_spec::policy::{
    self, Decision, Direction, FirstPacket, Judge, Policy, PolicyError, PolicyState, Verdict,
};

use crate::history::policies::PolicyStates;

/// How a flow's verdict would change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Change {
    /// Allowed (forwarded or audited) today, dropped with the draft.
    AllowedToDenied,
    /// Dropped today, allowed with the draft.
    DeniedToAllowed,
    /// Forwarded today, audited with the draft: what an audit-mode draft
    /// would deny once enforced.
    AllowedToAudit,
    /// Audited today (a would-be drop), forwarded with the draft: what the
    /// draft's rules cover before enforcement is turned on.
    AuditToAllowed,
    Unchanged,
    /// Not replayed: [`Outcome::problem`] says why.
    Unreplayed,
}

impl Change {
    pub fn name(self) -> &'static str {
        match self {
            Change::AllowedToDenied => "ALLOWED_TO_DENIED",
            Change::DeniedToAllowed => "DENIED_TO_ALLOWED",
            Change::AllowedToAudit => "ALLOWED_TO_AUDIT",
            Change::AuditToAllowed => "AUDIT_TO_ALLOWED",
            Change::Unchanged => "UNCHANGED",
            Change::Unreplayed => "UNREPLAYED",
        }
    }
}

/// A decision as the what-if reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub verdict: &'static str,
    /// `namespace/name` of the policy that decided, `default deny`, or
    /// `None` when no policy judges the packet.
    pub rule: Option<String>,
}

/// What the replay of one flow says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub change: Change,
    /// The judged direction, seen from the local endpoint.
    pub direction: Option<Direction>,
    pub before: Option<Judged>,
    pub after: Option<Judged>,
    pub problem: Option<String>,
}

impl Outcome {
    pub fn unreplayed(problem: String) -> Self {
        Outcome {
            change: Change::Unreplayed,
            direction: None,
            before: None,
            after: None,
            problem: Some(problem),
        }
    }
}

/// The draft policies of a what-if, checked.
#[derive(Debug, Default)]
pub struct Draft {
    policies: Vec<Policy>,
}

impl Draft {
    /// Each text is one or more policy documents (`draft`, or `draft N` of
    /// several in errors). A namespace and name may be defined once.
    pub fn parse(texts: &[String]) -> Result<Draft, PolicyError> {
        let files: Vec<policy::PolicyFile> = texts
            .iter()
            .enumerate()
            .map(|(i, text)| policy::PolicyFile {
                name: if texts.len() == 1 {
                    "draft".into()
                } else {
                    format!("draft {}", i + 1)
                },
                text: text.clone(),
            })
            .collect();
        let state = PolicyState {
            files,
            ..Default::default()
        };
        Ok(Draft {
            policies: state.policies()?,
        })
    }

    /// `in_force` with the draft applied.
    fn apply(&self, in_force: Vec<Policy>) -> Vec<Policy> {
        let key = |p: &Policy| (p.namespace.clone(), p.name.clone());
        let drafts: HashMap<_, _> = self.policies.iter().map(|p| (key(p), p)).collect();
        let mut out: Vec<Policy> = in_force
            .into_iter()
            .map(|p| drafts.get(&key(&p)).map_or(p, |d| (*d).clone()))
            .collect();
        for d in &self.policies {
            if !out.iter().any(|p| key(p) == key(d)) {
                out.push(d.clone());
            }
        }
        out
    }
}

/// A recorded state's judges: as it was, and with the draft.
pub struct Judges {
    before: Judge,
    after: Judge,
}

/// Replays flows for one query.
pub struct Replayer {
    draft: Draft,
    states: Arc<PolicyStates>,
    /// Per version: its judges, or why there are none.
    judges: Mutex<HashMap<String, Result<Arc<Judges>, String>>>,
}

impl std::fmt::Debug for Replayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replayer({} draft policies)", self.draft.policies.len())
    }
}

impl Replayer {
    pub fn new(draft: Draft, states: Arc<PolicyStates>) -> Self {
        Replayer {
            draft,
            states,
            judges: Mutex::new(HashMap::new()),
        }
    }

    /// The judges of the state `version` names, compiled on first use.
    pub fn judges(&self, version: &str) -> Result<Arc<Judges>, String> {
        let mut cache = self.judges.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(j) = cache.get(version) {
            return j.clone();
        }
        let made = self.compile(version);
        cache.insert(version.to_string(), made.clone());
        made
    }

    fn compile(&self, version: &str) -> Result<Arc<Judges>, String> {
        let state = self
            .states
            .state(version)
            .ok_or_else(|| format!("policy version {version} is not in history"))?;
        let in_force = state
            .policies()
            .map_err(|e| format!("policy version {version}: {e}"))?;
        let after = self.draft.apply(in_force.clone());
        let judge = |policies: &[Policy]| {
            Judge::new(
                policy::compile(policies, &state.endpoints),
                &state.endpoints,
            )
        };
        Ok(Arc::new(Judges {
            before: judge(&in_force),
            after: judge(&after),
        }))
    }
}

impl Judges {
    /// The replay of a connection's first packet (`version` names the
    /// state these judges come from, for the problem of an unknown address).
    pub fn replay(&self, packet: &FirstPacket, version: &str) -> Outcome {
        let (Some(before), Some(after)) = (self.before.judge(packet), self.after.judge(packet))
        else {
            return Outcome::unreplayed(format!(
                "{} is no endpoint of policy version {version}",
                packet.local
            ));
        };
        let change = match (before.verdict, after.verdict) {
            (b, a) if b.allows() && !a.allows() => Change::AllowedToDenied,
            (b, a) if !b.allows() && a.allows() => Change::DeniedToAllowed,
            (Verdict::Forwarded, Verdict::Audit) => Change::AllowedToAudit,
            (Verdict::Audit, Verdict::Forwarded) => Change::AuditToAllowed,
            _ => Change::Unchanged,
        };
        Outcome {
            change,
            direction: Some(packet.direction),
            before: Some(judged(&self.before, &before)),
            after: Some(judged(&self.after, &after)),
            problem: None,
        }
    }
}

fn judged(judge: &Judge, d: &Decision) -> Judged {
    let rule = match (d.judged, d.policy) {
        (false, _) => None,
        (true, Some(i)) => judge
            .compiled()
            .policies
            .get(i as usize)
            .map(|p| format!("{}/{}", p.namespace, p.name)),
        (true, None) => Some("default deny".to_string()),
    };
    Judged {
        verdict: d.verdict.name(),
        rule,
    }
}
