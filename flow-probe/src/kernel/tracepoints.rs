//! The tracepoint programs (kernel drops, TCP lifecycle): which namespaces they
//! watch, and attaching them once the running kernel's record layout is known
//! to match what the programs read. A mismatch disables only that program.
//!
//! Their links are pinned next to the tc links (`super::pins`): while no probe
//! runs (killed, or restarting with `--persist`) they go on writing into the
//! pinned ring, and the next probe reads what they wrote.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use aya::Ebpf;
use aya::maps::MapData;
use aya::programs::TracePoint;
use aya::programs::links::{FdLink, PinnedLink};

use super::tracefs;

/// Fields the lifecycle programs read, at the offsets their C structs assume.
const SET_STATE_FIELDS: &[(&str, u32)] = &[
    ("skaddr", 8),
    ("oldstate", 16),
    ("newstate", 20),
    ("sport", 24),
    ("dport", 26),
    ("family", 28),
    ("protocol", 30),
    ("saddr", 32),
    ("daddr", 36),
    ("saddr_v6", 40),
    ("daddr_v6", 56),
];
const RETRANSMIT_FIELDS: &[(&str, u32)] = &[
    ("skaddr", 16),
    ("state", 24),
    ("sport", 28),
    ("dport", 30),
    ("family", 32),
    ("saddr", 34),
    ("daddr", 38),
    ("saddr_v6", 42),
    ("daddr_v6", 58),
];

/// The network namespaces the tracepoint programs report from (`DROP_NETNS`,
/// by inode, when `filter_netns` is on): other namespaces may reuse the
/// node's addresses (other labs, containers of another runtime). Some are
/// fixed at start (the node's own, the endpoints file's); the endpoints'
/// are followed as they come and go ([`NetnsFilter::follow`]).
pub struct NetnsFilter {
    map: aya::maps::HashMap<MapData, u32, u8>,
    fixed: BTreeSet<u32>,
    followed: BTreeSet<u32>,
}

/// The inode of the network namespace at `path` (an `ip netns` file,
/// `/proc/PID/ns/net`): what the kernel calls the namespace's `inum`.
pub fn netns_inode(path: &Path) -> anyhow::Result<u32> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("network namespace {}", path.display()))?;
    Ok(u32::try_from(meta.ino())?)
}

impl NetnsFilter {
    /// Takes `DROP_NETNS` from `ebpf` and puts the namespaces at `fixed` in it.
    pub fn take(ebpf: &mut Ebpf, fixed: &[PathBuf]) -> anyhow::Result<Self> {
        let map =
            aya::maps::HashMap::try_from(ebpf.take_map("DROP_NETNS").context("map DROP_NETNS")?)?;
        let mut filter = NetnsFilter {
            map,
            fixed: BTreeSet::new(),
            followed: BTreeSet::new(),
        };
        for path in fixed {
            let inode = netns_inode(path)?;
            filter.map.insert(inode, 1, 0)?;
            filter.fixed.insert(inode);
        }
        Ok(filter)
    }

    /// Reports from the fixed namespaces and exactly these (a namespace
    /// that cannot be opened is gone: its process ended); returns how many
    /// were added and removed.
    pub fn follow(&mut self, paths: &[PathBuf]) -> (usize, usize) {
        let now: BTreeSet<u32> = paths
            .iter()
            .filter_map(|p| netns_inode(p).ok())
            .filter(|i| !self.fixed.contains(i))
            .collect();
        let gone: Vec<u32> = self.followed.difference(&now).copied().collect();
        let new: Vec<u32> = now.difference(&self.followed).copied().collect();
        for inode in &gone {
            if let Err(e) = self.map.remove(inode) {
                log::warn!("DROP_NETNS: removing namespace {inode}: {e}");
            }
        }
        for inode in &new {
            if let Err(e) = self.map.insert(*inode, 1, 0) {
                log::warn!("DROP_NETNS: adding namespace {inode}: {e}");
            }
        }
        self.followed = now;
        (new.len(), gone.len())
    }

