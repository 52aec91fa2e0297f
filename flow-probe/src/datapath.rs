//! Programs the datapath maps from a compiled policy: the ipcache (address →
//! identity), where each endpoint's address is (its interface here, or another
//! node), the endpoints (interface → endpoint, enforcement) and the policy
//! rules. Updates are ordered so that no packet of an allowed connection is ever
//! judged against a half-written policy: new addresses and rules first, then
//! enforcement, then removal of what is gone.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap as BpfHashMap, IterableMap, MapData};
use cluster_spec::endpoints::EndpointsFile;

use crate::kernel::events::{
    EndpointAddr, EndpointInfo, IpcacheAddr, IpcacheValue, PolicyKey, PolicyValue, enforcement,
};
use crate::kernel::loader::DatapathMaps;
use cluster_spec::policy::{Action, CompiledPolicy, Enforcement, PolicyRef, ipcache};

/// Policy names by the id the kernel reports, for enriching verdicts. Ids come
/// from the policy's namespace and name, so they stay valid across changes.
#[derive(Debug, Default)]
pub struct PolicyNames {
    by_id: RwLock<HashMap<u32, PolicyRef>>,
}

impl PolicyNames {
    pub fn get(&self, id: u32) -> Option<PolicyRef> {
        self.by_id
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    pub(crate) fn insert(&self, id: u32, p: PolicyRef) {
        self.by_id
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, p);
    }
}

/// Stable, non-zero kernel id of a policy (0 means "no policy").
pub fn policy_id(namespace: &str, name: &str) -> u32 {
    let h = format!("{namespace}/{name}")
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    h.max(1)
}

/// What one sync changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    pub rules_written: usize,
    pub rules_removed: usize,
    pub endpoints: usize,
    pub addresses: usize,
}

pub struct Datapath {
    maps: DatapathMaps,
    /// Host-side interface of each endpoint this probe is attached to.
    ifindex_of: HashMap<u32, u32>,
    pub names: Arc<PolicyNames>,
}

fn ipcache_key(addr: IpAddr, prefix_len: u8) -> Key<IpcacheAddr> {
    // The LPM length covers family and padding (32 bits) before the address.
    Key::new(32 + u32::from(prefix_len), kernel_addr(addr))
}

fn kernel_addr(addr: IpAddr) -> EndpointAddr {
    let mut a = EndpointAddr::default();
    match addr {
        IpAddr::V4(v4) => {
            a.family = 4;
            a.addr[..4].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            a.family = 6;
            a.addr = v6.octets();
        }
    }
    a
}

fn addr_bytes(a: &IpcacheAddr) -> [u8; 20] {
    let mut out = [0u8; 20];
    out[0] = a.family;
    out[4..].copy_from_slice(&a.addr);
    out
}

/// Removes the keys of `map` that `keep` refuses; returns how many.
fn remove_unwanted<K: aya::Pod, V: aya::Pod>(
    map: &mut BpfHashMap<MapData, K, V>,
    keep: impl Fn(&K) -> bool,
) -> anyhow::Result<usize> {
    let stale: Vec<K> = map
        .keys()
        .filter_map(Result::ok)
        .filter(|k| !keep(k))
        .collect();
    for k in &stale {
        map.remove(k)?;
    }
    Ok(stale.len())
}

/// How many entries a kernel table holds.
fn capacity(map: &MapData) -> anyhow::Result<usize> {
    Ok(map.info()?.max_entries() as usize)
}

/// Refuses `wanted` entries of `what` for a table that holds fewer.
fn room(what: &str, wanted: usize, map: &MapData) -> anyhow::Result<()> {
    let capacity = capacity(map)?;
    if wanted > capacity {
        anyhow::bail!(
            "{wanted} {what}, more than the datapath's table holds ({capacity}); nothing was changed"
        );
    }
    Ok(())
}

fn mode(e: &Enforcement) -> u8 {
    match e {
        Enforcement::None => enforcement::NONE,
        Enforcement::Enforce => enforcement::ON,
        Enforcement::Audit => enforcement::AUDIT,
    }
}

impl Datapath {
    /// `ifindex_of`: endpoint id → host-side ifindex, for the endpoints attached here.
    pub fn new(maps: DatapathMaps, ifindex_of: HashMap<u32, u32>, names: Arc<PolicyNames>) -> Self {
        Datapath {
            maps,
            ifindex_of,
            names,
        }
    }

    /// The endpoints attached here from now on (endpoint id → host-side ifindex).
    pub fn set_ifindex_of(&mut self, ifindex_of: HashMap<u32, u32>) {
        self.ifindex_of = ifindex_of;
    }

