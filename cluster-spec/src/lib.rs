//! The files that describe a cluster's desired state, shared by flow-probe
//! (which enforces them), the lab (which writes them) and `observe` (which
//! checks them). No kernel code: nothing here needs aya, clang or root.
//!
//! # Layout
//! - [`endpoints`]: the endpoints file (name, namespace, labels, addresses,
//!   node) and the security identity of each label set.
//! - [`policy`]: CiliumNetworkPolicy-subset files, read and validated, then
//!   compiled against the endpoints into identity-based rules; a first
//!   packet judged by those rules as the datapath judges it; the inputs of a
//!   compiled policy kept as text, for the history of what was in force.
//! - [`services`]: the services file (VIPs, ports, selectors), compiled into
//!   frontends with their backends.
//! - [`pins`]: where a node's datapath state lives in bpffs.
//! - [`input`]: the one way each of these files (and the lab's scenario) is
//!   read: a regular file of at most 4 MiB, never a FIFO or a device.
//! - [`yaml`]: parsing and writing every one of these files: a nesting and
//!   size budget, errors with field path and line.

pub mod endpoints;
pub mod input;
pub mod pins;
pub mod policy;
pub mod services;
pub mod yaml;
