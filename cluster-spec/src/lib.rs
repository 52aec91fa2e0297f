//! The files that describe a cluster's desired state, shared by flow-probe
//! (which enforces them), the lab (which writes them) and `observe` (which
//! checks them). No kernel code: nothing here needs aya, clang or root.
//!
//! # Layout
//! - [`endpoints`]: the endpoints file (name, namespace, labels, addresses,
//!   node) and the security identity of each label set.
//! - [`policy`]: CiliumNetworkPolicy-subset files, read and validated, then
//!   compiled against the endpoints into identity-based rules.
//! - [`services`]: the services file (VIPs, ports, selectors), compiled into
//!   frontends with their backends.
//! - [`pins`]: where a node's datapath state lives in bpffs.
//! - [`yaml`]: reading and writing every one of these files (and the lab's
//!   scenario): a nesting budget, errors with field path and line.

pub mod endpoints;
pub mod pins;
pub mod policy;
pub mod services;
pub mod yaml;
