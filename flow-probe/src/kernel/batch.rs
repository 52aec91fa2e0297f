//! Batched map reads and deletes (`BPF_MAP_LOOKUP_BATCH`,
//! `BPF_MAP_DELETE_BATCH`), which aya does not offer: one system call per
//! thousands of entries instead of two per entry.
//! The only raw `bpf(2)` calls of flow-probe, for hash maps and arrays of
//! plain-data keys and values.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `enum bpf_cmd` values (linux/bpf.h).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// Entries asked for per call to start with; doubled when one hash bucket
/// holds more (`ENOSPC`).
const CHUNK: usize = 4096;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The `bpf_attr` shapes this module passes.
trait Attr {}
impl Attr for BatchAttr {}

/// Runs one `bpf(2)` command; `Ok(true)` when the kernel answers `ENOENT`
/// (the map has no more entries; a batch's `attr.count` says what it did anyway).
fn bpf<A: Attr>(cmd: libc::c_long, attr: &mut A) -> io::Result<bool> {
    // SAFETY: `attr` is a valid, initialized `bpf_attr` prefix of the size we
    // pass (the two `Attr` types); the pointers in it were set by the callers
    // to buffers that hold as many keys (and values) of the map's sizes as
    // the command may write, which live until the call returns.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), size_of::<A>()) };
    if r == 0 {
        return Ok(false);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ENOENT) => Ok(true),
        _ => Err(err),
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Every (key, value) of the map `fd` (see [`for_each`]).
pub fn lookup_all<K: aya::Pod + Default, V: aya::Pod + Default>(
    fd: BorrowedFd<'_>,
) -> io::Result<Vec<(K, V)>> {
    let mut out = Vec::new();
    for_each(fd, |k: K, v: V| out.push((k, v)))?;
    Ok(out)
}

/// Calls `f` with every (key, value) of the hash map or array `fd`, whose key
/// and value sizes must be those of `K` and `V`. Entries that change while it
/// reads may be seen in their old or new state, or (when added or deleted
/// meanwhile) not at all.
pub fn for_each<K: aya::Pod + Default, V: aya::Pod + Default>(
    fd: BorrowedFd<'_>,
    mut f: impl FnMut(K, V),
) -> io::Result<()> {
    let mut chunk = CHUNK;
    let mut keys = vec![K::default(); chunk];
    let mut values = vec![V::default(); chunk];
    // The position between calls: a bucket index for hash maps, an element
    // index for arrays (4 bytes).
    let (mut position, mut next) = (0u64, 0u64);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first {
                0
            } else {
                std::ptr::from_mut(&mut position) as u64
            },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(chunk).unwrap_or(u32::MAX),
            map_fd: fd_u32(fd),
            ..BatchAttr::default()
        };
        let done = match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                // One bucket holds more entries than we asked for.
                chunk *= 2;
                keys.resize(chunk, K::default());
                values.resize(chunk, V::default());
                continue;
            }
            other => other?,
        };
        let n = (attr.count as usize).min(chunk);
        for (k, v) in keys[..n].iter().zip(&values[..n]) {
            f(*k, *v);
        }
        if done || n == 0 {
            return Ok(());
        }
        position = next;
        first = false;
    }
}

/// Deletes `keys` from the hash map `fd`; keys already gone are skipped.
/// Returns how many it deleted.
pub fn delete<K: aya::Pod>(fd: BorrowedFd<'_>, keys: &[K]) -> io::Result<usize> {
    let mut at = 0;
    let mut deleted = 0;
    while at < keys.len() {
        let rest = &keys[at..];
        let mut attr = BatchAttr {
            keys: rest.as_ptr() as u64,
            count: u32::try_from(rest.len()).unwrap_or(u32::MAX),
            map_fd: fd_u32(fd),
            ..BatchAttr::default()
        };
        let missing = bpf(BPF_MAP_DELETE_BATCH, &mut attr)?;
        let n = attr.count as usize;
        deleted += n;
        // The kernel stops at the first key it does not find.
        at += n + usize::from(missing);
        if !missing && n < rest.len() {
            return Err(io::Error::other(format!(
                "batch delete stopped after {n} of {} keys",
                rest.len()
            )));
        }
    }
    Ok(deleted)
}
