//! Crash-safe file replacement (invariant 2).
//!
//! A file is written to a temporary file in the same folder, fsynced, renamed over the target and
//! the folder fsynced, so a reader (or a crash) sees either the old file or the new one, never a
//! half-written one. The temporary file is removed if anything fails before the rename.
//!
//! A target that is a symlink is written through: the file it points to is replaced (beside
//! it), and the link stays a link.
//!
//! Each temporary file is locked (`flock`) by its writer from its creation until it is renamed
//! into place or removed. A writer removes the temporary files it finds beside its target only
//! when it can take their lock: their writer is gone (a crash). A live one (another `init` or
//! `hosts add` at the same moment) is left alone (issue 29, class 6).

use std::fs::{File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Mode and owner a new file gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ownership {
    pub mode: u32,
    pub uid_gid: Option<(u32, u32)>,
}

impl Ownership {
    /// Only the owner may read or write: state and candidate files.
    pub(crate) const PRIVATE: Ownership = Ownership {
        mode: 0o600,
        uid_gid: None,
    };

    /// The mode and owner of an existing file, or `fallback` when it does not exist.
    pub(crate) fn of_existing(path: &Path, fallback: Ownership) -> io::Result<Ownership> {
        match std::fs::metadata(path) {
            Ok(metadata) => Ok(Ownership {
                mode: metadata.mode() & 0o7777,
                uid_gid: Some((metadata.uid(), metadata.gid())),
            }),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(fallback),
            Err(error) => Err(error),
        }
    }
}

/// A fully written and fsynced temporary file beside its target, not yet renamed into place.
#[derive(Debug)]
pub(crate) struct Staged {
    temp: NamedTempFile,
    target: PathBuf,
}

impl Staged {
    /// Writes `contents` to a new temporary file in `target`'s folder, with mode 0600.
    pub(crate) fn write(target: &Path, contents: &[u8]) -> io::Result<Staged> {
        let target = &write_target(target)?;
        refuse_non_regular(target)?;
        let dir = parent_dir(target);
        let file_name = target
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{file_name}.");
        remove_leftovers(dir, &prefix);
        let mut temp = locked_temp(dir, &prefix)?;
        temp.write_all(contents)?;
        temp.as_file().sync_all()?;
        Ok(Staged {
            temp,
            target: target.to_owned(),
        })
    }

    /// Where the staged contents can be read (for example by `haproxy -c`).
    pub(crate) fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Like [`Staged::commit`], but only if the target does not exist: an existing file is
    /// never replaced (an `AlreadyExists` error), even one created since the check.
    pub(crate) fn commit_new(self, ownership: Ownership) -> io::Result<()> {
        self.place(ownership, false)
    }

    /// Gives the staged file `ownership`, renames it over the target and fsyncs the folder.
    pub(crate) fn commit(self, ownership: Ownership) -> io::Result<()> {
        self.place(ownership, true)
    }

    /// Gives the staged file `ownership` and moves it to the target (over an existing one only
    /// if `replace`), then fsyncs the folder.
    fn place(self, ownership: Ownership, replace: bool) -> io::Result<()> {
        if let Some((uid, gid)) = ownership.uid_gid {
            // Keeping the owner is best effort: only root may give a file away.
            let _ = std::os::unix::fs::fchown(self.temp.as_file(), Some(uid), Some(gid));
        }
        self.temp
            .as_file()
            .set_permissions(Permissions::from_mode(ownership.mode))?;
        self.temp.as_file().sync_all()?;
        let dir = parent_dir(&self.target).to_owned();
        if replace {
            self.temp
                .persist(&self.target)
                .map_err(|error| error.error)?;
        } else {
            self.temp
                .persist_noclobber(&self.target)
                .map_err(|error| error.error)?;
        }
        File::open(dir)?.sync_all()
    }
}

/// Every write goes through here (issue 29, class 1): what is at a target (or where its
/// symlinks lead) is replaced only when it is a regular file or nothing. A FIFO, a device node,
/// a socket or a folder is never replaced, nor opened (a FIFO would block the run).
fn refuse_non_regular(target: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(target) {
        Ok(metadata) if !metadata.is_file() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "`{}` is not a regular file (a FIFO, a device, a socket or a folder): it is never replaced",
                target.display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// A new temporary file in `dir`, mode 0600 (nobody else can read it while it is written),
/// locked by this process until it is renamed into place or dropped.
fn locked_temp(dir: &Path, prefix: &str) -> io::Result<NamedTempFile> {
    use fs2::FileExt;
    for _ in 0..8 {
        let temp = tempfile::Builder::new()
            .prefix(prefix)
            .suffix(".tmp")
            .tempfile_in(dir)?;
        // Blocks only while another writer holds it to see whether it is abandoned.
        temp.as_file().lock_exclusive()?;
        // That writer may have taken the lock between the creation and here, and removed the
        // file: a file without a name is useless; make another.
        if temp.as_file().metadata()?.nlink() > 0 {
            return Ok(temp);
        }
    }
    Err(io::Error::other(format!(
        "cannot keep a temporary file in `{}`: another process removes them",
        dir.display()
    )))
}

/// Removes the temporary files (`.NAME.<random>.tmp`) beside a target whose writer is gone: those
/// whose lock can be taken. Best effort.
fn remove_leftovers(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with(prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let path = entry.path();
        // Held while removing, so that no writer can be mid-way on it.
        let Some(_abandoned) = abandoned(&path) else {
            continue;
        };
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::warn!("removed `{}`, left by an interrupted run", path.display()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(
                "cannot remove `{}`, left by an interrupted run: {error}",
                path.display()
            ),
        }
    }
}

/// How old an empty temporary file must be before it can be taken for abandoned. A writer
/// creates its file empty and locks it at once, and only then writes: in that instant the lock
/// cannot tell a file being created from an abandoned one, but its emptiness and age can.
const ABANDONED_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// The temporary file at `path`, locked, when its writer is gone: its lock can be taken, and it
/// holds something (so its writer had locked it) or was created [`ABANDONED_AFTER`] ago or
/// more. `None` when a writer holds it or may be about to, or it is not a regular file (never
/// opened in a way that could block: not followed if a link, opened non-blocking).
fn abandoned(path: &Path) -> Option<File> {
    use fs2::FileExt;
    use std::os::unix::fs::OpenOptionsExt;
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .ok()?;
    let metadata = file.metadata().ok()?;
    let age = metadata.modified().ok()?.elapsed().unwrap_or_default();
    if !metadata.is_file() || (metadata.len() == 0 && age < ABANDONED_AFTER) {
        return None;
    }
    file.try_lock_exclusive().ok()?;
    Some(file)
}

/// A new file in the system's temporary folder (`$TMPDIR`), mode 0600, holding `contents`; it
/// is removed when the returned handle is dropped.
pub(crate) fn private_temp(
    prefix: &str,
    suffix: &str,
    contents: &[u8],
) -> io::Result<NamedTempFile> {
    let mut temp = tempfile::Builder::new()
        .prefix(prefix)
        .suffix(suffix)
        .tempfile()?;
    temp.write_all(contents)?;
    Ok(temp)
}

/// Opens (creating it, mode 0600) the lock file at `path`, for `flock`. What is there must be a
/// regular file (or nothing), directly or at the end of its symlinks: anything else is refused
/// before it is opened (opening a device can act on it). The open itself is non-blocking, and
/// what was opened is checked again, in case it was swapped in between.
pub(crate) fn open_lock_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let not_regular = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, a device, a socket or a folder)",
        )
    };
    match std::fs::metadata(path) {
        Ok(metadata) if !metadata.is_file() => return Err(not_regular()),
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes. Anything else is refused before it is
/// read: a FIFO (`open` would block until a writer comes), a device (`/dev/zero` never ends), a
/// folder, or a file larger than `limit`, so that a read costs a bounded time and memory.
/// [`read_regular`] as text: bytes that are not UTF-8 are an `InvalidData` error.
pub(crate) fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not valid UTF-8"))
}

