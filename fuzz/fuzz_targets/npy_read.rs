//! The `.npy` reader on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stacklstm::data::read_npy_bytes(data, "fuzz");
});
