//! Model configurations and preprocessing documents: architecture files (JSON, and TOML
//! through the same path), vocabularies and saved preprocessing, each then built.
#![no_main]
use libfuzzer_sys::fuzz_target;
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::Vocab;
use stacklstm::Arch;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(arch) = Arch::from_json(text, "fuzz.json") {
        // Building validates sizes before allocating: must never abort on memory.
        let _ = arch.spec.build();
    }
    if let Ok(v) = toml::from_str::<serde_json::Value>(text) {
        let _ = Arch::from_json(&v.to_string(), "fuzz.toml");
    }
    let _ = serde_json::from_str::<Vocab>(text);
    if let Ok(Preprocessing::Text { vocab, .. }) = serde_json::from_str::<Preprocessing>(text) {
        let _ = vocab.encode("the quick brown fox");
    }
    let _ = Vocab::chars(text);
    let _ = Vocab::words(text);
});
