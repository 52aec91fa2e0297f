//! Reading the PEM files of TLS settings: certificates and a private key,
//! checked when read so that a wrong file is named at start-up, not at the
//! first handshake.

use std::io::Read;
use std::path::Path;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Certificate and key files are a few KiB; anything past this is not one.
const MAX_BYTES: u64 = 1 << 20;

/// The PEM text of `path`, which must hold at least one certificate.
pub(crate) fn certificates(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| content(what, path, format!("{e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(content(
            what,
            path,
            "no certificate (BEGIN CERTIFICATE) in it".into(),
        ));
    }
    Ok(pem)
}

/// The PEM text of `path`, which must hold a private key.
pub(crate) fn private_key(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read(what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let problem = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key (BEGIN PRIVATE KEY) in it".to_string()
            }
            e => format!("{e}"),
        };
        content(what, path, problem)
    })?;
    Ok(pem)
}

/// The PEM texts of `paths` one after the other (tonic reads every
/// certificate of one text).
pub(crate) fn certificate_bundle(
    what: &'static str,
    paths: &[impl AsRef<Path>],
) -> Result<Vec<u8>, TlsError> {
    let mut all = Vec::new();
    for p in paths {
        all.extend(certificates(what, p.as_ref())?);
        all.push(b'\n');
    }
    Ok(all)
}

/// A regular file of at most [`MAX_BYTES`]: a FIFO or a device is refused
/// at once instead of blocking or filling memory.
fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let io = |error| TlsError::Read {
        what,
        path: path.to_path_buf(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(content(what, path, "not a regular file".into()));
    }
    if meta.len() > MAX_BYTES {
        return Err(content(
            what,
            path,
            format!(
                "{} bytes; a PEM file of certificates or a key is at most {MAX_BYTES}",
                meta.len()
            ),
        ));
    }
    let mut out = Vec::new();
    file.take(MAX_BYTES).read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

fn content(what: &'static str, path: &Path, problem: String) -> TlsError {
    TlsError::Content {
        what,
        path: path.to_path_buf(),
        problem,
    }
}
