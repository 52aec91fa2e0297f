//! Keeps the tc programs on exactly the host-side interfaces of this node's
//! endpoints, whatever their source, and publishes the [`EndpointSet`] that
//! policy, services and enrichment follow.
//!
//! [`run`] takes every source's updates in turn: the [`Catalog`] merges
//! them, then [`Attachments::reconcile`] detaches what is gone, attaches
//! what is new (through the probe's owner thread, see [`Attach`]) and
//! publishes the set. An interface that cannot be attached is reported on
//! its endpoint, and tried again at the next update.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cluster_spec::endpoints::EndpointsFile;
use tokio::sync::{mpsc, watch};

use super::catalog::{Catalog, Merged};
use super::{Discovered, EndpointWatch, Update};
use crate::kernel::loader::{Attacher, Attachment};

/// Attaches the probe's programs to an interface and detaches them; both
/// block until done.
pub trait Attach: Send + Sync {
    /// Attaches to `ifname` (both directions); returns its ifindex.
    fn attach(&self, ifname: &str) -> anyhow::Result<u32>;
    /// Detaches from `ifname` (gone already is no error).
    fn detach(&self, ifname: &str) -> anyhow::Result<()>;
}

impl Attach for Attacher {
    fn attach(&self, ifname: &str) -> anyhow::Result<u32> {
        let a = Attacher::attach(self, ifname)?;
        log::info!(
            "attached to {} (ifindex {}, {:?})",
            a.ifname,
            a.ifindex,
            a.mode
        );
        Ok(a.ifindex)
    }

    fn detach(&self, ifname: &str) -> anyhow::Result<()> {
        Attacher::detach(self, ifname)
    }
}

/// One of this node's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalEndpoint {
    pub source: &'static str,
    /// The endpoint with its final id; `problem` also says why attaching failed.
    pub found: Discovered,
    /// Ifindex of its host-side interface once attached.
    pub ifindex: Option<u32>,
    /// The set version in which it last changed: a policy compiled from
    /// this version or a later one covers it.
    pub since: u64,
}

/// An interface the programs are attached to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub ifindex: u32,
    pub ifname: String,
    /// The endpoint behind it (none for `--interface` ones).
    pub endpoint: Option<u32>,
}

/// The endpoints in force, as one value: a new one replaces it whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointSet {
    /// Counts the sets published, from 1.
    pub version: u64,
    /// Every endpoint known, of every node: addresses and identities.
    pub file: EndpointsFile,
    /// Endpoint id → ifindex of its host-side interface, where attached.
    pub ifindex_of: HashMap<u32, u32>,
    /// Network namespace cookie → the endpoint whose namespace it is (of
    /// any node whose namespace this machine can open): SOCK flows name the
    /// client of a socket not bound yet by it.
    pub netns_cookies: HashMap<u64, u32>,
    /// IPv6 link-local address → the endpoint whose interface has it:
    /// neighbour discovery and other link-local traffic name the endpoint.
    pub link_local: HashMap<IpAddr, u32>,
    /// The node's own addresses (of the namespace the probe attaches in):
    /// flows name them `reserved:host`, as Cilium's.
    pub host_addresses: Vec<IpAddr>,
    /// Every interface the programs are on.
    pub interfaces: Vec<Attached>,
    /// This node's endpoints, with what became of them.
    pub endpoints: Vec<LocalEndpoint>,
    /// Every source has sent its first whole list ([`Merged::complete`]).
    /// Until then policy and services leave the datapath as they found it
    /// (a restarted probe's pinned maps stay in force) and flows are not
    /// named from it.
    pub complete: bool,
}

/// What is attached where, kept in step with the endpoints.
pub struct Attachments {
    node: String,
    /// How to attach, or why this probe does not.
    attacher: Result<Arc<dyn Attach>, String>,
    /// Interfaces attached for endpoints: name → ifindex.
    attached: BTreeMap<String, u32>,
    /// Interfaces attached by `--interface`: never detached here.
    fixed: Vec<Attachment>,
    /// Why attaching an interface failed, until it succeeds.
    failed: HashMap<String, String>,
    published: watch::Sender<Arc<EndpointSet>>,
    /// Called with the number of attached interfaces after each change.
    on_change: Option<Box<dyn Fn(usize) + Send>>,
    /// Where the node's own addresses are read: `None`, none are (tests);
    /// `Some(None)`, the probe's own namespace.
    host_netns: Option<Option<PathBuf>>,
    /// What they were at the last reading.
    host_addresses: Vec<IpAddr>,
    /// How often [`run`] reads them again.
    host_recheck: std::time::Duration,
}

