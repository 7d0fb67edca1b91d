//! Hostile and malformed input: every case must give `Err`, never a panic or a hang.

mod common;

use std::io::{Cursor, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use stacklstm::io::keras::{parse_keras_config, read_keras_bytes, read_weights_h5_bytes};
use stacklstm::Error;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

fn fixtures_dir() -> PathBuf {
    common::fixtures_dir()
}

fn fixture(case: &str, file: &str) -> Vec<u8> {
    let p = fixtures_dir().join(case).join(file);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn zip_of(entries: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, opts).expect("start_file");
        w.write_all(data).expect("write");
    }
    w.finish().expect("finish").into_inner()
}

fn assert_format_err<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) -> String {
    match r {
        Err(e @ Error::Format { .. }) => e.to_string(),
        other => panic!("{what}: expected Error::Format, got {other:?}"),
    }
}

/// Offset of the end-of-file address in a version-0 superblock with 8-byte offsets.
const EOF_FIELD: usize = 40;

#[test]
fn every_truncation_of_a_weights_file_is_an_error() {
    let full = fixture("seed_stack2", "model.weights.h5");
    assert!(read_weights_h5_bytes(&full, "full").is_ok());
    let start = Instant::now();
    for len in 0..full.len() {
        let prefix = &full[..len];
        let msg = assert_format_err(
            read_weights_h5_bytes(prefix, "prefix"),
            &format!("prefix {len}"),
        );
        assert!(msg.contains("prefix"), "error names the file: {msg}");
        // Same prefix, but with the superblock's end-of-file address patched to match, so that
        // the reader goes past the superblock and meets the truncation deeper in.
        if len >= EOF_FIELD + 8 {
            let mut patched = prefix.to_vec();
            patched[EOF_FIELD..EOF_FIELD + 8].copy_from_slice(&(len as u64).to_le_bytes());
            // A prefix may hold every structure and dataset Keras needs only if it ends after the
            // last dataset; the full file is the only one known to be complete.
            let _ = read_weights_h5_bytes(&patched, "patched prefix");
            if len < full.len() / 2 {
                assert!(
                    read_weights_h5_bytes(&patched, "patched prefix").is_err(),
                    "patched prefix {len}"
                );
            }
        }
    }
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "truncation sweep too slow"
    );
}

#[test]
fn random_byte_flips_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for case in ["seed_stack2", "no_bias", "seq_labeling"] {
        let full = fixture(case, "model.weights.h5");
        let keras = fixture(case, "model.keras");
        for i in 0..1500 {
            let mut h5 = full.clone();
            // Mostly flip in the structural part at the front, sometimes anywhere.
            let span = if i % 3 == 0 {
                h5.len()
            } else {
                h5.len().min(4096)
            };
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(span);
                h5[at] ^= 1 << rng.below(8);
            }
            let _ = read_weights_h5_bytes(&h5, "flipped");
            let mut k = keras.clone();
            let at = rng.below(k.len());
            k[at] = rng.next() as u8;
            let _ = read_keras_bytes(&k, "flipped.keras");
        }
    }
}

#[test]
fn random_bytes_in_every_field_never_panic() {
    // Overwrite single bytes of the header region with every kind of value (0, 0xFF, random).
    let full = fixture("seed_stack2", "model.weights.h5");
    let mut rng = Rng(42);
    for at in 0..full.len().min(2048) {
        for v in [0u8, 0xFF, rng.next() as u8] {
            let mut h5 = full.clone();
            h5[at] = v;
            let _ = read_weights_h5_bytes(&h5, "poked");
        }
    }
}

#[test]
fn garbage_and_empty_inputs_are_errors() {
    let mut rng = Rng(7);
    let garbage: Vec<u8> = (0..10_000).map(|_| rng.next() as u8).collect();
    assert_format_err(read_weights_h5_bytes(&garbage, "garbage"), "garbage h5");
    assert_format_err(read_keras_bytes(&garbage, "garbage"), "garbage keras");
    assert_format_err(read_weights_h5_bytes(&[], "empty"), "empty h5");
    assert_format_err(read_keras_bytes(&[], "empty"), "empty keras");
    // HDF5 signature followed by garbage.
    let mut sig = b"\x89HDF\r\n\x1a\n".to_vec();
    sig.extend_from_slice(&garbage);
    assert_format_err(read_weights_h5_bytes(&sig, "sig+garbage"), "sig + garbage");
    // A .keras file is not an HDF5 file and vice versa.
    let keras = fixture("seed_lstm1", "model.keras");
    assert_format_err(read_weights_h5_bytes(&keras, "zip as h5"), "zip as h5");
    let h5 = fixture("seed_lstm1", "model.weights.h5");
    assert_format_err(read_keras_bytes(&h5, "h5 as zip"), "h5 as zip");
    let err = read_keras_file_err(std::path::Path::new("/nonexistent/model.keras"));
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
}

