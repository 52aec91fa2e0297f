//! The one way an input file (policy, services, endpoints, the lab's
//! scenario) is read: only a regular file of at most [`MAX_FILE_BYTES`].
//!
//! A FIFO would block the reader until someone writes; a device such as
//! `/dev/zero` (also behind a symlink) never ends; both are refused before a
//! byte is read. The file is opened without blocking and checked again on the
//! open descriptor, so a swap between the check and the open changes nothing,
//! and at most one byte past the limit is ever read from a growing file.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest input file read: far above any real policy or scenario.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The text of the regular file at `path` (symlinks followed), refused with
/// an `InvalidInput` error that says why when it is anything else, is larger
/// than [`MAX_FILE_BYTES`], or is not UTF-8.
pub fn read_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_bytes(path)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

/// The bytes of the regular file at `path`, with the checks of [`read_text`].
pub fn read_bytes(path: &Path) -> io::Result<Vec<u8>> {
    check(&std::fs::metadata(path)?)?;
    // O_NONBLOCK: opening a FIFO that appeared since the check returns at once.
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    check(&meta)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        // It grew after the check.
        return Err(too_large(None));
    }
    Ok(bytes)
}

/// A regular file within the size limit, or why not.
fn check(meta: &Metadata) -> io::Result<()> {
    let kind = meta.file_type();
    let what = if kind.is_file() {
        return match meta.len() {
            len if len > MAX_FILE_BYTES => Err(too_large(Some(len))),
            _ => Ok(()),
        };
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("not a regular file but {what}; only regular files are read"),
    ))
}

fn too_large(len: Option<u64>) -> io::Error {
    let size = len.map_or_else(|| "growing".to_string(), |len| format!("{len} bytes"));
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{size}: larger than the limit of 4 MiB ({MAX_FILE_BYTES} bytes)"),
    )
}

#[cfg(test)]
mod tests {
    use test_support::scratch::ScratchDir;

    use super::*;

    fn refusal(path: &Path) -> String {
        let e = read_text(path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        e.to_string()
    }

    #[test]
    fn a_regular_file_is_read_also_behind_a_symlink() {
        let dir = ScratchDir::new("input-regular");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, "kind: x\n").unwrap();
        assert_eq!(read_text(&path).unwrap(), "kind: x\n");
        let link = dir.path().join("link.yaml");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        assert_eq!(read_text(&link).unwrap(), "kind: x\n");
    }

    #[test]
    fn a_fifo_is_refused_without_waiting_for_a_writer() {
        let dir = ScratchDir::new("input-fifo");
        let fifo = dir.fifo("p.yaml");
        assert_eq!(
            refusal(&fifo),
            "not a regular file but a FIFO; only regular files are read"
        );
    }

    #[test]
    fn devices_and_folders_are_refused_also_behind_a_symlink() {
        let dir = ScratchDir::new("input-device");
        let link = dir.path().join("zero.yaml");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        assert_eq!(
            refusal(&link),
            "not a regular file but a character device; only regular files are read"
        );
        assert_eq!(
            refusal(dir.path()),
            "not a regular file but a directory; only regular files are read"
        );
    }

    #[test]
    fn a_file_over_the_limit_is_refused_before_reading() {
        let dir = ScratchDir::new("input-large");
        let path = dir.path().join("big.yaml");
        let file = File::create(&path).unwrap();
        file.set_len(MAX_FILE_BYTES + 1).unwrap();
        assert_eq!(
            refusal(&path),
            "4194305 bytes: larger than the limit of 4 MiB (4194304 bytes)"
        );
        file.set_len(MAX_FILE_BYTES).unwrap();
        assert_eq!(read_bytes(&path).unwrap().len() as u64, MAX_FILE_BYTES);
    }

    #[test]
    fn text_must_be_utf8() {
        let dir = ScratchDir::new("input-utf8");
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, b"ok\xff").unwrap();
        let e = read_text(&path).unwrap_err();
        assert_eq!(
            (e.kind(), e.to_string()),
            (io::ErrorKind::InvalidData, "not UTF-8 text (byte 2)".into())
        );
    }
}
