//! A bare TLS client for tests of what a server refuses: it completes a
//! handshake (with or without a client certificate), sends the first bytes of
//! HTTP/2 and reads the server's first answer. A refusal comes back as the
//! exact rustls error (the alert the server sent, or the client's own
//! verdict on the server's certificate), not as whatever an HTTP/2 client
//! happens to report once the connection is gone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The HTTP/2 client preface and an empty SETTINGS frame.
pub const H2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// The server's first answer over TLS to `addr`, trusting the CAs in
/// `ca_pem`, presenting `identity` (certificate, key) if given; `Err` with
/// the rustls error when the handshake or the server refused. Runs on a
/// blocking thread, so a server on the caller's runtime keeps serving.
pub async fn first_answer(
    addr: SocketAddr,
    ca_pem: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
) -> Result<Vec<u8>, rustls::Error> {
    tokio::task::spawn_blocking(move || {
        let identity = identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path()));
        first_answer_blocking(addr, &ca_pem, identity)
    })
    .await
    .expect("the TLS probe thread")
}

/// [`first_answer`] on the calling thread.
pub fn first_answer_blocking(
    addr: SocketAddr,
    ca_pem: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Vec<u8>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("CA file") {
        roots
            .add(cert.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .expect("client certificate")
                    .collect::<Result<_, _>>()
                    .expect("client certificate"),
                PrivateKeyDer::from_pem_file(key).expect("client key"),
            )
            .expect("client certificate and key"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let mut conn =
        ClientConnection::new(Arc::new(config), ServerName::from(addr.ip())).expect("a TLS client");
    let mut sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    let mut answer = [0u8; 256];
    let result = tls
        .write_all(H2_PREFACE)
        .and_then(|()| tls.flush())
        .and_then(|()| tls.read(&mut answer));
    match result {
        Ok(n) => Ok(answer[..n].to_vec()),
        Err(e) => match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(r) => Err(r.clone()),
            None => panic!("no TLS answer from {addr}: {e}"),
        },
    }
}
