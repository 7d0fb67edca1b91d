//! The zip container of a `.keras` file, read with limits against zip bombs.

use std::io::{Read, Seek};

use zip::ZipArchive;

use crate::error::{Error, Result};

/// Largest `config.json` / `metadata.json` accepted (64 MiB).
pub const MAX_CONFIG_BYTES: u64 = 64 << 20;
/// Largest `model.weights.h5` accepted (2 GiB).
pub const MAX_WEIGHTS_BYTES: u64 = 2 << 30;
/// Entries larger than this must not expand more than [`MAX_RATIO`] times.
const RATIO_FREE_BYTES: u64 = 1 << 20;
/// Largest uncompressed / compressed size ratio accepted for big entries.
const MAX_RATIO: u64 = 1000;

/// The entries of a `.keras` file that the reader uses.
pub(crate) struct Parts {
    pub config: Vec<u8>,
    pub weights: Vec<u8>,
    pub keras_version: Option<String>,
}

pub(crate) fn read_parts<R: Read + Seek>(reader: R, len: u64, name: &str) -> Result<Parts> {
    let fmt = |msg: String| Error::format(name, msg);
    let mut zip = ZipArchive::new(reader)
        .map_err(|e| fmt(format!("not a .keras file (unreadable zip archive: {e})")))?;
    let missing = |zip: &ZipArchive<R>, entry: &str| {
        let names: Vec<String> = zip
            .file_names()
            .take(20)
            .map(|n| n.map(|s| s.into_owned()).unwrap_or_default())
            .collect();
        fmt(format!(
            "the archive has no {entry} (entries: {names:?}); not a Keras 3 .keras file"
        ))
    };
    if zip.index_for_name("config.json").is_none() {
        return Err(missing(&zip, "config.json"));
    }
    if zip.index_for_name("model.weights.h5").is_none() {
        return Err(missing(&zip, "model.weights.h5"));
    }
    let config = read_entry(&mut zip, "config.json", MAX_CONFIG_BYTES, len, name)?;
    let weights = read_entry(&mut zip, "model.weights.h5", MAX_WEIGHTS_BYTES, len, name)?;
    let keras_version = if zip.index_for_name("metadata.json").is_some() {
        let meta = read_entry(&mut zip, "metadata.json", MAX_CONFIG_BYTES, len, name)?;
        let v: serde_json::Value = serde_json::from_slice(&meta)
            .map_err(|e| fmt(format!("metadata.json is not valid JSON: {e}")))?;
        let version = v
            .get("keras_version")
            .and_then(|x| x.as_str())
            .map(str::to_string);
        if let Some(ver) = &version {
            if !ver.starts_with("3.") {
                return Err(Error::UnsupportedFormat {
                    found: format!("{name}: saved by Keras {ver}"),
                    supported: "files saved by Keras 3".to_string(),
                });
            }
        }
        version
    } else {
        None
    };
    Ok(Parts {
        config,
        weights,
        keras_version,
    })
}

/// Reads one entry, refusing sizes above `limit`, suspicious compression ratios and entries
/// whose content does not match their declared size.
fn read_entry<R: Read + Seek>(
    zip: &mut ZipArchive<R>,
    entry: &str,
    limit: u64,
    archive_len: u64,
    name: &str,
) -> Result<Vec<u8>> {
    let fmt = |msg: String| Error::format(name, format!("{entry}: {msg}"));
    let file = zip
        .by_name(entry)
        .map_err(|e| fmt(format!("cannot read entry: {e}")))?;
    let size = file.size();
    let packed = file.compressed_size();
    if file.encrypted() {
        return Err(fmt("encrypted entries are not supported".to_string()));
    }
    if size > limit {
        return Err(fmt(format!(
            "declared size {size} bytes exceeds the limit of {limit}"
        )));
    }
    if packed > archive_len {
        return Err(fmt(format!(
            "compressed size {packed} exceeds the archive's {archive_len} bytes"
        )));
    }
    if size > RATIO_FREE_BYTES && size / packed.max(1) > MAX_RATIO {
        return Err(fmt(format!(
            "expands from {packed} to {size} bytes (ratio over {MAX_RATIO}): refusing a possible zip bomb"
        )));
    }
    // size <= limit <= 2 GiB, and size <= max(1 MiB, 1000 * archive length).
    let mut out = Vec::with_capacity(size.min(64 << 20) as usize);
    file.take(size.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| fmt(format!("cannot decompress: {e}")))?;
    if out.len() as u64 != size {
        return Err(fmt(format!(
            "holds {} bytes but declares {size}",
            out.len()
        )));
    }
    Ok(out)
}
