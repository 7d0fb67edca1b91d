//! The `.keras` reader (zip, config.json, HDF5 weights) and the `.weights.h5` reader on
//! arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((model, weights)) = stacklstm::io::keras::read_keras_bytes(data, "fuzz") {
        let _ = stacklstm::io::keras::to_model(&model, &weights);
    }
    let _ = stacklstm::io::keras::read_weights_h5_bytes(data, "fuzz");
});
