//! Folders (0700) and files (0600) only their owner may read: the state
//! directory and everything the lab writes into it (state, endpoints,
//! policies, services, the probes' and the relay's logs). They name the lab's
//! addresses and policies and hold whatever the components log.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

/// Mode of the folders the lab creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of the files the lab writes.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) as 0700. A folder that already exists
/// is made 0700 too when it is one of the lab's (empty, or holding a lab's
/// `state.json`); any other folder open to others is refused rather than
/// changed, so `--state-dir /tmp` never locks up `/tmp`.
/// A folder (or a link to one) of another user is refused: that user could
/// plant links there for the lab, root perhaps, to write through.
pub fn create_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let link =
        std::fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    // Ours, root's, or under sudo the asking user's, as for certificates.
    let trust = crate::certs::Trust::here();
    let link_owner = link.file_type().is_symlink().then(|| link.uid());
    let owners = [("a link of", link_owner), ("owned by", Some(meta.uid()))];
    for (what, uid) in owners.into_iter().filter_map(|(w, u)| Some((w, u?))) {
        if !trust.owns(uid) {
            bail!(
                "{} is {what} user {uid}, not this user ({}), who could plant links there for \
                 the lab to write through: give the lab a folder of its own",
                dir.display(),
                rustix::process::geteuid().as_raw()
            );
        }
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let ours = dir.join(crate::STATE_FILE).exists()
        || std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_none();
    if !ours {
        bail!(
            "{} is open to other users (mode {:o}) and holds files that are not a lab's: \
             give the lab a folder of its own",
            dir.display(),
            mode & 0o7777
        );
    }
    set_mode(dir, DIR_MODE)
}

/// Opens `path` for writing as a 0600 file: truncated, or appended to with
/// `append`. A file that existed with a wider mode is narrowed. A link there
/// is refused, not followed.
pub fn open_file(path: &Path, append: bool) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .append(append)
        .truncate(!append)
        .mode(FILE_MODE)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(FILE_MODE))
        .with_context(|| format!("making {} owner-only", path.display()))?;
    Ok(file)
}

/// Writes `text` to `path` as a 0600 file.
pub fn write_file(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    open_file(path, false)?
        .write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Writes `path` (0600) through a temporary file and a rename, so a reader
/// (flow-probe watches the services, endpoints and policy files) never sees
/// half of it.
pub fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
    let tmp = path.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
    write_file(&tmp, text)?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("making {} owner-only", path.display()))
}

#[cfg(test)]
mod tests {
    use test_support::scratch::ScratchDir;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// From the TLS review: root running a lab in a folder another user
    /// owns wrote its state through the link that user planted there
    /// (`.state.json.tmp` → /etc/shadow).
    #[test]
    fn another_users_folder_and_links_are_refused() {
        let scratch = ScratchDir::new("owner-only-theirs");
        let file = scratch.path().join("f.yaml");
        let target = scratch.path().join("target");
        std::fs::write(&target, "kept").unwrap();
        std::os::unix::fs::symlink(&target, &file).unwrap();
        let err = format!("{:#}", write_file(&file, "lab").unwrap_err());
        assert!(
            err.starts_with(&format!("opening {}", file.display())),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "kept");
        if !rustix::process::geteuid().is_root() {
            return; // only root can give a folder away
        }
        let theirs = scratch.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65_534), None).unwrap();
        let err = create_dir(&theirs).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} is owned by user 65534, not this user (0), who could plant links there \
                 for the lab to write through: give the lab a folder of its own",
                theirs.display()
            )
        );
    }

    #[test]
    fn new_folders_and_files_are_owner_only() {
        let scratch = ScratchDir::new("owner-only-new");
        let dir = scratch.path().join("a/b");
        create_dir(&dir).unwrap();
        assert_eq!(
            (mode(&scratch.path().join("a")), mode(&dir)),
            (0o700, 0o700)
        );
        let file = dir.join("f.yaml");
        write_atomically(&file, "x: 1\n").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "x: 1\n");
        assert_eq!(mode(&file), 0o600);
        let log = dir.join("p.log");
        std::fs::write(&log, "old\n").unwrap();
        std::fs::set_permissions(&log, Permissions::from_mode(0o644)).unwrap();
        use std::io::Write;
        open_file(&log, true).unwrap().write_all(b"new\n").unwrap();
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "old\nnew\n");
        assert_eq!(mode(&log), 0o600, "an older, wider file is narrowed");
    }

    #[test]
    fn an_existing_lab_folder_is_narrowed_and_a_foreign_one_refused() {
        let scratch = ScratchDir::new("owner-only-existing");
        std::fs::set_permissions(scratch.path(), Permissions::from_mode(0o755)).unwrap();
        create_dir(scratch.path()).unwrap();
        assert_eq!(mode(scratch.path()), 0o700, "empty: the lab's to take");
        std::fs::set_permissions(scratch.path(), Permissions::from_mode(0o755)).unwrap();
        std::fs::write(scratch.path().join(crate::STATE_FILE), "{}").unwrap();
        create_dir(scratch.path()).unwrap();
        assert_eq!(mode(scratch.path()), 0o700, "an older lab's state folder");
        std::fs::remove_file(scratch.path().join(crate::STATE_FILE)).unwrap();
        std::fs::write(scratch.path().join("notes.txt"), "mine").unwrap();
        std::fs::set_permissions(scratch.path(), Permissions::from_mode(0o1777)).unwrap();
        let err = create_dir(scratch.path()).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{} is open to other users (mode 1777) and holds files that are not a lab's: \
                 give the lab a folder of its own",
                scratch.path().display()
            )
        );
        assert_eq!(
            std::fs::metadata(scratch.path())
                .unwrap()
                .permissions()
                .mode()
                & 0o7777,
            0o1777,
            "left as it was"
        );
    }
}
