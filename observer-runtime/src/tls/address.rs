//! Addresses and TLS: the scheme of an address must agree with the TLS
//! settings, so that nothing meant to be encrypted goes out in plaintext.
//!
//! | address            | TLS off          | TLS on             |
//! |--------------------|------------------|--------------------|
//! | `HOST:PORT`        | `http://` (plain)| `https://` (TLS)   |
//! | `http://HOST:PORT` | plain            | error              |
//! | `https://`, `tls://` | error          | TLS                |

use super::TlsFlags;

/// An address that cannot be dialled with the settings given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// `https://` or `tls://` while TLS is not configured.
    #[error(
        "{address} asks for TLS, but TLS is not configured: give {}",
        give(enable, ca_files)
    )]
    TlsNotConfigured {
        address: String,
        enable: &'static str,
        ca_files: &'static str,
    },
    /// `http://` while TLS is configured.
    #[error(
        "{address} asks for plaintext, but TLS is configured ({enable}): drop http:// or the TLS flags"
    )]
    PlaintextWithTls {
        address: String,
        enable: &'static str,
    },
    /// A scheme other than http, https and tls.
    #[error("{address}: unknown scheme {scheme}:// (use HOST:PORT, http://, https:// or tls://)")]
    UnknownScheme { address: String, scheme: String },
    /// Not `HOST:PORT`.
    #[error("{address}: {reason}")]
    Invalid { address: String, reason: String },
}

/// "A and B", or A alone when the CA flag is what turns TLS on.
fn give(enable: &str, ca_files: &str) -> String {
    if enable == ca_files {
        enable.to_string()
    } else {
        format!("{enable} and {ca_files}")
    }
}

/// The URI to dial for `address` (see the module's table), checked to be a
/// host and port without a path.
pub fn dial_uri(address: &str, tls: bool, flags: &TlsFlags) -> Result<String, AddressError> {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, address),
    };
    let wants_tls = match scheme.as_deref() {
        None => tls,
        Some("http") => false,
        Some("https" | "tls") => true,
        Some(other) => {
            return Err(AddressError::UnknownScheme {
                address: address.to_string(),
                scheme: other.to_string(),
            });
        }
    };
    match (wants_tls, tls) {
        (true, false) => {
            return Err(AddressError::TlsNotConfigured {
                address: address.to_string(),
                enable: flags.enable,
                ca_files: flags.ca_files,
            });
        }
        (false, true) => {
            return Err(AddressError::PlaintextWithTls {
                address: address.to_string(),
                enable: flags.enable,
            });
        }
        _ => {}
    }
    let uri = format!("{}://{rest}", if tls { "https" } else { "http" });
    let invalid = |reason: &str| AddressError::Invalid {
        address: address.to_string(),
        reason: reason.to_string(),
    };
    let parsed: tonic::codegen::http::Uri = uri.parse().map_err(|e| invalid(&format!("{e}")))?;
    if parsed.host().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if parsed.port_u16().is_none() {
        // A number past 65535 reads as no port at all: say which it is.
        // IPv6 hosts are bracketed: a colon after `]`, or the only one.
        let authority = parsed.authority().map_or("", |a| a.as_str());
        let after_host = authority.rsplit_once(']').map_or(authority, |(_, p)| p);
        let given = after_host.rsplit_once(':').map(|(_, p)| p);
        return Err(match given {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                invalid(&format!("port {p} is out of range (0 to 65535)"))
            }
            Some(p) if !p.is_empty() => invalid(&format!("port {p:?} is not a number")),
            _ => invalid("no port: give one, as in HOST:PORT"),
        });
    }
    if !matches!(parsed.path(), "" | "/") || parsed.query().is_some() {
        return Err(invalid("an address has no path"));
    }
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAGS: TlsFlags = TlsFlags::HUBBLE_CLI;

    fn dial(address: &str, tls: bool) -> Result<String, String> {
        dial_uri(address, tls, &FLAGS).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bare_address_follows_the_tls_settings() {
        assert_eq!(
            dial("127.0.0.1:4245", false).unwrap(),
            "http://127.0.0.1:4245"
        );
        assert_eq!(
            dial("127.0.0.1:4245", true).unwrap(),
            "https://127.0.0.1:4245"
        );
        assert_eq!(dial("[::1]:4244", true).unwrap(), "https://[::1]:4244");
        assert_eq!(
            dial("relay.example:4245", false).unwrap(),
            "http://relay.example:4245"
        );
    }

    #[test]
    fn a_scheme_that_agrees_is_kept() {
        assert_eq!(
            dial("http://localhost:4245", false).unwrap(),
            "http://localhost:4245"
        );
        assert_eq!(
            dial("https://localhost:4245", true).unwrap(),
            "https://localhost:4245"
        );
        assert_eq!(
            dial("tls://localhost:4245", true).unwrap(),
            "https://localhost:4245"
        );
        assert_eq!(
            dial("TLS://localhost:4245/", true).unwrap(),
            "https://localhost:4245/"
        );
    }

    #[test]
    fn tls_schemes_without_tls_are_errors_never_plaintext() {
        for address in ["https://relay:4245", "tls://relay:4245"] {
            assert_eq!(
                dial_uri(address, false, &FLAGS),
                Err(AddressError::TlsNotConfigured {
                    address: address.to_string(),
                    enable: "--tls",
                    ca_files: "--tls-ca-cert-files",
                })
            );
        }
        assert_eq!(
            dial("https://relay:4245", false).unwrap_err(),
            "https://relay:4245 asks for TLS, but TLS is not configured: give --tls and --tls-ca-cert-files"
        );
    }

    #[test]
    fn http_with_tls_configured_is_an_error() {
        assert_eq!(
            dial("http://relay:4245", true).unwrap_err(),
            "http://relay:4245 asks for plaintext, but TLS is configured (--tls): drop http:// or the TLS flags"
        );
    }

    #[test]
    fn other_schemes_and_malformed_addresses_are_named() {
        assert_eq!(
            dial("unix:///run/x.sock", false).unwrap_err(),
            "unix:///run/x.sock: unknown scheme unix:// (use HOST:PORT, http://, https:// or tls://)"
        );
        assert_eq!(
            dial("127.0.0.1", false).unwrap_err(),
            "127.0.0.1: no port: give one, as in HOST:PORT"
        );
        assert_eq!(
            dial("127.0.0.1:abc", false).unwrap_err(),
            "127.0.0.1:abc: port \"abc\" is not a number"
        );
        assert_eq!(
            dial("127.0.0.1:99999", false).unwrap_err(),
            "127.0.0.1:99999: port 99999 is out of range (0 to 65535)"
        );
        assert_eq!(
            dial("http://:4245", false).unwrap_err(),
            "http://:4245: no host"
        );
        assert_eq!(
            dial("a:1/x", true).unwrap_err(),
            "a:1/x: an address has no path"
        );
        assert!(dial("a b:1", false).unwrap_err().starts_with("a b:1: "));
    }
}