fn read_keras_file_err(p: &std::path::Path) -> Error {
    match stacklstm::io::keras::read_keras_file(p) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn zip_without_config_is_an_error() {
    let h5 = fixture("seed_lstm1", "model.weights.h5");
    let z = zip_of(
        &[
            ("metadata.json", b"{\"keras_version\": \"3.15.1\"}"),
            ("model.weights.h5", &h5),
        ],
        CompressionMethod::Stored,
    );
    let msg = assert_format_err(read_keras_bytes(&z, "noconfig.keras"), "no config.json");
    assert!(msg.contains("config.json"), "{msg}");
    let z = zip_of(&[("config.json", b"{}")], CompressionMethod::Stored);
    let msg = assert_format_err(read_keras_bytes(&z, "noweights.keras"), "no weights");
    assert!(msg.contains("model.weights.h5"), "{msg}");
}

#[test]
fn deflated_keras_file_reads() {
    // Keras stores entries uncompressed; a re-zipped (deflated) file must read the same.
    let dir = fixtures_dir().join("seed_stack2");
    let (model, weights) =
        stacklstm::io::keras::read_keras_file(&dir.join("model.keras")).expect("stored");
    let config = std::process::Command::new("unzip")
        .arg("-p")
        .arg(dir.join("model.keras"))
        .arg("config.json")
        .output();
    let config = match config {
        Ok(o) if o.status.success() => o.stdout,
        _ => return, // no unzip tool: skip
    };
    let h5 = fixture("seed_stack2", "model.weights.h5");
    let z = zip_of(
        &[("config.json", &config), ("model.weights.h5", &h5)],
        CompressionMethod::Deflated,
    );
    let (m2, w2) = read_keras_bytes(&z, "deflated.keras").expect("deflated");
    assert_eq!(model.layers, m2.layers);
    assert_eq!(weights, w2);
}

fn unsupported_config() -> String {
    r#"{"module": "keras", "class_name": "Sequential", "config": {"name": "bad", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [null, 5, 2], "name": "input_layer"}},
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 4, "return_sequences": true, "go_backwards": true, "activation": "swish"}},
        {"class_name": "GRU", "config": {"name": "gru", "units": 4}},
        {"class_name": "Bidirectional", "config": {"name": "bidi", "layer": {"class_name": "SimpleRNN", "config": {"name": "rnn", "units": 2}}}},
        {"class_name": "LSTM", "config": {"name": "lstm_1", "units": 3, "time_major": true, "kernel_regularizer": {"class_name": "L2"}}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 1, "activation": "softmax"}}
    ]}}"#
    .to_string()
}

#[test]
fn unsupported_config_lists_everything() {
    let err =
        parse_keras_config(&unsupported_config(), "bad/config.json").expect_err("unsupported");
    let msg = err.to_string();
    assert!(matches!(err, Error::UnsupportedFormat { .. }), "{err:?}");
    for needle in [
        "go_backwards",
        "swish",
        "GRU",
        "Bidirectional",
        "SimpleRNN",
        "time_major",
        "kernel_regularizer",
        "bad/config.json",
    ] {
        assert!(msg.contains(needle), "error does not list {needle}: {msg}");
    }
    if let Error::UnsupportedFormat { found, .. } = &err {
        assert!(
            !found.contains("softmax"),
            "softmax is fine for Dense: {found}"
        );
    }
    // The same through a .keras file.
    let h5 = fixture("seed_lstm1", "model.weights.h5");
    let z = zip_of(
        &[
            ("config.json", unsupported_config().as_bytes()),
            ("model.weights.h5", &h5),
        ],
        CompressionMethod::Stored,
    );
    let err = read_keras_bytes(&z, "bad.keras").expect_err("unsupported");
    assert!(err.to_string().contains("GRU"), "{err}");

    // Non-Sequential models and unknown activations.
    let functional = r#"{"class_name": "Functional", "config": {"name": "f", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [null, 3, 1], "name": "in"}},
        {"class_name": "SimpleRNN", "config": {"name": "rnn", "units": 2}}]}}"#;
    let msg = parse_keras_config(functional, "f.json")
        .expect_err("functional")
        .to_string();
    assert!(
        msg.contains("Functional") && msg.contains("SimpleRNN"),
        "{msg}"
    );
    let act = r#"{"class_name": "Sequential", "config": {"name": "a", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [null, 3, 1], "name": "in"}},
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 2, "recurrent_activation": "softmax"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 2, "activation": "gelu"}}]}}"#;
    let msg = parse_keras_config(act, "a.json")
        .expect_err("activation")
        .to_string();
    assert!(msg.contains("softmax") && msg.contains("gelu"), "{msg}");
}