pub(crate) fn read_regular(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let metadata = std::fs::metadata(path)?;
    if !metadata.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, a device or a folder)",
        ));
    }
    let too_large = || {
        let bound = if limit >= 1024 * 1024 {
            format!("{} MiB", limit / (1024 * 1024))
        } else {
            format!("{limit} bytes")
        };
        io::Error::new(io::ErrorKind::InvalidData, format!("larger than {bound}"))
    };
    if metadata.len() > limit {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(metadata.len() as usize);
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The first `len` bytes (or fewer) of a regular file at `path`: what a file begins with, read in
/// bounded time and memory whatever its size.
pub(crate) fn read_prefix(path: &Path, len: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    if !std::fs::metadata(path)?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (a FIFO, a device or a folder)",
        ));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(len)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Replaces `target` with `contents` atomically.
pub(crate) fn write(target: &Path, contents: &[u8], ownership: Ownership) -> io::Result<()> {
    Staged::write(target, contents)?.commit(ownership)
}

/// The file a write to `path` must replace: `path` itself, or where it points when it is a
/// symlink (to any depth). Replacing the link itself would silently turn it into a regular file
/// and cut it from what the operator links it to; the atomic replacement happens beside the
/// link's target instead.
pub(crate) fn write_target(path: &Path) -> io::Result<PathBuf> {
    let mut path = path.to_owned();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&path) {
            Ok(metadata) if metadata.file_type().is_symlink() => {
                let link = std::fs::read_link(&path)?;
                path = if link.is_absolute() {
                    link
                } else {
                    parent_dir(&path).join(link)
                };
            }
            _ => return Ok(path),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        "too many levels of symbolic links",
    ))
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 29, class 1: a FIFO, a device or a folder at a target, directly or at the end of a
    /// symlink, is neither replaced nor opened; the write fails at once, naming it.
    #[test]
    fn what_is_not_a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        crate::testing::fifo(&fifo);
        std::os::unix::fs::symlink(&fifo, dir.path().join("to-fifo")).unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join("to-null")).unwrap();
        std::fs::create_dir(dir.path().join("folder")).unwrap();
        for name in ["fifo", "to-fifo", "to-null", "folder"] {
            let path = dir.path().join(name);
            let error = write(&path, b"x", Ownership::PRIVATE).unwrap_err();
            assert!(
                error.to_string().contains("is not a regular file"),
                "{name}: {error}"
            );
        }
        let fifo_type = std::fs::symlink_metadata(&fifo).unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo_type));
        let null = std::fs::metadata("/dev/null").unwrap().file_type();
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&null));
        assert!(dir.path().join("folder").is_dir());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 4, "no temporary file left: {left:?}");
    }

    /// Issue 10, class 18: a symlinked target is written through; the link stays a link.
    #[test]
    fn class_18_symlinks_are_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let managed = dir.path().join("managed");
        std::fs::create_dir(&managed).unwrap();
        // An existing target, a dangling one (the file is created where the link points), and a
        // chain of two links with a relative step.
        std::fs::write(managed.join("a.cfg"), "old").unwrap();
        std::os::unix::fs::symlink(managed.join("a.cfg"), dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink(managed.join("b.cfg"), dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("managed/a.cfg", dir.path().join("c1")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("c1"), dir.path().join("c")).unwrap();
        for (link, target) in [("a", "a.cfg"), ("b", "b.cfg"), ("c", "a.cfg")] {
            let link = dir.path().join(link);
            write(&link, link.to_string_lossy().as_bytes(), Ownership::PRIVATE).unwrap();
            assert!(
                std::fs::symlink_metadata(&link)
                    .unwrap()
                    .file_type()
                    .is_symlink(),
                "{} stays a link",
                link.display()
            );
            assert_eq!(
                std::fs::read_to_string(managed.join(target)).unwrap(),
                link.to_string_lossy()
            );
        }
    }

    #[test]
    fn write_replaces_the_file_and_leaves_no_temporary_behind() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("state.json");
        std::fs::write(&target, "old").unwrap();
        write(&target, b"new", Ownership::PRIVATE).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        let mode = std::fs::metadata(&target).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn leftovers_of_a_crashed_run_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("haproxy.cfg");
        let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_hours(1);
        for name in [".haproxy.cfg.Ab12Cd.tmp", ".haproxy.cfg.bak.x1y2z3.tmp"] {
            let file = File::create(dir.path().join(name)).unwrap();
            file.set_modified(an_hour_ago).unwrap();
        }
        for name in ["haproxy.cfg.bak", ".other.cfg.Ab12Cd.tmp", "notes.tmp"] {
            std::fs::write(dir.path().join(name), "keep").unwrap();
        }
        // Just created and empty: its writer may not hold its lock yet.
        std::fs::write(dir.path().join(".haproxy.cfg.Fresh1.tmp"), "").unwrap();
        // Just written, unlocked: its writer crashed (the crash tests recover at once).
        std::fs::write(dir.path().join(".haproxy.cfg.Crash1.tmp"), "half").unwrap();
        write(&target, b"new", Ownership::PRIVATE).unwrap();
        let mut names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".haproxy.cfg.Fresh1.tmp",
                ".other.cfg.Ab12Cd.tmp",
                "haproxy.cfg",
                "haproxy.cfg.bak",
                "notes.tmp"
            ]
        );
    }

    #[test]
    fn a_staged_file_that_is_dropped_leaves_the_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("haproxy.cfg");
        std::fs::write(&target, "old").unwrap();
        let staged = Staged::write(&target, b"candidate").unwrap();
        assert_eq!(
            std::fs::metadata(staged.path()).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(staged.path()).unwrap(), "candidate");
        drop(staged);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn existing_mode_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("haproxy.cfg");
        std::fs::write(&target, "old").unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o644)).unwrap();
        let ownership = Ownership::of_existing(&target, Ownership::PRIVATE).unwrap();
        write(&target, b"new", ownership).unwrap();
        assert_eq!(std::fs::metadata(&target).unwrap().mode() & 0o777, 0o644);
    }
}
