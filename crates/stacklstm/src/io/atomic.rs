//! Atomic file writes: a temporary file in the same folder, `fsync`, then a rename over the
//! final name.
//!
//! [`write_atomic`] is the one file-writing helper of the crate: every file the crate writes
//! goes through it, so a crash never leaves a half-written file under the final name.

use crate::error::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically.
///
/// The bytes go to a new temporary file in the same directory (`.<name>.tmp.<pid>.<n>`), which
/// is flushed to disk (`fsync`) and then renamed over `path`. On Unix the directory is synced
/// too (best effort), so the rename itself survives a crash. Readers see either the old file or
/// the complete new one, never a partial write. On any error the temporary file is removed.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let name = path.file_name().ok_or_else(|| {
        Error::input(format!(
            "cannot write to '{}': the path has no file name",
            path.display()
        ))
    })?;
    let dir: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}.{}", std::process::id(), n));
    let tmp = dir.join(tmp_name);

    // Errors name `path`, the file the caller asked for, not the temporary file.
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(path, explain_dir_error(&dir, e)))?;
        f.write_all(bytes).map_err(|e| Error::io(path, e))?;
        f.sync_all().map_err(|e| Error::io(path, e))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    #[cfg(unix)]
    {
        // Make the rename durable. Failure here is not fatal: the data is already in place.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// Says what is wrong with the folder a file could not be created in, when that is the
/// cause ("No such file or directory" alone does not tell which part is missing).
fn explain_dir_error(dir: &Path, e: std::io::Error) -> std::io::Error {
    if !dir.exists() {
        std::io::Error::new(
            e.kind(),
            format!("the folder {} does not exist", dir.display()),
        )
    } else if !dir.is_dir() {
        std::io::Error::new(e.kind(), format!("{} is not a folder", dir.display()))
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("stacklstm_wa_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f.bin");
        write_atomic(&p, b"first").unwrap();
        write_atomic(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "temp files left behind: {names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_atomic_into_missing_dir_is_io_error() {
        let p = std::env::temp_dir().join("stacklstm_no_such_dir_xyz/a/b.npy");
        match write_atomic(&p, b"x") {
            Err(e @ Error::Io { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("/a/b.npy: the folder"), "{msg}");
                assert!(msg.ends_with("/a does not exist"), "{msg}");
                assert!(!msg.contains(".tmp"), "{msg}");
            }
            other => panic!("expected Io error, got {other:?}"),
        }
    }

    #[test]
    fn write_atomic_under_a_file_says_it_is_not_a_folder() {
        let dir = std::env::temp_dir().join(format!("stacklstm_wa_file_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("plain");
        std::fs::write(&file, b"x").unwrap();
        let msg = write_atomic(file.join("out.bin"), b"y")
            .unwrap_err()
            .to_string();
        assert!(msg.ends_with("plain is not a folder"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