    /// Every namespace reported from, by inode.
    pub fn watched(&self) -> BTreeSet<u32> {
        self.fixed.union(&self.followed).copied().collect()
    }
}

/// Where the link of the program on tracepoint `event` is pinned.
fn link_pin(dir: &Path, event: &str) -> std::path::PathBuf {
    dir.join(format!("tracepoint_{event}"))
}

/// Attaches `program` to `group:event` and pins its link in `dir`. A link an
/// earlier probe pinned there is detached only once this one is attached:
/// for that instant both report (an event may come twice) rather than
/// neither. On a kernel without BPF links for perf events (before 5.15) the
/// program is attached unpinned, as before pinning.
fn attach(
    ebpf: &mut Ebpf,
    dir: &Path,
    program: &str,
    group: &str,
    event: &str,
) -> anyhow::Result<()> {
    let prog: &mut TracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program}"))?
        .try_into()?;
    prog.load()
        .with_context(|| format!("verifier rejected {program}"))?;
    let attaching = || format!("attaching to {group}:{event}");
    let id = prog.attach(group, event).with_context(attaching)?;
    let link = match FdLink::try_from(prog.take_link(id)?) {
        Ok(link) => link,
        Err(e) => {
            log::warn!("{program} is not pinned ({e}): it stops with this process");
            prog.attach(group, event).with_context(attaching)?;
            return Ok(());
        }
    };
    let pin = link_pin(dir, event);
    let earlier = if pin.exists() {
        let old = PinnedLink::from_pin(&pin)
            .with_context(|| format!("opening pinned link {}", pin.display()))?;
        Some(
            old.unpin()
                .with_context(|| format!("unpinning {}", pin.display()))?,
        )
    } else {
        None
    };
    link.pin(&pin)
        .with_context(|| format!("pinning {}", pin.display()))?;
    drop(earlier); // its last fd: the earlier program detaches
    Ok(())
}

/// Fails, naming the tracepoint and field, when the kernel's record differs.
fn check_layout(group: &str, event: &str, fields: &[(&str, u32)]) -> anyhow::Result<()> {
    let format = tracefs::read_format(group, event)
        .with_context(|| format!("tracepoint {group}:{event}"))?;
    for (field, want) in fields {
        match format.offsets.get(*field) {
            Some(got) if got == want => {}
            got => bail!(
                "tracepoint {group}:{event}: field {field} is at {got:?}, the program reads it at {want}"
            ),
        }
    }
    Ok(())
}

/// Attaches the kernel-drop program (tracepoint skb:kfree_skb), its link
/// pinned in `dir`.
pub fn attach_drops(ebpf: &mut Ebpf, dir: &Path) -> anyhow::Result<()> {
    attach(ebpf, dir, "kfree_skb", "skb", "kfree_skb")
}

/// Attaches the TCP lifecycle programs (sock:inet_sock_set_state,
/// tcp:tcp_retransmit_skb) after checking their record layouts, their links
/// pinned in `dir`.
pub fn attach_lifecycle(ebpf: &mut Ebpf, dir: &Path) -> anyhow::Result<()> {
    check_layout("sock", "inet_sock_set_state", SET_STATE_FIELDS)?;
    check_layout("tcp", "tcp_retransmit_skb", RETRANSMIT_FIELDS)?;
    attach(
        ebpf,
        dir,
        "inet_sock_set_state",
        "sock",
        "inet_sock_set_state",
    )?;
    attach(ebpf, dir, "tcp_retransmit_skb", "tcp", "tcp_retransmit_skb")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_records_match_what_the_lifecycle_programs_read() {
        check_layout("sock", "inet_sock_set_state", SET_STATE_FIELDS).unwrap();
        check_layout("tcp", "tcp_retransmit_skb", RETRANSMIT_FIELDS).unwrap();
        let err = check_layout("sock", "inet_sock_set_state", &[("newstate", 99)])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "tracepoint sock:inet_sock_set_state: field newstate is at Some(20), the program reads it at 99"
        );
    }
}
