//! Merges what every source sent into one endpoint list: each endpoint gets a
//! unique id (its own, or one the catalog hands out and keeps for the
//! endpoint's life), and an endpoint that claims an id or an address another
//! one already has is kept out of the list and reported instead of silently
//! shadowing it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use cluster_spec::endpoints::EndpointsFile;

use super::{Discovered, Update};

/// Highest id the catalog hands out (Cilium's endpoint ids are 16 bits).
const MAX_ID: u32 = 65_535;

/// One endpoint of the merged list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The source's name.
    pub source: &'static str,
    /// The endpoint, with its final id.
    pub found: Discovered,
}

/// The merged list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Merged {
    /// Every endpoint without a conflict: ids and addresses unique.
    pub file: EndpointsFile,
    /// Every endpoint, those with a conflict carrying it as their problem.
    pub entries: Vec<Entry>,
    /// Every source awaited ([`Catalog::await_first`]) has sent its first
    /// whole list: an endpoint missing here is gone, not just not listed yet.
    pub complete: bool,
}

/// What every source sent, merged.
#[derive(Debug, Default)]
pub struct Catalog {
    by_source: BTreeMap<&'static str, BTreeMap<String, Discovered>>,
    /// Ids handed out, by source and key.
    assigned: HashMap<(&'static str, String), u32>,
    next_id: u32,
    /// Sources whose first whole list has not come yet.
    awaited: BTreeSet<&'static str>,
}

impl Catalog {
    pub fn new() -> Self {
        Catalog::default()
    }

    /// Counts the list incomplete until `source` has sent its first whole
    /// list ([`Update::Replace`]).
    pub fn await_first(&mut self, source: &'static str) {
        self.awaited.insert(source);
    }

    /// Applies one update of `source`; returns whether anything changed
    /// (a first whole list always does: the list may be complete now).
    pub fn apply(&mut self, source: &'static str, update: Update) -> bool {
        let known = self.by_source.entry(source).or_default();
        let before = known.clone();
        let mut first = false;
        match update {
            Update::Replace(all) => {
                *known = all.into_iter().map(|d| (d.key.clone(), d)).collect();
                first = self.awaited.remove(source);
            }
            Update::Upsert(one) => {
                known.insert(one.key.clone(), *one);
            }
            Update::Remove(key) => {
                known.remove(&key);
            }
        }
        let changed = first || *known != before;
        let live: BTreeSet<String> = known.keys().cloned().collect();
        self.assigned
            .retain(|(s, key), _| *s != source || live.contains(key));
        changed
    }

