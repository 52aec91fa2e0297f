//! Attaching and detaching while the probe runs (endpoints that come and go,
//! such as containers): requests to the owner thread, which holds the
//! programs and lives in the node's network namespace (see [`super::loader`]).
//!
//! Detaching removes an interface's pinned tcx links (the kernel releases a
//! link once nothing holds it) or its clsact filters. A link re-adopted from
//! a previous probe at start stays held by the program until the interface
//! goes or the probe stops; a container's veth goes with the container.

use std::path::Path;
use std::sync::mpsc;

use anyhow::Context;
use aya::Ebpf;
use aya::programs::{TcAttachType, tc};

use super::loader::{AttachMode, Attachment};
use super::{pins, sysfs};

/// A request to the owner thread.
pub(super) enum Command {
    Attach(String, mpsc::Sender<anyhow::Result<Attachment>>),
    Detach(String, mpsc::Sender<anyhow::Result<()>>),
    Shutdown,
}

/// Attaches the probe's programs to more interfaces, and detaches them, while
/// it runs. Calls block until the owner thread has done it.
#[derive(Debug, Clone)]
pub struct Attacher {
    pub(super) tx: mpsc::Sender<Command>,
}

impl Attacher {
    /// Attaches both programs to `ifname`.
    pub fn attach(&self, ifname: &str) -> anyhow::Result<Attachment> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Command::Attach(ifname.to_string(), tx))
            .ok()
            .context("the probe has stopped")?;
        rx.recv().context("the probe has stopped")?
    }

    /// Detaches from `ifname`; an interface that is gone is no error.
    pub fn detach(&self, ifname: &str) -> anyhow::Result<()> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Command::Detach(ifname.to_string(), tx))
            .ok()
            .context("the probe has stopped")?;
        rx.recv().context("the probe has stopped")?
    }
}

/// Serves requests until shutdown; `attached` is what is attached (from the
/// start on), kept up to date for the cleanup at shutdown.
pub(super) fn serve(
    ebpf: &mut Ebpf,
    dir: &Path,
    use_tcx: bool,
    requests: &mpsc::Receiver<Command>,
    attached: &mut Vec<Attachment>,
) {
    while let Ok(request) = requests.recv() {
        match request {
            Command::Attach(ifname, reply) => {
                let result = attach_anew(ebpf, dir, &ifname, use_tcx);
                if let Ok(a) = &result {
                    attached.retain(|old| old.ifname != a.ifname);
                    attached.push(a.clone());
                }
                let _ = reply.send(result);
            }
            Command::Detach(ifname, reply) => {
                let at = attached.iter().position(|a| a.ifname == ifname);
                let result = match at.map(|i| attached.remove(i)) {
                    Some(a) => detach(dir, &a),
                    None => Ok(()),
                };
                let _ = reply.send(result);
            }
            Command::Shutdown => return,
        }
    }
}

/// Attaches, dropping a stale pinned link of a gone interface that had the
/// same name (left by a probe that was killed) if re-adopting it fails.
fn attach_anew(
    ebpf: &mut Ebpf,
    dir: &Path,
    ifname: &str,
    use_tcx: bool,
) -> anyhow::Result<Attachment> {
    match super::loader::attach(ebpf, dir, ifname, use_tcx) {
        Err(e) if use_tcx && remove_link_pins(dir, ifname) => {
            log::info!("{ifname}: dropped a stale pinned link ({e:#})");
            super::loader::attach(ebpf, dir, ifname, use_tcx)
        }
        other => other,
    }
}

/// Removes the pinned links of `ifname`; whether there were any.
fn remove_link_pins(dir: &Path, ifname: &str) -> bool {
    let mut removed = false;
    for direction in ["ingress", "egress"] {
        removed |= std::fs::remove_file(pins::link_pin(dir, ifname, direction)).is_ok();
    }
    removed
}

fn detach(dir: &Path, a: &Attachment) -> anyhow::Result<()> {
    match a.mode {
        AttachMode::Tcx { .. } => {
            remove_link_pins(dir, &a.ifname);
            Ok(())
        }
        AttachMode::Clsact { owns_qdisc } => {
            if sysfs::ifindex(&a.ifname).is_err() {
                return Ok(()); // gone, and its filters with it
            }
            for (dir, name) in [
                (TcAttachType::Ingress, "tc_ingress"),
                (TcAttachType::Egress, "tc_egress"),
            ] {
                tc::qdisc_detach_program(&a.ifname, dir, name)
                    .with_context(|| format!("removing {name} from {}", a.ifname))?;
            }
            if owns_qdisc {
                super::loader::remove_clsact(&a.ifname);
            }
            Ok(())
        }
    }
}
