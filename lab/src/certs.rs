//! Certificates for mTLS between the components: a CA, one server certificate
//! (flow-probe and the relay) and one client certificate (the relay towards
//! the probes, and `observe`), as PEM files readable by their owner only.
//!
//! The lab writes them into `<state_dir>/certs` at [`crate::Lab::up`];
//! `observe certs generate DIR` writes the same set anywhere ([`generate`]).
//! The CA's private key is not kept: a new set is generated instead of
//! issuing more certificates from an old CA.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The folder of a lab's certificates, in its state directory.
pub const CERTS_DIR: &str = "certs";
/// The names every server certificate is valid for: the loopback addresses and
/// `localhost` (a lab's components listen on 127.0.0.1).
pub const LOOPBACK_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];
/// How long certificates are valid unless told otherwise.
pub const DEFAULT_VALID_DAYS: u32 = 365;

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A server name that is neither an IP address nor a DNS name.
    #[error("server name {name:?} is not an IP address or a DNS name: {reason}")]
    InvalidName { name: String, reason: String },
    /// A validity of zero days or one too long to express.
    #[error("a validity of {0} days is out of range (1 to 36500)")]
    InvalidValidity(u32),
    /// A file of the set is already there and replacing was not asked for.
    #[error("{} exists: remove it, choose another folder or give --force to replace the set", .0.display())]
    Exists(PathBuf),
    /// A file or the folder could not be written.
    #[error("writing {}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The folder belongs to another user.
    #[error(
        "{} belongs to user {owner}, who could replace the CA in it: give the certificates a folder of your own",
        dir.display()
    )]
    NotOurs { dir: PathBuf, owner: u32 },
    /// A folder above it that another user owns, or that other users may
    /// write without the sticky bit that keeps them from renaming what is
    /// not theirs: they could swap the certificates' folder for their own.
    #[error(
        "{} {why}, who could swap {} for a folder with their own CA: give the certificates a folder whose parents only you or root can change",
        parent.display(),
        dir.display()
    )]
    OpenParent {
        parent: PathBuf,
        dir: PathBuf,
        why: String,
    },
    /// The key or certificate could not be made.
    #[error("making the certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// The files of one certificate folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFiles {
    pub dir: PathBuf,
    /// The CA certificate: what servers check clients against and clients
    /// check servers against.
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl CertFiles {
    /// The file names in `dir`: `ca.crt`, `server.crt`, `server.key`,
    /// `client.crt`, `client.key` (Hubble's names).
    pub fn in_dir(dir: impl Into<PathBuf>) -> CertFiles {
        let dir = dir.into();
        CertFiles {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            dir,
        }
    }

    /// The certificates of the lab whose state directory is `state_dir`.
    pub fn of_lab(state_dir: &Path) -> CertFiles {
        CertFiles::in_dir(state_dir.join(CERTS_DIR))
    }

    /// Every file with what it is, in the order they are written.
    pub fn all(&self) -> [(&'static str, &Path); 5] {
        [
            ("CA certificate", &self.ca_cert),
            ("server certificate", &self.server_cert),
            ("server key", &self.server_key),
            ("client certificate", &self.client_cert),
            ("client key", &self.client_key),
        ]
    }

    /// Whether every file of the set is there.
    pub fn exist(&self) -> bool {
        self.all().iter().all(|(_, p)| p.is_file())
    }
}

/// What to put in the certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertOptions {
    /// Names (DNS names or IP addresses) the server certificate is valid for,
    /// besides [`LOOPBACK_NAMES`].
    pub server_names: Vec<String>,
    pub valid_days: u32,
    /// Replace files that exist (the lab's own folder); otherwise refuse.
    pub replace: bool,
}

impl Default for CertOptions {
    fn default() -> Self {
        CertOptions {
            server_names: Vec::new(),
            valid_days: DEFAULT_VALID_DAYS,
            replace: false,
        }
    }
}