    /// The merged list. Endpoints with their own ids come first (in source
    /// order), so an id handed out never displaces one a file fixed.
    pub fn merged(&mut self) -> Merged {
        let mut order: Vec<(&'static str, Discovered)> = self
            .by_source
            .iter()
            .flat_map(|(s, known)| known.values().map(|d| (*s, d.clone())))
            .collect();
        order.sort_by_key(|(_, d)| d.endpoint.id == 0);
        let mut ids_taken: BTreeMap<u32, String> = BTreeMap::new();
        let mut addrs_taken: HashMap<IpAddr, String> = HashMap::new();
        let own_ids: BTreeSet<u32> = order
            .iter()
            .map(|(_, d)| d.endpoint.id)
            .filter(|id| *id != 0)
            .collect();
        let mut merged = Merged {
            complete: self.awaited.is_empty(),
            ..Merged::default()
        };
        for (source, mut found) in order {
            if found.endpoint.id == 0 {
                found.endpoint.id = self.id_for(source, &found.key, &own_ids);
            }
            let ep = &found.endpoint;
            let who = format!("{}/{} ({source})", ep.namespace, ep.name);
            let addrs: Vec<IpAddr> = ep
                .ipv4
                .map(IpAddr::V4)
                .into_iter()
                .chain(ep.ipv6.map(IpAddr::V6))
                .collect();
            let conflict = if let Some(other) = ids_taken.get(&ep.id) {
                Some(format!("endpoint id {} is also {other}'s", ep.id))
            } else {
                addrs.iter().find_map(|a| {
                    addrs_taken
                        .get(a)
                        .map(|other| format!("address {a} is also {other}'s"))
                })
            };
            match conflict {
                Some(problem) => found.problem = Some(problem),
                None => {
                    ids_taken.insert(ep.id, who.clone());
                    for a in addrs {
                        addrs_taken.insert(a, who.clone());
                    }
                    merged.file.endpoints.push(found.endpoint.clone());
                }
            }
            merged.entries.push(Entry { source, found });
        }
        merged
    }

    /// The id of a source's endpoint without one: the one it got before, or
    /// the next free one (never one an endpoint brings, nor one in use).
    fn id_for(&mut self, source: &'static str, key: &str, own: &BTreeSet<u32>) -> u32 {
        let slot = (source, key.to_string());
        if let Some(id) = self.assigned.get(&slot) {
            return *id;
        }
        let in_use: BTreeSet<u32> = self.assigned.values().copied().collect();
        loop {
            self.next_id = if self.next_id >= MAX_ID {
                1
            } else {
                self.next_id + 1
            };
            if !own.contains(&self.next_id) && !in_use.contains(&self.next_id) {
                break;
            }
        }
        self.assigned.insert(slot, self.next_id);
        self.next_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_spec::endpoints::Endpoint;

    fn ep(id: u32, name: &str, ipv4: &str) -> Endpoint {
        Endpoint {
            id,
            name: name.into(),
            namespace: "default".into(),
            labels: BTreeMap::from([("app".to_string(), name.to_string())]),
            workload: None,
            ipv4: Some(ipv4.parse().unwrap()),
            ipv6: None,
            node: "node1".into(),
            interface: None,
            netns: None,
        }
    }

    fn ids(m: &Merged) -> Vec<(String, u32, Option<String>)> {
        m.entries
            .iter()
            .map(|e| {
                let ep = &e.found.endpoint;
                (ep.name.clone(), ep.id, e.found.problem.clone())
            })
            .collect()
    }

    #[test]
    fn containers_get_ids_beside_the_files_and_keep_them_until_they_go() {
        let mut c = Catalog::new();
        let file = vec![
            Discovered::new("1", ep(1, "api", "198.18.1.10")),
            Discovered::new("2", ep(2, "db", "198.18.1.11")),
        ];
        assert!(c.apply("file", Update::Replace(file)));
        let web = Discovered::new("c-web", ep(0, "web", "198.18.1.20"));
        assert!(c.apply("docker", Update::Upsert(Box::new(web.clone()))));
        assert!(
            !c.apply("docker", Update::Upsert(Box::new(web))),
            "nothing new"
        );
        let cache = Discovered::new("c-cache", ep(0, "cache", "198.18.1.21"));
        c.apply("docker", Update::Upsert(Box::new(cache)));
        let m = c.merged();
        assert_eq!(
            ids(&m),
            [
                ("api".to_string(), 1, None),
                ("db".to_string(), 2, None),
                ("cache".to_string(), 3, None),
                ("web".to_string(), 4, None),
            ]
        );
        assert_eq!(m.file.endpoints.len(), 4);
        // The same container keeps its id; a new one never reuses a live one.
        c.apply("docker", Update::Remove("c-web".into()));
        let web2 = Discovered::new("c-web2", ep(0, "web2", "198.18.1.22"));
        c.apply("docker", Update::Upsert(Box::new(web2)));
        assert_eq!(
            ids(&c.merged())[2..],
            [
                ("cache".to_string(), 3, None),
                ("web2".to_string(), 5, None)
            ]
        );
    }

    #[test]
    fn an_address_or_id_claimed_twice_is_kept_out_and_named() {
        let mut c = Catalog::new();
        c.apply(
            "file",
            Update::Replace(vec![Discovered::new("1", ep(1, "api", "198.18.1.10"))]),
        );
        let clash = Discovered::new("c-x", ep(0, "x", "198.18.1.10"));
        c.apply("docker", Update::Replace(vec![clash]));
        let m = c.merged();
        assert_eq!(
            ids(&m)[1],
            (
                "x".to_string(),
                2,
                Some("address 198.18.1.10 is also default/api (file)'s".to_string())
            )
        );
        assert_eq!(m.file.endpoints.len(), 1, "only api is in force");
        // A Replace that leaves the clash out removes it.
        assert!(c.apply("docker", Update::Replace(Vec::new())));
        assert_eq!(c.merged().entries.len(), 1);
    }

    #[test]
    fn the_list_is_complete_once_every_awaited_source_sent_a_whole_list() {
        let mut c = Catalog::new();
        c.await_first("docker");
        let file = vec![Discovered::new("1", ep(1, "api", "198.18.1.10"))];
        assert!(c.apply("file", Update::Replace(file)));
        assert!(!c.merged().complete, "docker has not listed yet");
        // An empty first list changes nothing known, and still completes.
        assert!(c.apply("docker", Update::Replace(Vec::new())));
        assert!(c.merged().complete);
        assert!(!c.apply("docker", Update::Replace(Vec::new())));
        assert!(c.merged().complete);

        let mut c = Catalog::new();
        c.await_first("docker");
        let web = Discovered::new("c-web", ep(0, "web", "198.18.1.20"));
        assert!(c.apply("docker", Update::Upsert(Box::new(web))));
        assert!(!c.merged().complete, "one event is no whole list");
    }
}
