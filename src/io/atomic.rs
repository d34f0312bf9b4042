//! Atomic file output: write to a temporary file in the destination directory, flush it to disk,
//! then rename it over the destination, so that a reader (or a crash) never sees a partial file.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// Write `bytes` to `path` atomically: a temporary file is created in the same directory
/// (`tempfile::NamedTempFile::new_in`), written, `fsync`ed and renamed over `path`. On any error
/// the temporary file is removed and `path` is left untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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