    /// Makes the maps hold exactly `compiled` for `endpoints`.
    pub fn sync(
        &mut self,
        compiled: &CompiledPolicy,
        endpoints: &EndpointsFile,
    ) -> anyhow::Result<SyncReport> {
        let mut report = SyncReport::default();
        let ids: Vec<u32> = compiled
            .policies
            .iter()
            .map(|p| policy_id(&p.namespace, &p.name))
            .collect();
        for (p, id) in compiled.policies.iter().zip(&ids) {
            self.names.insert(*id, p.clone());
        }

        // The rules wanted, computed before anything is written.
        let wanted: BTreeMap<PolicyKey, PolicyValue> = compiled
            .entries
            .iter()
            .map(|(k, v)| {
                let key = PolicyKey {
                    endpoint_id: k.endpoint_id,
                    remote_identity: k.remote_identity,
                    dport: k.dport,
                    proto: k.proto,
                    direction: k.direction as u8,
                };
                let deny = u8::from(matches!(v.action, Action::Deny));
                let policy_id = ids.get(v.policy_id as usize).copied().unwrap_or(0);
                (
                    key,
                    PolicyValue {
                        deny,
                        _pad0: [0; 3],
                        policy_id,
                    },
                )
            })
            .collect();
        let addrs: Vec<(Key<IpcacheAddr>, u32)> = ipcache::entries(compiled, endpoints)
            .iter()
            .map(|e| (ipcache_key(e.addr, e.prefix_len), e.identity))
            .collect();
        // 0. Room, before anything is written: a table that fills midway
        // would leave the datapath half old, half new.
        room("rules", wanted.len(), self.maps.policy.map())?;
        room(
            "addresses (endpoints' and CIDRs')",
            addrs.len(),
            self.maps.ipcache.map(),
        )?;
        let endpoint_addrs = endpoints
            .endpoints
            .iter()
            .map(|ep| usize::from(ep.ipv4.is_some()) + usize::from(ep.ipv6.is_some()))
            .sum();
        room(
            "endpoint addresses",
            endpoint_addrs,
            self.maps.endpoint_addrs.map(),
        )?;
        // Stale rules go only after the new ones are written, unless the
        // table cannot hold both: then first (they are not wanted anyway).
        let held: BTreeSet<PolicyKey> = self.maps.policy.keys().filter_map(Result::ok).collect();
        let new = wanted.keys().filter(|k| !held.contains(k)).count();
        if held.len() + new > capacity(self.maps.policy.map())? {
            report.rules_removed =
                remove_unwanted(&mut self.maps.policy, |k| wanted.contains_key(k))?;
        }

        // 1. Addresses: endpoint addresses and CIDR identities (the table
        // the what-if's judge looks addresses up in too).
        for (k, id) in &addrs {
            self.maps
                .ipcache
                .insert(k, IpcacheValue { identity: *id }, 0)?;
        }
        report.addresses = addrs.len();
        // Where each endpoint's address is, so that a frame flooded to an
        // endpoint it is not for is told apart even from a replica's.
        let places: HashMap<EndpointAddr, u32> = endpoints
            .endpoints
            .iter()
            .flat_map(|ep| {
                let here = self.ifindex_of.get(&ep.id).copied().unwrap_or(0);
                let v4 = ep.ipv4.map(IpAddr::V4);
                let v6 = ep.ipv6.map(IpAddr::V6);
                v4.into_iter()
                    .chain(v6)
                    .map(move |a| (kernel_addr(a), here))
            })
            .collect();
        for (a, here) in &places {
            if self.maps.endpoint_addrs.get(a, 0).ok() != Some(*here) {
                self.maps.endpoint_addrs.insert(a, here, 0)?;
            }
        }

        // 2. Rules, before any enforcement that needs them.
        for (k, v) in &wanted {
            if self.maps.policy.get(k, 0).ok() != Some(*v) {
                self.maps.policy.insert(k, v, 0)?;
                report.rules_written += 1;
            }
        }

        // 3. Enforcement per endpoint interface.
        let mut enforced = HashSet::new();
        for ep in &compiled.endpoints {
            let Some(ifindex) = self.ifindex_of.get(&ep.endpoint_id) else {
                continue;
            };
            let info = EndpointInfo {
                endpoint_id: ep.endpoint_id,
                identity: ep.identity,
                ingress: mode(&ep.ingress),
                egress: mode(&ep.egress),
                _pad0: [0; 2],
            };
            self.maps.endpoints.insert(ifindex, info, 0)?;
            enforced.insert(*ifindex);
            report.endpoints += 1;
        }

        // 4. What is no longer wanted: stale rules, interfaces whose endpoint
        // is gone (a new interface may get the index), then stale addresses.
        report.rules_removed += remove_unwanted(&mut self.maps.policy, |k| wanted.contains_key(k))?;
        remove_unwanted(&mut self.maps.endpoints, |i| enforced.contains(i))?;
        remove_unwanted(&mut self.maps.endpoint_addrs, |a| places.contains_key(a))?;
        let live: HashSet<(u32, [u8; 20])> = addrs
            .iter()
            .map(|(k, _)| (k.prefix_len(), addr_bytes(&k.data())))
            .collect();
        let stale: Vec<Key<IpcacheAddr>> = self
            .maps
            .ipcache
            .keys()
            .filter_map(Result::ok)
            .filter(|k| !live.contains(&(k.prefix_len(), addr_bytes(&k.data()))))
            .collect();
        for k in &stale {
            self.maps.ipcache.remove(k)?;
        }
        Ok(report)
    }
}