#[test]
fn malformed_configs_are_format_errors() {
    for (what, json) in [
        ("not json", "{".to_string()),
        ("not an object", "[]".to_string()),
        (
            "no layers",
            r#"{"class_name": "Sequential", "config": {"name": "x"}}"#.to_string(),
        ),
        (
            "deep nesting",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
        ),
        (
            "units missing and wrong types",
            r#"{"class_name": "Sequential", "config": {"name": "x", "layers": [
               {"class_name": "InputLayer", "config": {"batch_shape": [null, 3, 1]}},
               {"class_name": "LSTM", "config": {"name": "lstm", "return_sequences": "yes"}},
               {"class_name": "Dense", "config": {"name": "dense", "units": -1}}]}}"#
                .to_string(),
        ),
        (
            "bad shape",
            r#"{"class_name": "Sequential", "config": {"name": "x", "layers": [
               {"class_name": "InputLayer", "config": {"batch_shape": [null, "a", 1]}},
               {"class_name": "LSTM", "config": {"name": "lstm", "units": 2}}]}}"#
                .to_string(),
        ),
    ] {
        assert_format_err(parse_keras_config(&json, "c.json"), what);
    }
    // Input shape taken from the first layer when there is no InputLayer (Keras 2 style).
    let first = r#"{"class_name": "Sequential", "config": {"name": "x", "layers": [
        {"class_name": "LSTM", "config": {"name": "lstm", "units": 2, "batch_input_shape": [null, null, 3]}}]}}"#;
    let m = parse_keras_config(first, "c.json").expect("first-layer shape");
    assert_eq!(m.input_shape, (None, 3));
}

#[test]
fn weights_not_matching_the_config_are_an_error() {
    let dir = fixtures_dir().join("seed_stack2");
    let config = std::process::Command::new("unzip")
        .arg("-p")
        .arg(dir.join("model.keras"))
        .arg("config.json")
        .output();
    let config = match config {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).expect("utf8"),
        _ => return,
    };
    let changed = config.replacen("\"units\": 4", "\"units\": 5", 1);
    assert_ne!(changed, config);
    let h5 = fixture("seed_stack2", "model.weights.h5");
    let z = zip_of(
        &[
            ("config.json", changed.as_bytes()),
            ("model.weights.h5", &h5),
        ],
        CompressionMethod::Stored,
    );
    let msg = assert_format_err(read_keras_bytes(&z, "mismatch.keras"), "mismatch");
    assert!(msg.contains("lstm"), "{msg}");
}

/// Patches the declared uncompressed size of the first entry named `name` in a zip, in both the
/// local header and the central directory.
fn patch_size(z: &mut [u8], name: &str, size: u32) {
    let mut patched = 0;
    for i in 0..z.len().saturating_sub(46) {
        if z[i..i + 4] == *b"PK\x03\x04" {
            let n = u16::from_le_bytes([z[i + 26], z[i + 27]]) as usize;
            if z.get(i + 30..i + 30 + n) == Some(name.as_bytes()) {
                z[i + 22..i + 26].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        }
        if z[i..i + 4] == *b"PK\x01\x02" {
            let n = u16::from_le_bytes([z[i + 28], z[i + 29]]) as usize;
            if z.get(i + 46..i + 46 + n) == Some(name.as_bytes()) {
                z[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        }
    }
    assert_eq!(patched, 2, "patched local and central headers");
}

#[test]
fn zip_entries_claiming_huge_sizes_are_refused() {
    let zeros = vec![0u8; 100_000];
    let start = Instant::now();
    // Over the absolute limit (about 4 GiB declared).
    let mut z = zip_of(
        &[("config.json", b"{}"), ("model.weights.h5", &zeros)],
        CompressionMethod::Deflated,
    );
    patch_size(&mut z, "model.weights.h5", 0xFFFF_FFF0);
    let msg = assert_format_err(read_keras_bytes(&z, "huge.keras"), "huge size");
    assert!(msg.contains("model.weights.h5"), "{msg}");
    // Under the absolute limit but an absurd expansion ratio (1.5 GiB from a few hundred bytes).
    let mut z = zip_of(
        &[("config.json", b"{}"), ("model.weights.h5", &zeros)],
        CompressionMethod::Deflated,
    );
    patch_size(&mut z, "model.weights.h5", 0x6000_0000);
    let msg = assert_format_err(read_keras_bytes(&z, "bomb.keras"), "ratio");
    assert!(msg.contains("bomb") || msg.contains("exceeds"), "{msg}");
    // A config.json claiming more than its limit.
    let mut z = zip_of(
        &[("config.json", &zeros), ("model.weights.h5", b"x")],
        CompressionMethod::Stored,
    );
    patch_size(&mut z, "config.json", 100 << 20);
    assert_format_err(read_keras_bytes(&z, "bigconfig.keras"), "big config");
    // Declaring less than the entry really holds: read stops at the declared size.
    let mut z = zip_of(
        &[("config.json", b"{}"), ("model.weights.h5", &zeros)],
        CompressionMethod::Deflated,
    );
    patch_size(&mut z, "model.weights.h5", 10);
    assert_format_err(read_keras_bytes(&z, "short.keras"), "understated size");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "zip checks too slow"
    );
}
