//! The host side of a container's veth. Inside the container (its `/sys`,
//! seen through `/proc/<pid>/root`, which the runtime mounts in the
//! container's network namespace) the interface with the container's MAC
//! address names its peer's ifindex (`iflink`); on the host that index is
//! the interface to attach to, checked by its own `iflink` pointing back.
//! The probe must run in the runtime's network namespace (the host's), where
//! those host sides are.

use std::path::Path;

/// An interface on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVeth {
    pub name: String,
    pub ifindex: u32,
}

/// Fails unless the named network namespace (`ip netns` name) is the one
/// this process runs in: the host sides of containers' veths are looked up
/// here, so `--netns` may only name the runtime's namespace.
pub fn check_own_netns(name: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let named = Path::new("/var/run/netns").join(name);
    let id = |p: &Path| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    let (theirs, ours) = (id(&named), id(Path::new("/proc/self/ns/net")));
    match (theirs, ours) {
        (Ok(a), Ok(b)) if a == b => Ok(()),
        (Ok(_), Ok(_)) => anyhow::bail!(
            "--containers needs the container runtime's network namespace, where the containers' veths are: --netns {name} is another one"
        ),
        (Err(e), _) | (_, Err(e)) => anyhow::bail!("network namespace {name}: {e}"),
    }
}

fn read_u32(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn read_text(path: &Path) -> Option<String> {
    Some(std::fs::read_to_string(path).ok()?.trim().to_string())
}

/// The host side of the veth of process `pid`'s interface with MAC `mac`
/// (any non-loopback interface when `mac` is empty); the error says why
/// there is none.
pub fn host_side(pid: u32, mac: &str) -> Result<HostVeth, String> {
    host_side_in(
        &Path::new("/proc")
            .join(pid.to_string())
            .join("root/sys/class/net"),
        Path::new("/sys/class/net"),
        mac,
    )
}

/// [`host_side`] with the two `class/net` folders given.
pub fn host_side_in(inside: &Path, host: &Path, mac: &str) -> Result<HostVeth, String> {
    let entries = std::fs::read_dir(inside)
        .map_err(|e| format!("cannot read its interfaces in {}: {e}", inside.display()))?;
    let mut ours = None;
    for entry in entries.flatten() {
        let dir = entry.path();
        let address = read_text(&dir.join("address")).unwrap_or_default();
        let loopback = entry.file_name() == "lo";
        if (mac.is_empty() && !loopback) || (!mac.is_empty() && address.eq_ignore_ascii_case(mac)) {
            ours = Some(dir);
            break;
        }
    }
    let Some(dir) = ours else {
        return Err(format!("no interface with MAC {mac} in the container"));
    };
    let name = dir
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .to_string();
    let (Some(index), Some(peer)) = (
        read_u32(&dir.join("ifindex")),
        read_u32(&dir.join("iflink")),
    ) else {
        return Err(format!("cannot read the index of its {name}"));
    };
    if index == peer {
        return Err(format!("its {name} is not one end of a veth"));
    }
    for entry in std::fs::read_dir(host).into_iter().flatten().flatten() {
        let dir = entry.path();
        if read_u32(&dir.join("ifindex")) == Some(peer) {
            let host_name = entry.file_name().to_string_lossy().to_string();
            if read_u32(&dir.join("iflink")) != Some(index) {
                return Err(format!(
                    "the peer of its {name} (ifindex {peer}) is not in the probe's network namespace ({host_name} has that index here)"
                ));
            }
            return Ok(HostVeth {
                name: host_name,
                ifindex: peer,
            });
        }
    }
    Err(format!(
        "the peer of its {name} (ifindex {peer}) is not in the probe's network namespace"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_support::scratch::ScratchDir;

    fn iface(root: &Path, name: &str, ifindex: u32, iflink: u32, mac: &str) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ifindex"), format!("{ifindex}\n")).unwrap();
        std::fs::write(dir.join("iflink"), format!("{iflink}\n")).unwrap();
        std::fs::write(dir.join("address"), format!("{mac}\n")).unwrap();
    }

    #[test]
    fn the_peer_index_of_the_containers_interface_names_the_host_side() {
        let scratch = ScratchDir::new("veth-host-side");
        let (inside, host) = (scratch.path().join("in"), scratch.path().join("host"));
        iface(&inside, "lo", 1, 1, "00:00:00:00:00:00");
        iface(&inside, "eth0", 2, 12, "c6:3d:0d:f7:b6:69");
        iface(&host, "eth0", 2, 2, "52:54:00:00:00:01");
        iface(&host, "veth0", 12, 2, "5a:81:82:4e:72:80");
        let found = HostVeth {
            name: "veth0".into(),
            ifindex: 12,
        };
        assert_eq!(
            host_side_in(&inside, &host, "C6:3D:0D:F7:B6:69"),
            Ok(found.clone())
        );
        assert_eq!(host_side_in(&inside, &host, ""), Ok(found));
        assert_eq!(
            host_side_in(&inside, &host, "aa:bb:cc:dd:ee:ff"),
            Err("no interface with MAC aa:bb:cc:dd:ee:ff in the container".into())
        );
        // Index 12 here is something else: the peer lives in another namespace.
        iface(&host, "veth0", 12, 7, "5a:81:82:4e:72:80");
        assert_eq!(
            host_side_in(&inside, &host, ""),
            Err("the peer of its eth0 (ifindex 12) is not in the probe's network namespace (veth0 has that index here)".into())
        );
    }
}