/// Makes a CA, a server and a client certificate and writes them into `dir`
/// (created owner-only if missing; every file mode 0600).
pub fn generate(dir: &Path, opts: &CertOptions) -> Result<CertFiles, CertError> {
    let files = CertFiles::in_dir(dir);
    let names = server_names(&opts.server_names)?;
    if !(1..=36_500).contains(&opts.valid_days) {
        return Err(CertError::InvalidValidity(opts.valid_days));
    }
    if !opts.replace
        && let Some((_, p)) = files.all().into_iter().find(|(_, p)| p.exists())
    {
        return Err(CertError::Exists(p.to_path_buf()));
    }
    let made = make(&names, opts.valid_days)?;
    let trust = Trust::here();
    check_parents(dir, &trust)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|error| CertError::Io {
            path: dir.to_path_buf(),
            error,
        })?;
    check_resolved(dir, &trust)?;
    own_folder(dir)?;
    let contents = [
        made.ca_cert,
        made.server_cert,
        made.server_key,
        made.client_cert,
        made.client_key,
    ];
    for ((_, path), text) in files.all().into_iter().zip(contents) {
        write_private(path, &text)?;
    }
    Ok(files)
}

/// Who may own, or write, a folder on the certificates' path without
/// being able to swap the folder for one of theirs.
pub(crate) struct Trust {
    me: u32,
    /// Under sudo, the user who asked: their own folders are no threat to them.
    asker: Option<u32>,
    /// Groups whose write is ours alone: our own (or the asker's) private
    /// group, named as its user and listing no members.
    groups: Vec<u32>,
}

impl Trust {
    pub(crate) fn here() -> Trust {
        let me = rustix::process::geteuid().as_raw();
        let sudo = |var: &str| {
            (me == 0)
                .then(|| std::env::var(var).ok()?.parse::<u32>().ok())
                .flatten()
        };
        let asker = sudo("SUDO_UID");
        let mut candidates = vec![(me, rustix::process::getegid().as_raw())];
        candidates.extend(asker.zip(sudo("SUDO_GID")));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let groups = candidates
            .into_iter()
            .filter(|&(uid, gid)| private_group(&passwd, &group, uid, gid))
            .map(|(_, gid)| gid)
            .collect();
        Trust { me, asker, groups }
    }

    pub(crate) fn owns(&self, uid: u32) -> bool {
        uid == self.me || uid == 0 || Some(uid) == self.asker
    }

    /// Why a folder with `meta` lets someone else rename what is in it.
    fn doubt(&self, meta: &std::fs::Metadata) -> Option<String> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let mode = meta.permissions().mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        if !self.owns(meta.uid()) {
            Some(format!("belongs to user {}", meta.uid()))
        } else if !sticky
            && (mode & 0o002 != 0 || (mode & 0o020 != 0 && !self.groups.contains(&meta.gid())))
        {
            Some(format!("can be written by other users (mode {mode:o})"))
        } else {
            None
        }
    }
}

/// Whether group `gid` is user `uid`'s private group in these
/// `/etc/passwd` and `/etc/group` texts: named as the user, no members.
fn private_group(passwd: &str, group: &str, uid: u32, gid: u32) -> bool {
    let user = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse() == Ok(uid)).then(|| f[0])
    });
    group.lines().any(|l| {
        let f: Vec<&str> = l.split(':').collect();
        f.len() > 3 && f[2].parse() == Ok(gid) && Some(f[0]) == user && f[3].trim().is_empty()
    })
}

/// Refuses `dir` when someone else could swap it for a folder of theirs:
/// whoever may rename entries in a folder above it, or re-point a symbolic
/// link on the way, can. Each existing folder above it, on the path as
/// given and on the path it resolves to, must pass [`Trust::doubt`], and
/// each link must be ours (root's, the asker's). Checked before anything
/// is made; [`check_resolved`] looks again once the folder exists.
fn check_parents(dir: &Path, trust: &Trust) -> Result<(), CertError> {
    use std::os::unix::fs::MetadataExt;
    let given = std::path::absolute(dir).map_err(io_at(dir))?;
    for p in given.ancestors() {
        if let Ok(link) = std::fs::symlink_metadata(p)
            && link.file_type().is_symlink()
            && !trust.owns(link.uid())
        {
            let why = format!("is a symbolic link of user {}", link.uid());
            return Err(open_parent(p, dir, why));
        }
    }
    // The nearest folder that exists, resolved: the rest does not exist yet.
    let existing = given
        .ancestors()
        .find(|a| a.exists())
        .unwrap_or(Path::new("/"));
    let real = std::fs::canonicalize(existing).map_err(io_at(existing))?;
    let parents = given.ancestors().skip(1).filter(|a| a.exists());
    // `dir` itself, when it exists, is own_folder's to check.
    let own = usize::from(existing == given.as_path());
    check_folders(parents.chain(real.ancestors().skip(own)), dir, trust)
}

