//! The native loader on arbitrary bytes: an error or a model, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = stacklstm::io::native::from_bytes(data, "fuzz") {
        let _ = f.model.summary();
    }
});
