//! HDF5 layouts Keras does not write by default (made by `tests/data/gen_h5_layouts.py` with
//! h5py): the reader must read the supported ones and reject the others with a clear error.

use std::path::PathBuf;

use stacklstm::io::keras::{read_weights_h5, read_weights_h5_bytes, Tensor};
use stacklstm::Error;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The values the generator writes: 0.25 * i - 1.
fn arange(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor {
        shape: shape.to_vec(),
        data: (0..n).map(|i| (i as f64 * 0.25 - 1.0) as f32).collect(),
    }
}

#[test]
fn superblock_v3_object_header_v2_links_compact_and_big_endian() {
    let w = read_weights_h5(&data("latest_v2.h5")).expect("latest_v2.h5");
    let lstm = w.get("lstm").expect("lstm");
    assert_eq!(lstm, &[arange(&[2, 8]), arange(&[2, 8]), arange(&[8])][..]);
    let dense = w.get("dense").expect("dense");
    assert_eq!(dense, &[arange(&[2, 1]), arange(&[1])][..]);
    // Truncations of this layout too.
    let bytes = std::fs::read(data("latest_v2.h5")).expect("read");
    for len in 0..bytes.len() {
        assert!(
            read_weights_h5_bytes(&bytes[..len], "prefix").is_err(),
            "prefix {len}"
        );
    }
    for at in 0..bytes.len() {
        let mut b = bytes.clone();
        b[at] ^= 0xFF;
        let _ = read_weights_h5_bytes(&b, "flipped");
    }
}

fn format_msg(name: &str) -> String {
    match read_weights_h5(&data(name)) {
        Err(e @ Error::Format { .. }) => e.to_string(),
        other => panic!("{name}: expected Error::Format, got {other:?}"),
    }
}

#[test]
fn unsupported_layouts_are_clear_errors() {
    let msg = format_msg("dense_links.h5");
    assert!(msg.contains("dense link storage"), "{msg}");
    let msg = format_msg("chunked.h5");
    assert!(msg.contains("filtered") || msg.contains("chunked"), "{msg}");
    let msg = format_msg("float64.h5");
    assert!(msg.contains("float32"), "{msg}");
}
