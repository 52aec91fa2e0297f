//! The client side: the CAs a server's certificate must chain to, the
//! client's own certificate (for mTLS) and the name the server's certificate
//! must carry. `observe` and the relay (towards the probes) both use it,
//! each with its own flag names ([`super::TlsFlags`]).

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::server::HANDSHAKE_TIMEOUT;
use super::{TlsError, TlsFlags, explain, insecure, pem};

/// A client's TLS flags as given, before [`ClientTlsFlags::resolve`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsFlags {
    /// TLS asked for ([`TlsFlags::enable`]).
    pub enabled: bool,
    pub ca_files: Vec<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub allow_insecure: bool,
}

/// A client's TLS settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// The CAs a server's certificate must chain to; empty: the system's
    /// (or none, with `allow_insecure`).
    pub ca_files: Vec<PathBuf>,
    /// The client certificate and key, presented to servers that ask (mTLS).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must be valid for; by default the
    /// host of the address dialled.
    pub server_name: Option<String>,
    /// Accept any server certificate (encrypted, but not authenticated).
    pub allow_insecure: bool,
}

impl ClientTlsFlags {
    /// Checks the combination: `None` when TLS is off (and no TLS flag is
    /// given); an error naming the flags for anything half-given.
    pub fn resolve(self, flags: &TlsFlags) -> Result<Option<ClientTls>, TlsError> {
        let needs = |flag| TlsError::Needs {
            flag,
            needs: flags.enable,
        };
        if !self.enabled {
            let given = [
                (!self.ca_files.is_empty(), flags.ca_files),
                (self.cert_file.is_some(), flags.cert_file),
                (self.key_file.is_some(), flags.key_file),
                (self.server_name.is_some(), flags.server_name),
                (
                    self.allow_insecure,
                    flags.allow_insecure.unwrap_or_default(),
                ),
            ];
            return match given.into_iter().find(|(g, _)| *g) {
                Some((_, flag)) => Err(needs(flag)),
                None => Ok(None),
            };
        }
        let identity = match (self.cert_file, self.key_file) {
            (Some(c), Some(k)) => Some((c, k)),
            (Some(_), None) => {
                return Err(TlsError::Needs {
                    flag: flags.cert_file,
                    needs: flags.key_file,
                });
            }
            (None, Some(_)) => {
                return Err(TlsError::Needs {
                    flag: flags.key_file,
                    needs: flags.cert_file,
                });
            }
            (None, None) => None,
        };
        match (
            self.ca_files.is_empty(),
            self.allow_insecure,
            flags.allow_insecure,
        ) {
            (true, false, _) if !flags.system_roots => {
                return Err(TlsError::Needs {
                    flag: flags.enable,
                    needs: flags.ca_files,
                });
            }
            (false, true, Some(insecure)) => {
                return Err(TlsError::Conflict(
                    flags.ca_files,
                    insecure,
                    "the second skips the check the first is for",
                ));
            }
            _ => {}
        }
        if let Some(name) = &self.server_name
            && ServerName::try_from(name.as_str()).is_err()
        {
            return Err(TlsError::ServerName {
                flag: flags.server_name,
                name: name.clone(),
            });
        }
        Ok(Some(ClientTls {
            ca_files: self.ca_files,
            identity,
            server_name: self.server_name,
            allow_insecure: self.allow_insecure,
        }))
    }
}

impl ClientTls {
    /// Whether a client certificate is presented.
    pub fn is_mutual(&self) -> bool {
        self.identity.is_some()
    }

    /// `endpoint` speaking TLS with these settings (its URI must be
    /// `https://`, see [`super::dial_uri`]); the files are read now, so a
    /// renewed certificate is picked up by the next connection.
    pub fn apply(&self, endpoint: Endpoint) -> Result<Endpoint, TlsError> {
        self.apply_within(endpoint, HANDSHAKE_TIMEOUT)
    }

    /// [`ClientTls::apply`] with the handshake bounded by `handshake`.
    pub fn apply_within(
        &self,
        endpoint: Endpoint,
        handshake: std::time::Duration,
    ) -> Result<Endpoint, TlsError> {
        let mut cfg = ClientTlsConfig::new().timeout(handshake);
        if let Some(name) = &self.server_name {
            cfg = cfg.domain_name(name.clone());
        }
        if let Some((cert, key)) = &self.identity {
            cfg = cfg.identity(Identity::from_pem(
                pem::certificates("client certificate", cert)?,
                pem::private_key("client key", key)?,
            ));
        }
        if self.allow_insecure {
            endpoint
                .tls_config_with_verifier(cfg, Arc::new(insecure::AnyServer::new()))
                .map_err(|e| TlsError::config(&e))
        } else if self.ca_files.is_empty() {
            // The system's CAs (`SSL_CERT_FILE` and `SSL_CERT_DIR` are heeded).
            endpoint
                .tls_config(cfg.with_native_roots())
                .map_err(|e| match explain::chain(&e) {
                    text if text.contains("native") => TlsError::NoSystemRoots,
                    text => TlsError::Config(text),
                })
        } else {
            let cas = pem::certificate_bundle("CA certificate", &self.ca_files)?;
            endpoint
                .tls_config(cfg.ca_certificate(Certificate::from_pem(cas)))
                .map_err(|e| TlsError::config(&e))
        }
    }
}
