//! A failed connection in words: the TLS error behind a transport error or a
//! gRPC status, and which flag would change it.

use std::error::Error;

use rustls::{AlertDescription, CertificateError};

use super::TlsFlags;

/// Every message of `e`'s source chain, each said once (layers often repeat
/// their inner error's text).
pub fn chain(e: &dyn Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// The rustls error somewhere in `e`'s chain (also inside an `io::Error`,
/// whose `source` skips the error it wraps).
pub fn rustls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<rustls::Error>() {
            return Some(r);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && let Some(r) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(r);
        }
        next = e.source();
    }
    None
}

/// The TLS failure behind `e`: the rustls error itself, or, where HTTP/2
/// kept only its text (an alert the server sent after the handshake, such
/// as "certificate required"), the alert it names.
pub fn tls_failure(e: &(dyn Error + 'static)) -> Option<rustls::Error> {
    if let Some(r) = rustls_error(e) {
        return Some(r.clone());
    }
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            let text = inner.to_string();
            if let Some(alert) = ALERTS
                .iter()
                .map(|a| rustls::Error::AlertReceived(*a))
                .find(|r| r.to_string() == text)
            {
                return Some(alert);
            }
        }
        next = e.source();
    }
    None
}

/// The alerts a server sends about a client certificate or the handshake.
const ALERTS: [AlertDescription; 9] = [
    AlertDescription::CertificateRequired,
    AlertDescription::UnknownCA,
    AlertDescription::BadCertificate,
    AlertDescription::CertificateUnknown,
    AlertDescription::CertificateExpired,
    AlertDescription::DecryptError,
    AlertDescription::AccessDenied,
    AlertDescription::HandshakeFailure,
    AlertDescription::DecodeError,
];

/// The kind of the I/O error that broke the connection, if one did.
pub fn io_kind(e: &(dyn Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

/// Whether the connection broke under an HTTP/2 client the way it does when
/// the server speaks TLS (or refused the client): the stream broken or reset,
/// HTTP/2 giving up on a connection that went away, or bytes that are no
/// HTTP/2 frame (a TLS record's header reads as an impossible frame length).
/// Which of them a client sees depends on timing.
pub fn broken_connection(e: &(dyn Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    if matches!(
        io_kind(e),
        Some(K::BrokenPipe | K::ConnectionReset | K::ConnectionAborted | K::UnexpectedEof)
    ) {
        return true;
    }
    let mut next = Some(e);
    while let Some(e) = next {
        let hyper_gave_up = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_canceled() || h.is_closed() || h.is_incomplete_message());
        let not_http2 = e.downcast_ref::<h2::Error>().is_some_and(|h| {
            !h.is_remote()
                && matches!(
                    h.reason(),
                    Some(h2::Reason::FRAME_SIZE_ERROR | h2::Reason::PROTOCOL_ERROR)
                )
        });
        if hyper_gave_up || not_http2 {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether `e` happened while the TCP connection was being made (hyper's
/// words for that stage): no TLS had begun, and no request was read.
fn in_tcp_connect(e: &(dyn Error + 'static)) -> bool {
    chain(e).contains("tcp connect error")
}

/// The other reason a server closes a new connection unread.
const AT_CAP: &str =
    "if its log says it is at its connection cap, wait or raise its --max-connections";

/// As [`hint`], for a call on a channel whose connection has answered one
/// before: its closing or reset then says nothing of TLS settings or a
/// connection cap (a server that timed out a stalled connection closes it
/// too), so only a TLS failure itself, or a reconnect that could not
/// connect, is explained.
pub fn hint_answered(e: &(dyn Error + 'static), tls: bool, flags: &TlsFlags) -> Option<String> {
    if tls_failure(e).is_none() && !in_tcp_connect(e) {
        return None;
    }
    hint(e, tls, flags)
}

/// What the person connecting should change, when `e` is a TLS failure or
/// looks like plaintext spoken to a TLS server (`tls`: whether the client
/// used TLS).
pub fn hint(e: &(dyn Error + 'static), tls: bool, flags: &TlsFlags) -> Option<String> {
    use rustls::Error as R;
    let Some(failure) = tls_failure(e) else {
        if !broken_connection(e) {
            return None;
        }
        // A server that is stopping resets the connections it had not
        // accepted yet.
        if in_tcp_connect(e) {
            return Some(
                "the server reset the connection before it was made: is it stopping or restarting? Try again"
                    .to_string(),
            );
        }
        // A TLS server closes a plaintext connection at once, and an mTLS
        // server one without an acceptable client certificate right after
        // the handshake (whether its alert reaches the caller is timing).
        // A server at its connection cap closes every new one at once.
        return Some(if tls {
            format!(
                "the server closed the connection after the TLS handshake: if it requires a client certificate, give one signed by a CA it trusts ({} and {}); {AT_CAP}",
                flags.cert_file, flags.key_file
            )
        } else {
            format!(
                "the server closed the connection or did not answer in HTTP/2: if it serves TLS, give {} with {} (and {} and {} for mTLS); {AT_CAP}",
                flags.enable, flags.ca_files, flags.cert_file, flags.key_file
            )
        });
    };
    Some(match failure {
        R::AlertReceived(AlertDescription::CertificateRequired) => format!(
            "the server requires a client certificate: give {} and {}",
            flags.cert_file, flags.key_file
        ),
        R::AlertReceived(
            a @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError
            | AlertDescription::AccessDenied),
        ) => format!(
            "the server refused the client certificate ({a:?}): it accepts only certificates of the CAs it was given ({})",
            flags.cert_file
        ),
        R::AlertReceived(AlertDescription::CertificateExpired) => format!(
            "the server refused the client certificate as expired ({})",
            flags.cert_file
        ),
        R::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::BadSignature) => {
            if flags.system_roots {
                format!(
                    "the server's certificate is not signed by a CA of {} (without it, by one \
                     the system trusts)",
                    flags.ca_files
                )
            } else {
                format!(
                    "the server's certificate is not signed by a CA of {}",
                    flags.ca_files
                )
            }
        }
        R::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for the name dialled: give the name it has with {}",
            flags.server_name
        ),
        R::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate has expired or is not valid yet".to_string(),
        R::InvalidMessage(_) => format!(
            "the server does not speak TLS: drop {} (and https:// or tls://)",
            flags.enable
        ),
        other => format!("TLS failed: {other}"),
    })
}
