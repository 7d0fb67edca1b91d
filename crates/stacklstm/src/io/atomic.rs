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
/// the complete new one, never a partial write. On any error (a full disk, a file size
/// limit) the temporary file is removed and the previous file is left as it was; temporary
/// files of earlier saves of the same file whose process was killed are removed first.
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
    remove_stale_temps(&dir, name);
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

/// Removes the temporary files an earlier save of `name` in `dir` left behind when its
/// process was killed mid-write (`.<name>.tmp.<pid>.<n>` of a process that no longer runs).
/// Best effort: a file that cannot be removed is left alone.
fn remove_stale_temps(dir: &Path, name: &std::ffi::OsStr) {
    let Some(name) = name.to_str() else {
        return;
    };
    let prefix = format!(".{name}.tmp.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let Some((pid, n)) = rest.split_once('.') else {
            continue;
        };
        let (Ok(pid), true) = (pid.parse::<u32>(), n.bytes().all(|c| c.is_ascii_digit())) else {
            continue;
        };
        if !process_alive(pid) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Whether process `pid` still runs (and so may still be writing its temporary file). Where
/// that cannot be told, every process counts as alive, so nothing is removed.
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
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
    #[cfg(target_os = "linux")]
    fn stale_temps_of_dead_processes_are_removed_on_the_next_save() {
        let dir = std::env::temp_dir().join(format!("stacklstm_wa_stale_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("m.safetensors");
        // A save killed mid-write (pid beyond any pid_max), one in flight in this process,
        // another file's temp, and a look-alike that is not ours.
        let dead = dir.join(".m.safetensors.tmp.4294967295.0");
        let ours = dir.join(format!(".m.safetensors.tmp.{}.999", std::process::id()));
        let other = dir.join(".n.safetensors.tmp.4294967295.0");
        let unrelated = dir.join(".m.safetensors.tmp.notes");
        for f in [&dead, &ours, &other, &unrelated] {
            std::fs::write(f, b"partial").unwrap();
        }
        write_atomic(&p, b"model").unwrap();
        assert!(!dead.exists(), "the dead process's temp file is removed");
        assert!(ours.exists() && other.exists() && unrelated.exists());
        assert_eq!(std::fs::read(&p).unwrap(), b"model");
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
