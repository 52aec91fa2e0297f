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
use aya::programs::{SchedClassifier, TcAttachType, tc, tc::TcAttachOptions};

use super::{pins, sysfs};

/// How a program was attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// A pinned tcx link; `adopted` when a previous probe's link was taken over.
    Tcx { adopted: bool },
    /// Legacy netlink filters; `owns_qdisc` when this probe added the clsact qdisc.
    Clsact { owns_qdisc: bool },
}

/// One interface the probe is attached to, both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub ifname: String,
    pub ifindex: u32,
    pub mode: AttachMode,
}

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
    match attach(ebpf, dir, ifname, use_tcx) {
        Err(e) if use_tcx && remove_link_pins(dir, ifname) => {
            log::info!("{ifname}: dropped a stale pinned link ({e:#})");
            attach(ebpf, dir, ifname, use_tcx)
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
                remove_clsact(&a.ifname);
            }
            Ok(())
        }
    }
}

/// Attaches both programs to `ifname` (tcx with pinned links when the kernel
/// has it, else clsact filters).
pub(super) fn attach(
    ebpf: &mut Ebpf,
    pin_dir: &std::path::Path,
    ifname: &str,
    use_tcx: bool,
) -> anyhow::Result<Attachment> {
    let ifindex = sysfs::ifindex(ifname)?;
    let dirs = [
        ("tc_ingress", TcAttachType::Ingress),
        ("tc_egress", TcAttachType::Egress),
    ];
    if use_tcx {
        let mut adopted = false;
        for (name, dir) in dirs {
            let prog: &mut SchedClassifier =
                ebpf.program_mut(name).context("program")?.try_into()?;
            adopted |= pins::attach_pinned(prog, pin_dir, ifname, dir)?;
        }
        return Ok(Attachment {
            ifname: ifname.to_string(),
            ifindex,
            mode: AttachMode::Tcx { adopted },
        });
    }
    // An error adding clsact means it exists already: then it is not ours to remove.
    let owns_qdisc = tc::qdisc_add_clsact(ifname).is_ok();
    for (name, dir) in dirs {
        let prog: &mut SchedClassifier = ebpf.program_mut(name).context("program")?.try_into()?;
        prog.attach_with_options(
            ifname,
            dir,
            TcAttachOptions::Netlink(tc::NlOptions::default()),
        )
        .with_context(|| format!("attaching {name} to {ifname}"))?;
    }
    Ok(Attachment {
        ifname: ifname.to_string(),
        ifindex,
        mode: AttachMode::Clsact { owns_qdisc },
    })
}

/// Removes the clsact qdisc this probe added to `ifname`.
pub(super) fn remove_clsact(ifname: &str) {
    let status = std::process::Command::new("tc")
        .args(["qdisc", "del", "dev", ifname, "clsact"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        log::warn!("could not remove the clsact qdisc of {ifname}");
    }
}
