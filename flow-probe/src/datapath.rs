//! Programs the datapath maps from a compiled policy: the ipcache (address →
//! identity), where each endpoint's address is (its interface here, or another
//! node), the endpoints (interface → endpoint, enforcement) and the policy
//! rules. Updates are ordered so that no packet of an allowed connection is ever
//! judged against a half-written policy: new addresses and rules first, then
//! enforcement, then removal of what is gone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use aya::maps::lpm_trie::{Key, LpmTrie};
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

/// `compiled`'s rules as the kernel keys them; `ids`: the policies' ids, by
/// their index in `compiled`.
fn kernel_rules(compiled: &CompiledPolicy, ids: &[u32]) -> BTreeMap<PolicyKey, PolicyValue> {
    compiled
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
            let value = PolicyValue {
                deny: u8::from(matches!(v.action, Action::Deny)),
                _pad0: [0; 3],
                policy_id: ids.get(v.policy_id as usize).copied().unwrap_or(0),
            };
            (key, value)
        })
        .collect()
}

/// Removes just enough entries that `wanted` refuses for the keys of
/// `wanting` not held yet to fit, those `first` picks before the others;
/// returns how many went.
fn make_room<'a, K: aya::Pod + Eq + std::hash::Hash + 'a, V: aya::Pod>(
    map: &mut BpfHashMap<MapData, K, V>,
    wanted: impl Fn(&K) -> bool,
    wanting: impl Iterator<Item = &'a K>,
    first: impl Fn(&K) -> bool,
) -> anyhow::Result<usize> {
    let held: HashSet<K> = map.keys().filter_map(Result::ok).collect();
    let all = held.len() + wanting.filter(|k| !held.contains(k)).count();
    let excess = all.saturating_sub(crate::kernel::capacity(map.map())?);
    if excess == 0 {
        return Ok(0);
    }
    let mut stale: Vec<K> = held.into_iter().filter(|k| !wanted(k)).collect();
    stale.sort_by_key(|k| !first(k));
    stale.truncate(excess);
    for k in &stale {
        map.remove(k)?;
    }
    Ok(stale.len())
}

/// [`make_room`] for the address trie, whose keys are (prefix length,
/// address) pairs; `live`: those wanted.
fn make_address_room(
    trie: &mut LpmTrie<MapData, IpcacheAddr, IpcacheValue>,
    live: &HashSet<(u32, [u8; 20])>,
) -> anyhow::Result<()> {
    let pair = |k: &Key<IpcacheAddr>| (k.prefix_len(), addr_bytes(&k.data()));
    let held: Vec<Key<IpcacheAddr>> = trie.keys().filter_map(Result::ok).collect();
    let held_pairs: HashSet<(u32, [u8; 20])> = held.iter().map(pair).collect();
    let all = held.len() + live.iter().filter(|k| !held_pairs.contains(k)).count();
    let excess = all.saturating_sub(crate::kernel::capacity(trie.map())?);
    for k in held
        .iter()
        .filter(|k| !live.contains(&pair(k)))
        .take(excess)
    {
        trie.remove(k)?;
    }
    Ok(())
}

/// Refuses `wanted` entries of `what` for a table that holds fewer.
fn room(what: &str, wanted: usize, map: &MapData) -> anyhow::Result<()> {
    let capacity = crate::kernel::capacity(map)?;
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

        // What the tables should hold, worked out before anything is written.
        let wanted = kernel_rules(compiled, &ids);
        let addrs: Vec<(Key<IpcacheAddr>, u32)> = ipcache::entries(compiled, endpoints)
            .iter()
            .map(|e| (ipcache_key(e.addr, e.prefix_len), e.identity))
            .collect();
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
        let live: HashSet<(u32, [u8; 20])> = addrs
            .iter()
            .map(|(k, _)| (k.prefix_len(), addr_bytes(&k.data())))
            .collect();
        // 0. Room, before anything is written: a table that fills midway
        // would leave the datapath half old, half new.
        room("rules", wanted.len(), self.maps.policy.map())?;
        room(
            "addresses (endpoints' and CIDRs')",
            addrs.len(),
            self.maps.ipcache.map(),
        )?;
        room(
            "endpoint addresses",
            places.len(),
            self.maps.endpoint_addrs.map(),
        )?;
        // What is no longer wanted goes after the new is written (step 4),
        // but where a table cannot hold both, just enough of it goes first:
        // it is not wanted anyway. Rules of endpoints not attached here
        // first, which the datapath never looks up.
        let elsewhere = |k: &PolicyKey| !self.ifindex_of.contains_key(&k.endpoint_id);
        report.rules_removed = make_room(
            &mut self.maps.policy,
            |k| wanted.contains_key(k),
            wanted.keys(),
            elsewhere,
        )?;
        make_room(
            &mut self.maps.endpoint_addrs,
            |a| places.contains_key(a),
            places.keys(),
            |_| false,
        )?;
        make_address_room(&mut self.maps.ipcache, &live)?;

        // 1. Addresses: endpoint addresses and CIDR identities (the table
        // the what-if's judge looks addresses up in too).
        for (k, id) in &addrs {
            // Unchanged entries are not written again (a full trie refuses
            // even an update on kernels before 6.14).
            let value = IpcacheValue { identity: *id };
            if self.maps.ipcache.get(k, 0).ok() != Some(value) {
                self.maps.ipcache.insert(k, value, 0)?;
            }
        }
        report.addresses = addrs.len();
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
