//! Atomic file output: write to a temporary file in the destination directory, flush it to disk,
//! then rename it over the destination, so that a reader (or a crash) never sees a partial file.
//!
//! **Interrupts.** A front end that catches SIGINT/SIGTERM calls [`begin_interrupt`] from its
//! handler before it exits: that sets the [`interrupted`] flag and waits until no
//! [`write_atomic`] is in flight. A write in flight when the flag is set removes its temporary
//! file and fails instead of renaming it into place, and no later write starts, so an interrupted
//! run leaves neither a partial output nor a stray temporary file (only outputs that were
//! complete before the interrupt).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};

/// Set once an interrupt was requested.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Held by every [`write_atomic`] for the lifetime of its temporary file, and by
/// [`begin_interrupt`]'s caller until the process exits.
static WRITES: Mutex<()> = Mutex::new(());

/// Whether an interrupt was requested ([`begin_interrupt`]).
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Request an interrupt (call it from a signal handler thread, then exit the process): sets the
/// [`interrupted`] flag and blocks until no [`write_atomic`] is in flight. An in-flight write
/// either completed before the flag was set or removes its temporary file; while the returned
/// guard is held, no write can start. Hold it until the process exits.
pub fn begin_interrupt() -> MutexGuard<'static, ()> {
    INTERRUPTED.store(true, Ordering::SeqCst);
    WRITES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Write `bytes` to `path` atomically: a temporary file is created in the same directory
/// (`tempfile::NamedTempFile::new_in`), written, `fsync`ed and renamed over `path`. On any error
/// (and when an interrupt was requested, see the module docs) the temporary file is removed and
/// `path` is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let _writing = WRITES.lock().unwrap_or_else(PoisonError::into_inner);
    write_atomic_unless(path, bytes, &interrupted)
}

/// [`write_atomic`] that gives up, removing its temporary file, when `abort()` is true before the
/// file is created or before it is renamed into place.
fn write_atomic_unless(path: &Path, bytes: &[u8], abort: &dyn Fn() -> bool) -> Result<()> {
    let aborted = || Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::Interrupted, "interrupted"),
    };
    if abort() {
        return Err(aborted());
    }
    // tempfile decorates its errors with the random temporary name; report the user's path and
    // the plain OS error instead.
    let io_err = |source: std::io::Error| {
        let text = source.to_string();
        let plain = text.split(" at path ").next().unwrap_or(&text).to_string();
        Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(source.kind(), plain),
        }
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    tmp.flush().map_err(io_err)?;
    // NamedTempFile creates 0600 files; a result file should be readable like any other output.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    if abort() {
        // Dropping the temporary file removes it.
        drop(tmp);
        return Err(aborted());
    }
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    // Make the rename itself durable where the platform allows it; failure here is harmless.
    #[cfg(unix)]
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        // Only the destination remains: no temporary file is left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_abort_before_the_rename_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        // Aborted before the temporary file exists.
        let e = write_atomic_unless(&p, b"x", &|| true).unwrap_err();
        assert!(e.to_string().contains("interrupted"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Aborted after the data was written and synced, before the rename: the temporary file
        // is removed and the destination keeps its old content.
        write_atomic(&p, b"old").unwrap();
        let calls = std::cell::Cell::new(0);
        let abort_second = || {
            calls.set(calls.get() + 1);
            calls.get() > 1
        };
        let e = write_atomic_unless(&p, b"new", &abort_second).unwrap_err();
        assert!(e.to_string().contains("interrupted"), "{e}");
        assert_eq!(calls.get(), 2);
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn missing_directory_is_an_io_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/out.json");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert!(e.to_string().contains("no/such/dir/out.json"), "{e}");
        assert!(
            !e.to_string().contains(" at path "),
            "names the temporary file: {e}"
        );
        assert!(!p.exists());
    }
}
