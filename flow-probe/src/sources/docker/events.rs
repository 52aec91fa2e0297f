//! What a container event asks of the source: inspect a container that
//! started, forget one that died, or list everything again when an event
//! names a container the source never saw (it missed something).

use std::collections::BTreeSet;

use bollard::models::EventMessage;

/// The source's answer to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    /// A container started: inspect it.
    Inspect(String),
    /// A known container died: it is gone.
    Remove(String),
    /// Something the source does not know happened: list again.
    Relist(String),
    /// Nothing to do.
    Ignore,
}

/// What `event` asks, given the `known` container ids.
pub fn wanted(event: &EventMessage, known: &BTreeSet<String>) -> Wanted {
    let id = event
        .actor
        .as_ref()
        .and_then(|a| a.id.clone())
        .unwrap_or_default();
    match event.action.as_deref().unwrap_or("") {
        "start" => Wanted::Inspect(id),
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
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some(id.into()),
                attributes: None,
            }),
            ..Default::default()
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
