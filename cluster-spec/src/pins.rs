//! Where a node's datapath state lives in bpffs. flow-probe pins its maps and
//! links there; the lab removes a lab node's folder when it tears down.

use std::path::{Path, PathBuf};

/// Root of everything flow-probe pins.
pub const PIN_ROOT: &str = "/sys/fs/bpf/observe";

/// The pin folder of one probe: per network namespace, so labs never collide.
pub fn pin_dir(netns: Option<&str>) -> PathBuf {
    Path::new(PIN_ROOT).join(netns.unwrap_or("host"))
}