/// Once `dir` exists: the folders above where it really is, which a `..`
/// or a link in the part that did not exist before could have moved.
fn check_resolved(dir: &Path, trust: &Trust) -> Result<(), CertError> {
    let real = std::fs::canonicalize(dir).map_err(io_at(dir))?;
    check_folders(real.ancestors().skip(1), dir, trust)
}

/// [`Trust::doubt`] of each of `folders` above `dir`.
fn check_folders<'a>(
    folders: impl Iterator<Item = &'a Path>,
    dir: &Path,
    trust: &Trust,
) -> Result<(), CertError> {
    for folder in folders {
        let meta = std::fs::metadata(folder).map_err(io_at(folder))?;
        if let Some(why) = trust.doubt(&meta) {
            return Err(open_parent(folder, dir, why));
        }
    }
    Ok(())
}

fn open_parent(parent: &Path, dir: &Path, why: String) -> CertError {
    CertError::OpenParent {
        parent: parent.to_path_buf(),
        dir: dir.to_path_buf(),
        why,
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> CertError {
    let path = path.to_path_buf();
    move |error| CertError::Io { path, error }
}

/// Makes `dir` 0700 if it is ours; refuses it if it is someone else's,
/// who could then replace the CA servers trust clients by (a folder made
/// before in /tmp, say), and let their own client certificates in.
fn own_folder(dir: &Path) -> Result<(), CertError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |error| CertError::Io {
        path: dir.to_path_buf(),
        error,
    };
    let meta = std::fs::metadata(dir).map_err(io)?;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(CertError::NotOurs {
            dir: dir.to_path_buf(),
            owner: meta.uid(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// The PEM texts of one set.
struct Made {
    ca_cert: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn make(server_names: &[SanType], valid_days: u32) -> Result<Made, CertError> {
    let now = jiff::Timestamp::now();
    let today = jiff::tz::Offset::UTC.to_datetime(now).date();
    // From a day early: a peer whose clock is a little behind accepts them too.
    let from = today.yesterday().unwrap_or(today);
    // To the midnight (UTC) after a whole `valid_days` from now: a set made
    // at 23:59 with one day ended a minute later (TLS review).
    let until = today
        .checked_add(jiff::Span::new().days(i64::from(valid_days) + 1))
        .unwrap_or(jiff::civil::Date::MAX);
    let params = |cn: &str| {
        let mut p = CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.not_before =
            rcgen::date_time_ymd(from.year().into(), from.month() as u8, from.day() as u8);
        p.not_after =
            rcgen::date_time_ymd(until.year().into(), until.month() as u8, until.day() as u8);
        p
    };

    let ca_key = KeyPair::generate()?;
    // Two CAs made in the same second still have different names (a client
    // of one CA is then told "unknown CA" by a server of the other).
    let key_id: String = ca_key.public_key_raw()[1..5]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut ca = params(&format!(
        "observe CA {key_id} {}",
        now.strftime("%Y-%m-%dT%H:%M:%SZ")
    ));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |cn: &str, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose| {
        let mut p = params(cn);
        p.subject_alt_names = sans;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![usage];
        p.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        Ok::<_, rcgen::Error>((cert.pem(), key.serialize_pem()))
    };
    let (server_cert, server_key) = leaf(
        "observe server",
        server_names.to_vec(),
        ExtendedKeyUsagePurpose::ServerAuth,
    )?;
    let (client_cert, client_key) = leaf(
        "observe client",
        Vec::new(),
        ExtendedKeyUsagePurpose::ClientAuth,
    )?;
    Ok(Made {
        ca_cert: ca_cert.pem(),
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

/// [`LOOPBACK_NAMES`] and `extra`, each once, as subject alternative names.
fn server_names(extra: &[String]) -> Result<Vec<SanType>, CertError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let names = LOOPBACK_NAMES.iter().copied();
    for n in names.chain(extra.iter().map(String::as_str)) {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if is_dns_name(n) => SanType::DnsName(n.try_into()?),
            Err(_) => {
                return Err(CertError::InvalidName {
                    name: n.to_string(),
                    reason: "expected dot-separated labels of letters, digits and '-' \
                             (a first label may be '*')"
                        .to_string(),
                });
            }
        };
        if seen.insert(n.to_ascii_lowercase()) {
            out.push(san);
        }
    }
    Ok(out)
}

/// Labels of 1 to 63 letters, digits and inner `-`, the first possibly `*`.
fn is_dns_name(n: &str) -> bool {
    n.len() <= 253
        && n.split('.').enumerate().all(|(i, label)| {
            (i == 0 && label == "*")
                || ((1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || c == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        })
}

/// Writes `text` to `path` as a new file of mode 0600 (an old one is removed
/// first, so its mode does not carry over).
fn write_private(path: &Path, text: &str) -> Result<(), CertError> {
    let io = |error| CertError::Io {
        path: path.to_path_buf(),
        error,
    };
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use test_support::scratch::ScratchDir;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_set_is_five_owner_only_pem_files_in_an_owner_only_folder() {
        let scratch = ScratchDir::new("certs-set");
        let dir = scratch.path().join("new/certs");
        let files = generate(&dir, &CertOptions::default()).unwrap();
        assert_eq!(files, CertFiles::in_dir(&dir));
        assert!(files.exist());
        assert_eq!(mode(&dir), 0o700);
        for (what, path) in files.all() {
            assert_eq!(mode(path), 0o600, "{what}");
            let text = std::fs::read_to_string(path).unwrap();
            let header = if what.ends_with("key") {
                "-----BEGIN PRIVATE KEY-----\n"
            } else {
                "-----BEGIN CERTIFICATE-----\n"
            };
            assert!(text.starts_with(header), "{what}: {text}");
        }
    }

    /// A folder someone made before: ours is narrowed to 0700, another
    /// user's refused (they could swap the CA afterwards).
    #[test]
    fn an_existing_folder_is_made_owner_only_or_refused_if_not_ours() {
        let scratch = ScratchDir::new("certs-open");
        let dir = scratch.path().join("open");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        generate(&dir, &CertOptions::default()).unwrap();
        assert_eq!(mode(&dir), 0o700);

        if !rustix::process::geteuid().is_root() {
            return; // only root can give a folder away
        }
        let theirs = scratch.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65_534), None).unwrap();
        let err = generate(&theirs, &CertOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} belongs to user 65534, who could replace the CA in it: give the \
                 certificates a folder of your own",
                theirs.display()
            )
        );
        assert!(!CertFiles::in_dir(&theirs).ca_cert.exists());

        // Our folder inside theirs: they could rename it and put their own
        // there. Refused before anything is made.
        let inside = theirs.join("ours");
        let err = generate(&inside, &CertOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} belongs to user 65534, who could swap {} for a folder with their own CA: \
                 give the certificates a folder whose parents only you or root can change",
                theirs.display(),
                inside.display()
            )
        );
        assert!(!inside.exists());

        // Reached through a symbolic link in their folder, which they could
        // point elsewhere later: the link's folder counts too.
        let mine = scratch.path().join("mine");
        std::fs::create_dir(&mine).unwrap();
        let link = theirs.join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        let err = generate(&link, &CertOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{} belongs to user 65534", theirs.display())),
            "{err}"
        );
        assert!(!CertFiles::in_dir(&mine).ca_cert.exists());

        // A `..` after a folder that does not exist yet leads into theirs:
        // found once the folder is made, before anything is written.
        let around = scratch.path().join("missing/../theirs/certs");
        let err = generate(&around, &CertOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("{} belongs to user 65534", theirs.display())),
            "{err}"
        );
        assert!(!CertFiles::in_dir(theirs.join("certs")).ca_cert.exists());

        // A link of theirs in a sticky folder (as /tmp is): they may point
        // it elsewhere whatever it points at now.
        let sticky = scratch.path().join("sticky");
        std::fs::create_dir(&sticky).unwrap();
        std::fs::set_permissions(&sticky, std::fs::Permissions::from_mode(0o1777)).unwrap();
        let their_link = sticky.join("link");
        std::os::unix::fs::symlink(&mine, &their_link).unwrap();
        std::os::unix::fs::lchown(&their_link, Some(65_534), None).unwrap();
        let err = generate(&their_link, &CertOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} is a symbolic link of user 65534, who could swap {} for a folder with \
                 their own CA: give the certificates a folder whose parents only you or root \
                 can change",
                their_link.display(),
                their_link.display()
            )
        );
        assert!(!CertFiles::in_dir(&mine).ca_cert.exists());
    }

    #[test]
    fn only_a_private_group_may_write_a_parent() {
        let passwd = "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        let group = "root:x:0:\nalice:x:1000:\nusers:x:100:alice,bob\nstaff:x:50:\n";
        assert!(private_group(passwd, group, 1000, 1000));
        assert!(private_group(passwd, group, 0, 0));
        assert!(
            !private_group(passwd, group, 1000, 100),
            "shared, with members"
        );
        assert!(!private_group(passwd, group, 1000, 50), "another name");
        assert!(!private_group(passwd, group, 2000, 1000), "unknown user");
    }

    /// A parent anyone may write, without the sticky bit /tmp has, lets
    /// anyone swap the folder; with it, only its owner could.
    #[test]
    fn a_parent_others_may_write_is_refused_unless_sticky() {
        let scratch = ScratchDir::new("certs-parent");
        let open = scratch.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let certs = open.join("certs");
        let err = generate(&certs, &CertOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} can be written by other users (mode 777), who could swap {} for a folder \
                 with their own CA: give the certificates a folder whose parents only you or \
                 root can change",
                open.display(),
                certs.display()
            )
        );
        assert!(!certs.exists(), "nothing made before the check");

        // Writable by our own group only (a user's private group, umask 002).
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o775)).unwrap();
        std::os::unix::fs::chown(&open, None, Some(rustix::process::getegid().as_raw())).unwrap();
        assert!(generate(&certs, &CertOptions::default()).unwrap().exist());
        std::fs::remove_dir_all(&certs).unwrap();
        // Another group's members may write: refused (root can give it away).
        if rustix::process::geteuid().is_root() {
            std::os::unix::fs::chown(&open, None, Some(65_534)).unwrap();
            let err = generate(&certs, &CertOptions::default()).unwrap_err();
            assert!(
                err.to_string().starts_with(&format!(
                    "{} can be written by other users (mode 775)",
                    open.display()
                )),
                "{err}"
            );
        }

        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(generate(&certs, &CertOptions::default()).unwrap().exist());
    }

    #[test]
    fn existing_files_are_kept_unless_replacing_is_asked_for() {
        let scratch = ScratchDir::new("certs-exist");
        let files = CertFiles::in_dir(scratch.path());
        std::fs::write(&files.server_key, "mine").unwrap();
        let err = generate(scratch.path(), &CertOptions::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{} exists: remove it, choose another folder or give --force to replace the set",
                files.server_key.display()
            )
        );
        assert_eq!(std::fs::read_to_string(&files.server_key).unwrap(), "mine");
        assert!(!files.ca_cert.exists(), "nothing written before the check");

        std::fs::set_permissions(&files.server_key, std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let replace = CertOptions {
            replace: true,
            ..CertOptions::default()
        };
        generate(scratch.path(), &replace).unwrap();
        assert_eq!(
            mode(&files.server_key),
            0o600,
            "the old mode does not carry over"
        );
        assert_ne!(std::fs::read_to_string(&files.server_key).unwrap(), "mine");
    }

    #[test]
    fn server_names_are_loopback_and_the_given_ones_once_each() {
        let names = server_names(&[
            "node1.example".into(),
            "10.0.0.5".into(),
            "LOCALHOST".into(),
            "*.relay.example".into(),
        ])
        .unwrap();
        assert_eq!(
            names,
            [
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::IpAddress("::1".parse().unwrap()),
                SanType::DnsName("localhost".try_into().unwrap()),
                SanType::DnsName("node1.example".try_into().unwrap()),
                SanType::IpAddress("10.0.0.5".parse().unwrap()),
                SanType::DnsName("*.relay.example".try_into().unwrap()),
            ]
        );
        for bad in ["", "a..b", "-a.example", "a b", "ä.example", "a.*"] {
            let err = server_names(&[bad.to_string()]).unwrap_err();
            assert!(
                matches!(&err, CertError::InvalidName { name, .. } if name == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn validity_is_checked_before_anything_is_written() {
        let scratch = ScratchDir::new("certs-days");
        let opts = CertOptions {
            valid_days: 0,
            ..CertOptions::default()
        };
        let err = generate(scratch.path(), &opts).unwrap_err();
        assert_eq!(
            err.to_string(),
            "a validity of 0 days is out of range (1 to 36500)"
        );
        assert!(!CertFiles::in_dir(scratch.path()).ca_cert.exists());
    }
}
