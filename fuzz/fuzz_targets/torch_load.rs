//! The PyTorch state_dict importer (safetensors container, inferred architecture).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = stacklstm::io::load_model_bytes(data, "fuzz", None);
});
