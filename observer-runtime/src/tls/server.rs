//! The server side: a certificate and its key, and with client CAs, a client
//! certificate required of every connection (mTLS). flow-probe and the relay
//! take it with the same flags ([`CERT_FLAG`], [`KEY_FLAG`],
//! [`CLIENT_CA_FLAG`]).

use std::path::PathBuf;
use std::time::Duration;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use super::{TlsError, explain, pem};

/// The server certificate flag (Hubble's `--tls-cert-file`).
pub const CERT_FLAG: &str = "--tls-cert-file";
/// The server key flag.
pub const KEY_FLAG: &str = "--tls-key-file";
/// The flag of the CAs whose client certificates are accepted; given, every
/// client must present one.
pub const CLIENT_CA_FLAG: &str = "--tls-client-ca-files";

/// How long a client may take over its TLS handshake; a connection that sends
/// nothing is closed after it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Empty: TLS without client certificates; otherwise mTLS.
    pub client_ca_files: Vec<PathBuf>,
}

impl ServerTls {
    /// From the three flags: `None` without any; an error for a certificate
    /// without its key (or the other way round), or client CAs without both.
    pub fn from_flags(
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        client_ca_files: Vec<PathBuf>,
    ) -> Result<Option<ServerTls>, TlsError> {
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(ServerTls {
                cert_file,
                key_file,
                client_ca_files,
            })),
            (Some(_), None) => Err(TlsError::Needs {
                flag: CERT_FLAG,
                needs: KEY_FLAG,
            }),
            (None, Some(_)) => Err(TlsError::Needs {
                flag: KEY_FLAG,
                needs: CERT_FLAG,
            }),
            (None, None) if !client_ca_files.is_empty() => Err(TlsError::Needs {
                flag: CLIENT_CA_FLAG,
                needs: CERT_FLAG,
            }),
            (None, None) => Ok(None),
        }
    }

    /// Whether clients must present a certificate.
    pub fn is_mutual(&self) -> bool {
        !self.client_ca_files.is_empty()
    }

    /// tonic's settings, the files read and checked now.
    pub fn config(&self) -> Result<ServerTlsConfig, TlsError> {
        let cert = pem::certificates("server certificate", &self.cert_file)?;
        let key = pem::private_key("server key", &self.key_file)?;
        let mut cfg = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .timeout(HANDSHAKE_TIMEOUT);
        if self.is_mutual() {
            let cas = pem::certificate_bundle("client CA certificate", &self.client_ca_files)?;
            cfg = cfg
                .client_ca_root(Certificate::from_pem(cas))
                .client_auth_optional(false);
        }
        Ok(cfg)
    }

    /// What a log line says about it.
    pub fn describe(&self) -> &'static str {
        if self.is_mutual() {
            "mTLS (client certificates required)"
        } else {
            "TLS (no client certificates)"
        }
    }
}

/// What one HTTP/2 connection may hold on a server.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Streams open at once (tonic's default is no limit: one connection
    /// opened 20,000 follows and 430 MB in a security review, whatever the
    /// cap on connections). Past it the client waits for one to end.
    pub streams: u32,
    /// A connection is pinged after this long without a frame, and closed
    /// when the ping is not answered within `ping_timeout`: a client that
    /// sent its preface and then nothing would hold its place for good.
    pub ping_after: Duration,
    pub ping_timeout: Duration,
}

/// What the log says when a server answers in plaintext on an address
/// other hosts reach: anyone there reads every flow (and, on the relay,
/// runs SQL). A warning, not a refusal: Hubble's relay serves plaintext
/// too, behind a network that is trusted.
pub fn exposed_plaintext(bound: std::net::SocketAddr, tls: bool) -> Option<String> {
    (!tls && !bound.ip().is_loopback()).then(|| {
        format!(
            "{bound} serves plaintext and is not on loopback: anyone who reaches it reads every \
             flow; give {CERT_FLAG} and {KEY_FLAG} (and {CLIENT_CA_FLAG} for mTLS), or listen \
             on 127.0.0.1"
        )
    })
}

/// flow-probe's and the relay's limits. A hubble-relay opens every
/// client's stream to a node on its one connection to it: 1,024 follows at
/// once (a few kB each while idle).
pub const CONNECTION_LIMITS: ConnectionLimits = ConnectionLimits {
    streams: 1024,
    ping_after: Duration::from_secs(30),
    ping_timeout: Duration::from_secs(20),
};

/// A tonic server, serving TLS with `tls` (checked now: a bad file or a key
/// that is not the certificate's fails here, before anything listens), each
/// connection held to [`CONNECTION_LIMITS`].
pub fn builder(tls: Option<&ServerTls>) -> Result<Server, TlsError> {
    builder_with(tls, CONNECTION_LIMITS)
}

/// [`builder`] with other limits.
pub fn builder_with(tls: Option<&ServerTls>, limits: ConnectionLimits) -> Result<Server, TlsError> {
    let server = Server::builder()
        .max_concurrent_streams(limits.streams)
        .http2_keepalive_interval(Some(limits.ping_after))
        .http2_keepalive_timeout(Some(limits.ping_timeout));
    match tls {
        None => Ok(server),
        Some(t) => server.tls_config(t.config()?).map_err(|e| {
            // rustls checks the pair; its words name neither file.
            if explain::chain(&e).contains("KeyMismatch") {
                TlsError::Content {
                    what: "server key",
                    path: t.key_file.clone(),
                    problem: format!("not the key of the certificate {}", t.cert_file.display()),
                }
            } else {
                TlsError::config(&e)
            }
        }),
    }
}
