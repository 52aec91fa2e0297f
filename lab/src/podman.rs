//! Podman through its command line, for the container lab and the container
//! tests: a local image, internal networks, containers, and `podman system
//! service` (the Docker Engine API that `flow-probe --containers` reads).
//!
//! Everything runs with `--runtime runc` (crun refuses hybrid cgroup
//! layouts), every network is `--internal` (no NAT to the uplink, no DNS
//! server) and every container gets ulimits no higher than ours (runc
//! cannot raise them without CAP_SYS_RESOURCE). There is no registry: the
//! image is busybox-static's one binary, imported. [`PodmanSet`] records
//! what was made and removes it, also when dropped during a panic.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The OCI runtime every podman command uses.
pub const RUNTIME: &str = "runc";
/// busybox-static's binary: the image's only file.
pub const BUSYBOX: &str = "/bin/busybox";
/// The busybox applets the image links (a shell, sleep, a web server, a
/// client, netcat).
const APPLETS: [&str; 7] = ["sh", "sleep", "httpd", "wget", "nc", "cat", "echo"];

/// Runs `podman --runtime runc <args>`; returns its stdout, trimmed. The
/// error names the command and carries podman's stderr.
pub fn podman(args: &[&str]) -> Result<String> {
    let out = Command::new("podman")
        .args(["--runtime", RUNTIME])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running podman (install it: scripts/setup.sh)")?;
    if !out.status.success() {
        bail!(
            "podman {}: {} ({})",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            out.status
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `--ulimit` values no higher than this process's own limits.
fn ulimits() -> Vec<String> {
    use rustix::process::{Resource, getrlimit};
    let hard = |r| getrlimit(r).maximum.unwrap_or(1 << 20);
    vec![
        "--ulimit".into(),
        format!("nofile={0}:{0}", hard(Resource::Nofile)),
        "--ulimit".into(),
        format!("nproc={0}:{0}", hard(Resource::Nproc).min(4096)),
    ]
}

/// A container to run.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub network: String,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub labels: BTreeMap<String, String>,
    /// The command and its arguments (e.g. `sleep infinity`).
    pub command: Vec<String>,
}

/// What a lab or a test made in podman, removed together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodmanSet {
    /// The image tag, once imported.
    pub image: Option<String>,
    pub networks: Vec<String>,
    pub containers: Vec<String>,
    /// Whether dropping this value removes them.
    #[serde(skip)]
    pub owned: bool,
}

impl PodmanSet {
    /// An empty set that removes what it gets when dropped.
    pub fn owned() -> Self {
        PodmanSet {
            image: None,
            networks: Vec::new(),
            containers: Vec::new(),
            owned: true,
        }
    }

    /// Imports the busybox image as `tag`.
    pub fn import_busybox(&mut self, tag: &str) -> Result<()> {
        let root = std::env::temp_dir().join(format!(
            "observe-rootfs-{}-{}",
            std::process::id(),
            tag.replace(['/', ':'], "-")
        ));
        let result = import_rootfs(&root, tag);
        let _ = std::fs::remove_dir_all(&root);
        result?;
        self.image = Some(tag.to_string());
        Ok(())
    }

    /// Creates the internal network `name` with these subnets.
    pub fn create_network(&mut self, name: &str, subnets: &[&str]) -> Result<()> {
        let mut args = vec!["network", "create", "--internal", "--disable-dns"];
        if subnets.iter().any(|s| s.contains(':')) {
            args.push("--ipv6");
        }
        for s in subnets {
            args.extend(["--subnet", s]);
        }
        args.push(name);
        podman(&args)?;
        self.networks.push(name.to_string());
        Ok(())
    }

    /// Runs a container (detached).
    pub fn run(&mut self, spec: &ContainerSpec) -> Result<()> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "-d".into(),
            "--name".into(),
            spec.name.clone(),
            "--network".into(),
            spec.network.clone(),
        ];
        self.containers.push(spec.name.clone());
        if let Some(ip) = spec.ipv4 {
            args.extend(["--ip".into(), ip.to_string()]);
        }
        if let Some(ip) = spec.ipv6 {
            args.extend(["--ip6".into(), ip.to_string()]);
        }
        for (k, v) in &spec.labels {
            args.extend(["--label".into(), format!("{k}={v}")]);
        }
        args.extend(ulimits());
        args.push(spec.image.clone());
        args.extend(spec.command.iter().cloned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        podman(&args).with_context(|| format!("starting container {}", spec.name))?;
        Ok(())
    }

    /// Removes everything in the set; returns the problems met.
    pub fn remove_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        for name in std::mem::take(&mut self.containers).iter().rev() {
            if let Err(e) = remove_container(name) {
                errors.push(format!("{e:#}"));
            }
        }
        for name in std::mem::take(&mut self.networks) {
            if let Err(e) = podman(&["network", "rm", "-f", &name]) {
                errors.push(format!("{e:#}"));
            }
        }
        if let Some(tag) = self.image.take()
            && let Err(e) = podman(&["rmi", "-f", &tag])
        {
            errors.push(format!("{e:#}"));
        }
        errors
    }
}

impl Drop for PodmanSet {
    fn drop(&mut self) {
        if self.owned {
            for e in self.remove_all() {
                log::warn!("podman clean-up: {e}");
            }
        }
    }
}