impl Attachments {
    /// `attacher`: how to attach, or why this probe attaches nothing (every
    /// endpoint of the node then says so); `fixed`: what the probe attached
    /// at start, which stays.
    pub fn new(
        node: &str,
        attacher: Result<Arc<dyn Attach>, String>,
        fixed: Vec<Attachment>,
    ) -> Self {
        Attachments {
            node: node.to_string(),
            attacher,
            attached: BTreeMap::new(),
            fixed,
            failed: HashMap::new(),
            published: watch::Sender::new(Arc::new(EndpointSet::default())),
            on_change: None,
            host_netns: None,
            host_addresses: Vec::new(),
            host_recheck: HOST_ADDRESSES_RECHECK,
        }
    }

    /// Reads the node's addresses again every `every` instead of
    /// [`HOST_ADDRESSES_RECHECK`].
    pub fn recheck_host_every(mut self, every: std::time::Duration) -> Self {
        self.host_recheck = every;
        self
    }

    /// Reads the node's own addresses in the namespace at `netns` (the
    /// probe's own without one), now and at every [`run`] re-check.
    pub fn host_netns(mut self, netns: Option<PathBuf>) -> Self {
        self.host_netns = Some(netns);
        self
    }

    /// Reads the node's addresses again; true when they changed.
    async fn read_host_addresses(&mut self) -> bool {
        let Some(netns) = self.host_netns.clone() else {
            return false;
        };
        let read = tokio::task::spawn_blocking(move || {
            crate::kernel::sysfs::netns_addresses(netns.as_deref())
        })
        .await;
        match read {
            Ok(Ok(addresses)) if addresses != self.host_addresses => {
                self.host_addresses = addresses;
                true
            }
            Ok(Ok(_)) => false,
            Ok(Err(e)) => {
                log::debug!("the node's addresses: {e}");
                false
            }
            Err(e) => {
                log::debug!("the node's addresses: {e}");
                false
            }
        }
    }

    /// Calls `f` with the number of attached interfaces after each change.
    pub fn on_change(mut self, f: impl Fn(usize) + Send + 'static) -> Self {
        self.on_change = Some(Box::new(f));
        self
    }

    /// Follows the published sets.
    pub fn subscribe(&self) -> EndpointWatch {
        self.published.subscribe()
    }

