//! What a container or network event asks of the source: inspect a
//! container that started, inspect a known one again when it was renamed or
//! connected to or disconnected from a network (its name, interface or
//! addresses changed), forget one that died, or list everything again when
//! an event names a container the source never saw (it missed something).

use std::collections::BTreeSet;

use bollard::models::{EventMessage, EventMessageTypeEnum};

/// The source's answer to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A container started: inspect it.
    Inspect(String),
    /// A known container changed (the action says how): inspect it again.
    Reinspect(String, String),
    /// A known container died: it is gone.
    Remove(String),
    /// Something the source does not know happened: list again.
    Relist(String),
    /// Nothing to do.
    Ignore,
}

/// What `event` asks, given the `known` container ids.
pub fn wanted(event: &EventMessage, known: &BTreeSet<String>) -> Wanted {
    let actor = event.actor.as_ref();
    let action = event.action.as_deref().unwrap_or("");
    if event.typ == Some(EventMessageTypeEnum::NETWORK) {
        // Docker names the container in an attribute (the actor is the
        // network), Podman as the actor.
        let id = actor
            .and_then(|a| a.attributes.as_ref()?.get("container").cloned())
            .or_else(|| actor.and_then(|a| a.id.clone()))
            .unwrap_or_default();
        return match action {
            "connect" | "disconnect" if known.contains(&id) => {
                Wanted::Reinspect(id, format!("network {action}"))
            }
            _ => Wanted::Ignore, // not a container we follow
        };
    }
    let id = actor.and_then(|a| a.id.clone()).unwrap_or_default();
    match action {
        "start" => Wanted::Inspect(id),
        "rename" if known.contains(&id) => Wanted::Reinspect(id, "rename".into()),
        "die" if known.contains(&id) => Wanted::Remove(id),
        "die" => Wanted::Relist(format!(
            "die of container {}, which was never seen",
            short(&id)
        )),
        _ => Wanted::Ignore,
    }
}

/// A container id as people see it.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn event(action: &str, id: &str) -> EventMessage {
        EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: None,
            }),
            ..Default::default()
        }
    }

    /// A network event as Docker sends it (the actor is the network, the
    /// container an attribute) or, without `network`, as Podman does.
    fn network_event(action: &str, container: &str, network: Option<&str>) -> EventMessage {
        let (id, attributes) = match network {
            Some(n) => (n, [("container".to_string(), container.to_string())].into()),
            None => (container, [("name".to_string(), "web".to_string())].into()),
        };
        EventMessage {
            typ: Some(EventMessageTypeEnum::NETWORK),
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: Some(attributes),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn renames_and_network_changes_of_known_containers_are_inspected_again() {
        let known = BTreeSet::from(["6b1b046615ec002ff5".to_string()]);
        assert_eq!(
            wanted(&event("rename", "6b1b046615ec002ff5"), &known),
            Wanted::Reinspect("6b1b046615ec002ff5".into(), "rename".into())
        );
        assert_eq!(
            wanted(&event("rename", "e74eb1612269"), &known),
            Wanted::Ignore
        );
        for network in [Some("c3d8a1f0e2b4"), None] {
            for action in ["connect", "disconnect"] {
                assert_eq!(
                    wanted(
                        &network_event(action, "6b1b046615ec002ff5", network),
                        &known
                    ),
                    Wanted::Reinspect("6b1b046615ec002ff5".into(), format!("network {action}"))
                );
                assert_eq!(
                    wanted(&network_event(action, "e74eb1612269", network), &known),
                    Wanted::Ignore,
                    "a container not followed"
                );
            }
            assert_eq!(
                wanted(
                    &network_event("create", "6b1b046615ec002ff5", network),
                    &known
                ),
                Wanted::Ignore
            );
        }
    }

    #[test]
    fn starts_are_inspected_known_deaths_removed_and_unknown_ones_relisted() {
        let known = BTreeSet::from(["6b1b046615ec002ff5".to_string()]);
        assert_eq!(
            wanted(&event("start", "e74eb1612269dac0"), &known),
            Wanted::Inspect("e74eb1612269dac0".into())
        );
        assert_eq!(
            wanted(&event("die", "6b1b046615ec002ff5"), &known),
            Wanted::Remove("6b1b046615ec002ff5".into())
        );
        assert_eq!(
            wanted(&event("die", "e74eb1612269dac0"), &known),
            Wanted::Relist("die of container e74eb1612269, which was never seen".into())
        );
        for other in ["create", "init", "stop", "cleanup", "remove"] {
            assert_eq!(wanted(&event(other, "x"), &known), Wanted::Ignore);
        }
    }
}