/// Removes, with their containers, the networks named `prefix…` that hold
/// `subnet`: what a killed earlier run left (its fixed subnet would make the
/// next run fail with "subnet already used"). Returns the names removed.
///
/// Names and subnets come from one listing, and a network that is gone by
/// the time it is removed is no error: parallel tests remove their own
/// networks under the same prefix while this runs.
pub fn remove_stale_networks(prefix: &str, subnet: &str) -> Result<Vec<String>> {
    let listing = podman(&["network", "ls", "--format", "json"])?;
    let mut removed = Vec::new();
    for name in networks_on_subnet(&listing, prefix, subnet)? {
        match podman(&["network", "rm", "-f", &name]) {
            Ok(_) => removed.push(name),
            Err(e) if format!("{e:#}").contains("network not found") => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// The names in `podman network ls --format json` output that start with
/// `prefix` and hold `subnet`.
fn networks_on_subnet(listing: &str, prefix: &str, subnet: &str) -> Result<Vec<String>> {
    #[derive(Deserialize)]
    struct Network {
        name: String,
        #[serde(default)]
        subnets: Option<Vec<Subnet>>,
    }
    #[derive(Deserialize)]
    struct Subnet {
        subnet: String,
    }
    let networks: Vec<Network> =
        serde_json::from_str(listing).context("podman network ls --format json")?;
    Ok(networks
        .into_iter()
        .filter(|n| n.name.starts_with(prefix))
        .filter(|n| n.subnets.iter().flatten().any(|s| s.subnet == subnet))
        .map(|n| n.name)
        .collect())
}

/// Writes the rootfs into `root` and imports it as `tag`.
fn import_rootfs(root: &Path, tag: &str) -> Result<()> {
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    std::fs::copy(BUSYBOX, bin.join("busybox"))
        .with_context(|| format!("copying {BUSYBOX} (install busybox-static: scripts/setup.sh)"))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", bin.join(applet))?;
    }
    let tar = Command::new("tar")
        .arg("-C")
        .arg(root)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .output()
        .context("running tar")?;
    if !tar.status.success() {
        bail!("tar of {}: {}", root.display(), tar.status);
    }
    let mut import = Command::new("podman")
        .args(["--runtime", RUNTIME, "import", "-q", "-", tag])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("running podman import")?;
    import
        .stdin
        .take()
        .context("podman import's stdin")?
        .write_all(&tar.stdout)?;
    let out = import.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "podman import {tag}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Stops and removes a container (gone already is no error).
pub fn remove_container(name: &str) -> Result<()> {
    podman(&["rm", "-f", "-t", "0", "--ignore", name]).map(|_| ())
}

/// Stops a container at once (SIGKILL), keeping it.
pub fn stop(name: &str) -> Result<()> {
    podman(&["stop", "-t", "0", name]).map(|_| ())
}

/// The pid of a running container's first process.
pub fn pid(name: &str) -> Result<u32> {
    let out = podman(&["inspect", "--format", "{{.State.Pid}}", name])?;
    match out.parse() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => bail!("container {name} has no running process ({out})"),
    }
}

/// `podman system service` on a unix socket of our own: the Docker Engine
/// API, stopped when dropped.
#[derive(Debug)]
pub struct ApiService {
    child: Option<Child>,
    socket: PathBuf,
    log: PathBuf,
}

impl ApiService {
    /// Starts it and waits until the socket exists; its output goes to `log`.
    pub fn start(socket: &Path, log: &Path) -> Result<Self> {
        let _ = std::fs::remove_file(socket);
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = Command::new("podman")
            .args(["--runtime", RUNTIME, "system", "service", "--time", "0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("starting podman system service")?;
        let mut service = ApiService {
            child: Some(child),
            socket: socket.to_path_buf(),
            log: log.to_path_buf(),
        };
        service.wait_listening()?;
        Ok(service)
    }

    fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.socket.exists() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "podman system service exited ({status}); see {}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "podman system service did not listen on {} in 30 s",
                    self.socket.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The running service, to be stopped by whoever takes it (a lab that
    /// outlives this process records its pid).
    pub fn into_child(mut self) -> Option<Child> {
        self.child.take()
    }

    /// Its pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops it (SIGKILL: the runtime vanishes as in a crash); the socket
    /// file goes too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

impl Drop for ApiService {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::networks_on_subnet;

    #[test]
    fn stale_networks_are_picked_by_prefix_and_subnet_from_one_listing() {
        let listing = r#"[
          {"name": "podman", "subnets": [{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]},
          {"name": "obc12a05", "subnets": [{"subnet": "198.18.5.0/24"}]},
          {"name": "obc99905", "subnets": [{"subnet": "fd42::/64"}, {"subnet": "198.18.5.0/24"}]},
          {"name": "obc12a06", "subnets": [{"subnet": "198.18.6.0/24"}]},
          {"name": "other05", "subnets": [{"subnet": "198.18.5.0/24"}]},
          {"name": "obcnone", "subnets": null},
          {"name": "obcmissing"}
        ]"#;
        assert_eq!(
            networks_on_subnet(listing, "obc", "198.18.5.0/24").unwrap(),
            ["obc12a05", "obc99905"]
        );
        assert!(
            networks_on_subnet(listing, "obc", "198.18.7.0/24")
                .unwrap()
                .is_empty()
        );
        let err = networks_on_subnet("not json", "obc", "198.18.5.0/24").unwrap_err();
        assert!(
            format!("{err:#}").contains("podman network ls --format json"),
            "{err:#}"
        );
    }
}
