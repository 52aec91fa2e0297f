//! TLS for every gRPC connection (observer.Observer and Flight SQL), as
//! Hubble does it: servers present a certificate and, given client CAs,
//! require a client certificate signed by one of them (mTLS); clients check
//! the server against their CAs and present their own certificate.
//!
//! - [`address`]: the rules that tie an address's scheme to the TLS settings
//!   (`https://` or `tls://` without TLS, or `http://` with it, is an error,
//!   never a silent downgrade) and the URI to dial.
//! - [`server`]: [`ServerTls`] (certificate, key, client CAs) → a tonic server.
//! - [`client`]: [`ClientTls`] (CAs, certificate, key, server name) → a tonic
//!   endpoint; [`insecure`] is the verifier behind `--tls-allow-insecure`.
//! - [`explain`]: a failed connection as a person reads it, with the flag to
//!   change.
//! - `pem`: reading the PEM files, each error naming its file.

pub mod address;
pub mod client;
pub mod explain;
pub mod insecure;
mod pem;
pub mod server;

use std::path::PathBuf;

pub use address::{AddressError, dial_uri};
pub use client::{ClientTls, ClientTlsFlags};
pub use server::ServerTls;

/// The flags a program's TLS client settings are given with, for messages
/// that name the flag to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsFlags {
    /// What turns TLS on (`--tls` for `observe`; the CA flag for the relay).
    pub enable: &'static str,
    pub ca_files: &'static str,
    pub cert_file: &'static str,
    pub key_file: &'static str,
    pub server_name: &'static str,
    /// The flag that skips checking the server, if the program has one.
    pub allow_insecure: Option<&'static str>,
    /// Without CA files, the system's CAs (as the Hubble CLI); otherwise CA
    /// files are needed.
    pub system_roots: bool,
}

impl TlsFlags {
    /// The Hubble CLI's flags, which `observe` takes too.
    pub const HUBBLE_CLI: TlsFlags = TlsFlags {
        enable: "--tls",
        ca_files: "--tls-ca-cert-files",
        cert_file: "--tls-client-cert-file",
        key_file: "--tls-client-key-file",
        server_name: "--tls-server-name",
        allow_insecure: Some("--tls-allow-insecure"),
        system_roots: true,
    };
}

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A flag that only means something with another one.
    #[error("{flag} needs {needs}")]
    Needs {
        flag: &'static str,
        needs: &'static str,
    },
    /// Two flags that cannot be given together.
    #[error("{0} and {1} cannot be given together: {2}")]
    Conflict(&'static str, &'static str, &'static str),
    /// A file could not be read.
    #[error("reading {what} {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// A file without what it should hold.
    #[error("{what} {}: {problem}", path.display())]
    Content {
        what: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// A server name no certificate can be checked against.
    #[error("{flag} {name:?}: not a DNS name or an IP address")]
    ServerName { flag: &'static str, name: String },
    /// rustls refused the certificates and key together (e.g. a key that is
    /// not the certificate's).
    #[error("TLS settings: {0}")]
    Config(String),
    /// No CA file given, and the system has no CA certificates.
    #[error(
        "the system has no CA certificates to check the server's with \
         (SSL_CERT_FILE, /etc/ssl/certs): give --tls-ca-cert-files"
    )]
    NoSystemRoots,
}

impl TlsError {
    /// The whole chain of a tonic transport error as one line.
    pub(crate) fn config(e: &dyn std::error::Error) -> TlsError {
        TlsError::Config(explain::chain(e))
    }
}

#[cfg(test)]
mod tests;