    /// Makes the attachments match `merged` and publishes the new set.
    pub async fn reconcile(&mut self, merged: Merged) {
        self.read_host_addresses().await;
        let netns = netns_index(&merged).await;
        let local: Vec<(&'static str, Discovered)> = merged
            .entries
            .into_iter()
            .filter(|e| e.found.endpoint.node == self.node)
            .map(|e| (e.source, e.found))
            .collect();
        // Interface → the index the source expects it to have, if it knows.
        let wanted: BTreeMap<String, Option<u32>> = local
            .iter()
            .filter(|(_, d)| d.problem.is_none())
            .filter_map(|(_, d)| Some((d.endpoint.interface.clone()?, d.ifindex)))
            .collect();
        // Gone, or replaced by a new interface of the same name.
        let gone: Vec<String> = self
            .attached
            .iter()
            .filter(|(i, at)| match wanted.get(*i) {
                None => true,
                Some(expected) => expected.is_some_and(|e| e != **at),
            })
            .map(|(i, _)| i.clone())
            .collect();
        for ifname in gone {
            self.attached.remove(&ifname);
            if let Ok(a) = self.attacher.clone() {
                let name = ifname.clone();
                match tokio::task::spawn_blocking(move || a.detach(&name)).await {
                    Ok(Ok(())) => log::info!("detached from {ifname}: its endpoint is gone"),
                    Ok(Err(e)) => log::warn!("detaching from {ifname}: {e:#}"),
                    Err(e) => log::warn!("detaching from {ifname}: {e}"),
                }
            }
        }
        self.failed.retain(|i, _| wanted.contains_key(i));
        for ifname in wanted.keys() {
            if self.attached.contains_key(ifname) {
                continue;
            }
            let a = match &self.attacher {
                Ok(a) => a.clone(),
                Err(why) => {
                    self.failed.insert(ifname.clone(), why.clone());
                    continue;
                }
            };
            let name = ifname.clone();
            let result = tokio::task::spawn_blocking(move || a.attach(&name))
                .await
                .map_err(anyhow::Error::from)
                .and_then(|r| r);
            match result {
                Ok(ifindex) => {
                    self.failed.remove(ifname);
                    self.attached.insert(ifname.clone(), ifindex);
                }
                Err(e) => {
                    let why = format!("attaching to {ifname}: {e:#}");
                    log::warn!("{why}; trying again at the next change");
                    self.failed.insert(ifname.clone(), why);
                }
            }
        }
        self.publish(merged.file, local, netns, merged.complete);
    }

    fn publish(
        &mut self,
        file: EndpointsFile,
        local: Vec<(&'static str, Discovered)>,
        netns: NetnsIndex,
        complete: bool,
    ) {
        let previous = self.published.borrow().clone();
        let version = previous.version + 1;
        let mut ifindex_of = HashMap::new();
        let mut interfaces: Vec<Attached> = self
            .fixed
            .iter()
            .map(|a| Attached {
                ifindex: a.ifindex,
                ifname: a.ifname.clone(),
                endpoint: None,
            })
            .collect();
        let mut endpoints = Vec::new();
        for (source, mut found) in local {
            let ifname = found.endpoint.interface.clone();
            let ifindex = ifname.as_ref().and_then(|i| self.attached.get(i)).copied();
            if found.problem.is_none() {
                found.problem = ifname.as_ref().and_then(|i| self.failed.get(i)).cloned();
            }
            if let (Some(ifname), Some(ifindex)) = (ifname, ifindex) {
                ifindex_of.insert(found.endpoint.id, ifindex);
                interfaces.push(Attached {
                    ifindex,
                    ifname,
                    endpoint: Some(found.endpoint.id),
                });
            }
            let unchanged = previous
                .endpoints
                .iter()
                .find(|p| p.found == found && p.ifindex == ifindex && p.source == source);
            endpoints.push(LocalEndpoint {
                source,
                since: unchanged.map_or(version, |p| p.since),
                found,
                ifindex,
            });
        }
        endpoints.sort_by_key(|e| e.found.endpoint.id);
        if let Some(f) = &self.on_change {
            f(interfaces.len());
        }
        self.published.send_replace(Arc::new(EndpointSet {
            version,
            file,
            ifindex_of,
            netns_cookies: netns.cookies,
            link_local: netns.link_local,
            host_addresses: self.host_addresses.clone(),
            interfaces,
            endpoints,
            complete,
        }));
    }
}

/// What the merged endpoints' network namespaces tell (of those without a
/// conflict), each naming its endpoint. A namespace that cannot be opened
/// (another node's, a container that just stopped) is left out.
#[derive(Debug, Default)]
struct NetnsIndex {
    cookies: HashMap<u64, u32>,
    /// IPv6 link-local address → endpoint; one that two endpoints have
    /// (another link, the same MAC) names neither.
    link_local: HashMap<IpAddr, u32>,
}

async fn netns_index(merged: &Merged) -> NetnsIndex {
    let wanted: Vec<(u32, PathBuf)> = merged
        .entries
        .iter()
        .filter(|e| e.found.problem.is_none())
        .filter_map(|e| Some((e.found.endpoint.id, e.found.netns_path.clone()?)))
        .collect();
    if wanted.is_empty() {
        return NetnsIndex::default();
    }
    let paths: Vec<PathBuf> = wanted.iter().map(|(_, p)| p.clone()).collect();
    let found = tokio::task::spawn_blocking(move || {
        let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        crate::kernel::sysfs::netns_facts(&paths)
    })
    .await
    .unwrap_or_default();
    let mut out = NetnsIndex::default();
    let mut shared = Vec::new();
    for ((id, _), facts) in wanted.iter().zip(found) {
        match facts {
            Ok(f) => {
                out.cookies.insert(f.cookie, *id);
                for a in f.link_local {
                    if out
                        .link_local
                        .insert(IpAddr::V6(a), *id)
                        .is_some_and(|o| o != *id)
                    {
                        shared.push(IpAddr::V6(a));
                    }
                }
            }
            Err(e) => log::debug!("endpoint {id}: {e}"),
        }
    }
    for a in shared {
        out.link_local.remove(&a);
    }
    out
}

/// How often [`run`] reads the node's own addresses again.
pub const HOST_ADDRESSES_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

/// Applies every source's updates until `stop` resolves (or every source is
/// gone): merge, attach, publish; and names the node's addresses anew when
/// they change.
pub async fn run(
    mut updates: mpsc::Receiver<(&'static str, Update)>,
    mut catalog: Catalog,
    mut attachments: Attachments,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut recheck = tokio::time::interval(attachments.host_recheck);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.reset();
    loop {
        let (source, update) = tokio::select! {
            () = &mut stop => return,
            _ = recheck.tick() => {
                // An address added to or removed from the node: named anew.
                if attachments.read_host_addresses().await {
                    attachments.reconcile(catalog.merged()).await;
                }
                continue;
            }
            next = updates.recv() => match next {
                Some(u) => u,
                None => return,
            },
        };
        let mut changed = catalog.apply(source, update);
        // Take what else is waiting before attaching: one publish for a burst.
        while let Ok((source, update)) = updates.try_recv() {
            changed |= catalog.apply(source, update);
        }
        if changed {
            attachments.reconcile(catalog.merged()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::catalog::Entry;
    use cluster_spec::endpoints::Endpoint;

    fn entry(id: u32, ns: &str, problem: Option<&str>) -> Entry {
        let endpoint = Endpoint {
            id,
            name: format!("ep{id}"),
            namespace: "default".into(),
            labels: Default::default(),
            workload: None,
            ipv4: None,
            ipv6: None,
            node: "node1".into(),
            interface: None,
            netns: None,
        };
        Entry {
            source: "file",
            found: Discovered {
                netns_path: Some(PathBuf::from(ns)),
                problem: problem.map(str::to_string),
                ..Discovered::new(id.to_string(), endpoint)
            },
        }
    }

    /// The published set names each endpoint by its namespace's cookie,
    /// leaving out a namespace that cannot be opened and an endpoint kept
    /// out for a conflict.
    #[tokio::test]
    async fn the_set_names_each_endpoint_by_its_network_namespace() {
        test_support::require_root("entering network namespaces");
        let own = crate::kernel::sysfs::own_netns_cookie().unwrap();
        let merged = Merged {
            file: EndpointsFile::default(),
            entries: vec![
                entry(7, "/proc/self/ns/net", None),
                entry(8, "/var/run/netns/observe-no-such-namespace", None),
                entry(
                    9,
                    "/proc/self/ns/net",
                    Some("address 198.18.1.1 is also ep7's"),
                ),
            ],
            complete: true,
        };
        let mut a = Attachments::new("node1", Err("off".into()), Vec::new());
        let watch = a.subscribe();
        a.reconcile(merged).await;
        let set = watch.borrow().clone();
        assert_eq!(set.netns_cookies, HashMap::from([(own, 7)]));
        // This namespace's link-local addresses (its uplink's) are ep7's.
        assert!(
            set.link_local.values().all(|id| *id == 7),
            "{:?}",
            set.link_local
        );
    }

    /// The node's own addresses are read at each reconcile and again every
    /// re-check; an address added to the node is published without any
    /// endpoint changing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_nodes_addresses_are_published_and_followed() {
        test_support::require_root("entering network namespaces");
        let ns = test_support::netns::TempNetns::new("host-addrs");
        let n = ns.name().to_string();
        let ip = |line: String| {
            let args: Vec<&str> = line.split_whitespace().collect();
            let status = std::process::Command::new("ip").args(&args).status();
            assert!(status.unwrap().success(), "ip {line}");
        };
        ip(format!("-n {n} link add br0 type bridge"));
        ip(format!("-n {n} link set br0 addrgenmode none"));
        ip(format!("-n {n} link set br0 up"));
        ip(format!("-n {n} addr add 198.18.79.1/24 dev br0"));
        let a = Attachments::new("node1", Err("off".into()), Vec::new())
            .host_netns(Some(ns.path()))
            .recheck_host_every(std::time::Duration::from_millis(50));
        let mut watch = a.subscribe();
        let (tx, rx) = mpsc::channel(4);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let running = tokio::spawn(run(rx, Catalog::default(), a, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        }));
        tx.send(("file", Update::Replace(Vec::new())))
            .await
            .unwrap();
        let addresses = |want: usize| {
            let mut watch = watch.clone();
            async move {
                let set = watch
                    .wait_for(|s| s.host_addresses.len() == want)
                    .await
                    .unwrap()
                    .clone();
                set.host_addresses.clone()
            }
        };
        let within = std::time::Duration::from_secs(60);
        let first = tokio::time::timeout(within, addresses(1))
            .await
            .expect("published");
        assert_eq!(first, ["198.18.79.1".parse::<IpAddr>().unwrap()]);
        ip(format!("-n {n} addr add fd42:79::1/64 dev br0 nodad"));
        let second = tokio::time::timeout(within, addresses(2))
            .await
            .expect("followed");
        assert_eq!(
            second,
            [
                "198.18.79.1".parse::<IpAddr>().unwrap(),
                "fd42:79::1".parse().unwrap()
            ]
        );
        assert!(watch.borrow_and_update().version >= 2);
        stop_tx.send(true).unwrap();
        running.await.unwrap();
    }
}
