//! The relay's TLS flags towards the probes, named as hubble-relay names
//! them: read by the configuration and by the errors that name them.

use observer_runtime::tls::TlsFlags;

/// The relay's flags for TLS towards the probes (hubble-relay's names); the
/// CA flag turns it on.
pub const PEER_TLS_FLAGS: TlsFlags = TlsFlags {
    enable: "--tls-hubble-server-ca-files",
    ca_files: "--tls-hubble-server-ca-files",
    cert_file: "--tls-hubble-client-cert-file",
    key_file: "--tls-hubble-client-key-file",
    server_name: "--tls-hubble-server-name",
    allow_insecure: None,
    system_roots: false,
};
