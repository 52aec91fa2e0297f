//! Socket-level services: the services file ([`file`](mod@file): VIPs, ports,
//! label selectors) and its compilation against the endpoints file into
//! frontends with backends ([`compile`](mod@compile)). flow-probe writes them
//! into the socket load balancer's maps; the lab writes the file.

pub mod compile;
pub mod file;

pub use compile::{Backend, CompiledServices, Frontend, MAX_BACKENDS, ServiceRef, compile};
pub use file::{Service, ServiceProtocol, ServicesError, ServicesFile};
