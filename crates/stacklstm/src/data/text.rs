//! Vocabularies for character- and word-level language models. Their id streams feed
//! stateful truncated backpropagation through time in batches from [`TbpttBatches`] (part of
//! the engine, in [`crate::train`]; re-exported here).
//!
//! # Character vocabularies
//!
//! [`Vocab::chars`] takes every distinct character (Unicode scalar value) of the text, sorted by
//! code point; ids follow that order (for Tiny Shakespeare: `'\n'` = 0, `' '` = 1, ...). There is
//! **no unknown id**: encoding a character that is not in the vocabulary is an error naming the
//! character, its code point, its 0-based character offset and its line and column. (A character
//! model's output layer has exactly one class per character; a silent stand-in would hide data
//! problems such as a validation file with a different encoding.)
//!
//! # Word vocabularies (PTB convention)
//!
//! [`Vocab::words`] splits each line on whitespace and turns every newline (`'\n'`) into the
//! token `<eos>`, as in Zaremba et al.'s reader (`text.replace("\n", "<eos>").split()`): a last
//! line without a trailing newline gets no `<eos>`. Ids are ordered by decreasing frequency, ties
//! by token text (the order of TensorFlow's PTB reader). `<unk>` and `<eos>` are always in a word
//! vocabulary (appended if the text has none), and every out-of-vocabulary word encodes to
//! `<unk>`. The PTB training file already contains `<unk>`; its vocabulary has
//! **10,000** entries: 9,999 distinct words including `<unk>`, plus `<eos>`.
//!
//! # Limits
//!
//! A vocabulary may hold at most [`MAX_VOCAB`] (10 million) entries; building or loading a larger
//! one is an error.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

pub use crate::train::TbpttBatches;

/// The largest vocabulary accepted (10 million entries).
pub const MAX_VOCAB: usize = 10_000_000;
/// The unknown-word token of word vocabularies.
pub const UNK: &str = "<unk>";
/// The end-of-line token of word vocabularies.
pub const EOS: &str = "<eos>";

/// Character- or word-level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VocabKind {
    /// One token per Unicode character.
    Char,
    /// Whitespace-separated words, `<eos>` for newlines, `<unk>` for unknown words.
    Word,
}

/// The saved form of a [`Vocab`]: its kind and its tokens in id order.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct VocabData {
    kind: VocabKind,
    tokens: Vec<String>,
}

/// A token ↔ id mapping. Serialises as `{"kind": "char"|"word", "tokens": [...]}` (tokens in id
/// order); loading checks it as [`Vocab::from_tokens`] does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "VocabData", into = "VocabData")]
pub struct Vocab {
    kind: VocabKind,
    tokens: Vec<String>,
    words: HashMap<String, u32>,
    chars: HashMap<char, u32>,
}

impl TryFrom<VocabData> for Vocab {
    type Error = Error;
    fn try_from(d: VocabData) -> Result<Self> {
        Vocab::from_tokens(d.kind, d.tokens)
    }
}

impl From<Vocab> for VocabData {
    fn from(v: Vocab) -> Self {
        VocabData {
            kind: v.kind,
            tokens: v.tokens,
        }
    }
}

fn too_big(n: usize) -> Error {
    Error::input(format!(
        "vocabulary of {n} entries exceeds the limit of {MAX_VOCAB}"
    ))
}

impl Vocab {
    /// A vocabulary from explicit tokens, in id order. Checks: at most [`MAX_VOCAB`] entries, no
    /// duplicates, no empty token; for `Char` every token is exactly one character; for `Word`
    /// no token contains whitespace, and `<unk>` must be present.
    pub fn from_tokens(kind: VocabKind, tokens: Vec<String>) -> Result<Self> {
        if tokens.len() > MAX_VOCAB {
            return Err(too_big(tokens.len()));
        }
        let mut words = HashMap::new();
        let mut chars = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            let id = u32::try_from(i).map_err(|_| too_big(tokens.len()))?;
            match kind {
                VocabKind::Char => {
                    let mut it = t.chars();
                    let (Some(c), None) = (it.next(), it.next()) else {
                        return Err(Error::input(format!(
                            "character vocabulary entry {i} ({t:?}) is not a single character"
                        )));
                    };
                    if chars.insert(c, id).is_some() {
                        return Err(Error::input(format!(
                            "duplicate vocabulary entry {t:?} (id {i})"
                        )));
                    }
                }
                VocabKind::Word => {
                    if t.is_empty() || t.chars().any(char::is_whitespace) {
                        return Err(Error::input(format!(
                            "word vocabulary entry {i} ({t:?}) is empty or contains whitespace"
                        )));
                    }
                    if words.insert(t.clone(), id).is_some() {
                        return Err(Error::input(format!(
                            "duplicate vocabulary entry {t:?} (id {i})"
                        )));
                    }
                }
            }
        }
        if kind == VocabKind::Word && !words.contains_key(UNK) {
            return Err(Error::input(format!(
                "a word vocabulary must contain {UNK}"
            )));
        }
        Ok(Vocab {
            kind,
            tokens,
            words,
            chars,
        })
    }

    /// The character vocabulary of `text`: its distinct characters sorted by code point.
    pub fn chars(text: &str) -> Result<Self> {
        let set: BTreeSet<char> = text.chars().collect();
        if set.len() > MAX_VOCAB {
            return Err(too_big(set.len()));
        }
        Vocab::from_tokens(VocabKind::Char, set.into_iter().map(String::from).collect())
    }

    /// The word vocabulary of `text` (PTB convention, see the module docs).
    pub fn words(text: &str) -> Result<Self> {
        let mut counts: HashMap<&str, u64> = HashMap::new();
        let mut eos = 0u64;
        for (i, line) in text.split('\n').enumerate() {
            if i > 0 {
                eos += 1;
            }
            for w in line.split_whitespace() {
                *counts.entry(w).or_insert(0) += 1;
                if counts.len() > MAX_VOCAB {
                    return Err(too_big(counts.len()));
                }
            }
        }
        *counts.entry(EOS).or_insert(0) += eos;
        counts.entry(UNK).or_insert(0);
        if counts.len() > MAX_VOCAB {
            return Err(too_big(counts.len()));
        }
        let mut list: Vec<(&str, u64)> = counts.into_iter().collect();
        list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        Vocab::from_tokens(
            VocabKind::Word,
            list.into_iter().map(|(w, _)| w.to_string()).collect(),
        )
    }

    /// Character- or word-level.
    pub fn kind(&self) -> VocabKind {
        self.kind
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the vocabulary has no entries (possible only for a character vocabulary of
    /// empty text).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens in id order.
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// The id of a token (for a character vocabulary, a one-character string).
    pub fn id(&self, token: &str) -> Option<u32> {
        match self.kind {
            VocabKind::Word => self.words.get(token).copied(),
            VocabKind::Char => {
                let mut it = token.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => self.chars.get(&c).copied(),
                    _ => None,
                }
            }
        }
    }

    /// The token of an id.
    pub fn token(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of `<unk>` (word vocabularies only).
    pub fn unk_id(&self) -> Option<u32> {
        self.words.get(UNK).copied()
    }

    /// The id of `<eos>` (word vocabularies only).
    pub fn eos_id(&self) -> Option<u32> {
        self.words.get(EOS).copied()
    }

    /// Encodes text. Word vocabularies map unknown words to `<unk>` and newlines to `<eos>`;
    /// character vocabularies fail on an unknown character (see the module docs).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self.kind {
            VocabKind::Char => {
                let mut out = Vec::with_capacity(text.len());
                let (mut line, mut col) = (1usize, 1usize);
                for (pos, c) in text.chars().enumerate() {
                    match self.chars.get(&c) {
                        Some(&id) => out.push(id),
                        None => {
                            return Err(Error::input(format!(
                                "character {c:?} (U+{:04X}) at character offset {pos} (line {line}, column {col}) is not in the vocabulary",
                                c as u32
                            )))
                        }
                    }
                    if c == '\n' {
                        line += 1;
                        col = 1;
                    } else {
                        col += 1;
                    }
                }
                Ok(out)
            }
            VocabKind::Word => {
                let unk = self
                    .unk_id()
                    .ok_or_else(|| Error::input(format!("vocabulary without {UNK}")))?;
                let eos = self.eos_id();
                let mut out = Vec::new();
                for (i, line) in text.split('\n').enumerate() {
                    if i > 0 {
                        out.push(eos.unwrap_or(unk));
                    }
                    for w in line.split_whitespace() {
                        out.push(self.words.get(w).copied().unwrap_or(unk));
                    }
                }
                Ok(out)
            }
        }
    }

    /// Decodes ids. Characters are concatenated; words are joined by single spaces, with
    /// `<eos>` written as a newline. An id outside the vocabulary is an error naming it and its
    /// position.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = String::new();
        let mut line_start = true;
        for (pos, &id) in ids.iter().enumerate() {
            let tok = self.token(id).ok_or_else(|| {
                Error::input(format!(
                    "id {id} at position {pos} is outside the vocabulary of {} entries",
                    self.len()
                ))
            })?;
            match self.kind {
                VocabKind::Char => out.push_str(tok),
                VocabKind::Word => {
                    if tok == EOS {
                        out.push('\n');
                        line_start = true;
                    } else {
                        if !line_start {
                            out.push(' ');
                        }
                        out.push_str(tok);
                        line_start = false;
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn char_vocab_sorted_and_round_trip() {
        let v = Vocab::chars("hello, world\n").unwrap();
        assert_eq!(v.kind(), VocabKind::Char);
        assert_eq!(v.tokens().concat(), "\n ,dehlorw");
        assert_eq!(v.id("\n"), Some(0));
        assert_eq!(v.id("ab"), None);
        let ids = v.encode("hello\nworld").unwrap();
        assert_eq!(v.decode(&ids).unwrap(), "hello\nworld");
        assert_eq!(v.unk_id(), None);
    }

    #[test]
    fn char_unknown_is_error_with_position() {
        let v = Vocab::chars("abc\n").unwrap();
        let e = v.encode("ab\ncaé").unwrap_err().to_string();
        assert!(
            e.contains("'é'") && e.contains("U+00E9") && e.contains("offset 5"),
            "{e}"
        );
        assert!(e.contains("line 2, column 3"), "{e}");
    }

    #[test]
    fn word_vocab_ptb_convention() {
        let text = "the cat <unk>\nthe dog\n";
        let v = Vocab::words(text).unwrap();
        // counts: the 2, <eos> 2, <unk> 1, cat 1, dog 1
        assert_eq!(v.tokens(), &["<eos>", "the", "<unk>", "cat", "dog"]);
        let ids = v.encode("the bird\nsat").unwrap();
        let unk = v.unk_id().unwrap();
        assert_eq!(ids, vec![1, unk, v.eos_id().unwrap(), unk]);
        assert_eq!(v.decode(&ids).unwrap(), "the <unk>\n<unk>");
        let ids = v.encode(text).unwrap();
        assert_eq!(v.decode(&ids).unwrap(), text);
        // <unk> and <eos> are added when missing
        let v = Vocab::words("a b a").unwrap();
        assert_eq!(v.tokens(), &["a", "b", "<eos>", "<unk>"]);
        assert_eq!(v.encode("a b a").unwrap(), vec![0, 1, 0]);
    }

    #[test]
    fn decode_bad_id_and_from_tokens_checks() {
        let v = Vocab::chars("ab").unwrap();
        let e = v.decode(&[0, 1, 7]).unwrap_err().to_string();
        assert!(e.contains("id 7 at position 2"), "{e}");
        assert!(Vocab::from_tokens(VocabKind::Char, vec!["ab".into()]).is_err());
        assert!(Vocab::from_tokens(VocabKind::Char, vec!["a".into(), "a".into()]).is_err());
        assert!(Vocab::from_tokens(VocabKind::Word, vec!["a b".into(), UNK.into()]).is_err());
        assert!(Vocab::from_tokens(VocabKind::Word, vec!["a".into()]).is_err());
        assert!(Vocab::from_tokens(VocabKind::Word, vec![String::new(), UNK.into()]).is_err());
        let e =
            Vocab::from_tokens(VocabKind::Word, vec![String::new(); MAX_VOCAB + 1]).unwrap_err();
        assert!(e.to_string().contains("exceeds the limit"), "{e}");
        assert!(Vocab::chars("").unwrap().is_empty());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        for v in [
            Vocab::chars("The quick brown fox\n").unwrap(),
            Vocab::words("a b c\nb c\n").unwrap(),
        ] {
            let j = serde_json::to_string(&v).unwrap();
            let back: Vocab = serde_json::from_str(&j).unwrap();
            assert_eq!(back, v);
            assert_eq!(back.encode("b c").unwrap(), v.encode("b c").unwrap());
        }
        assert!(serde_json::from_str::<Vocab>(r#"{"kind":"char","tokens":["a","a"]}"#).is_err());
        assert!(serde_json::from_str::<Vocab>(r#"{"kind":"word","tokens":["a"]}"#).is_err());
    }

    proptest! {
        #[test]
        fn word_round_trip(words in proptest::collection::vec("[a-z]{1,5}", 0..30), breaks in proptest::collection::vec(any::<bool>(), 30)) {
            let mut text = String::new();
            for (i, w) in words.iter().enumerate() {
                text.push_str(w);
                text.push(if breaks[i] { '\n' } else { ' ' });
            }
            let v = Vocab::words(&text).unwrap();
            let ids = v.encode(&text).unwrap();
            prop_assert_eq!(v.encode(&v.decode(&ids).unwrap()).unwrap(), ids);
        }

        #[test]
        fn char_round_trip(text in "\\PC{0,60}") {
            let v = Vocab::chars(&text).unwrap();
            let ids = v.encode(&text).unwrap();
            prop_assert_eq!(v.decode(&ids).unwrap(), text);
        }
    }

    #[test]
    fn real_tinyshakespeare_65_chars() {
        let dir = crate::data::shared_dir().expect(
            "shared/ (data and fixtures) not found beside the repository; set STACKLSTM_SHARED",
        );
        let text = std::fs::read_to_string(dir.join("data/tinyshakespeare/input.txt")).unwrap();
        let v = Vocab::chars(&text).unwrap();
        assert_eq!(v.len(), 65);
        assert_eq!(v.id("\n"), Some(0));
        assert_eq!(v.id(" "), Some(1));
        assert_eq!(v.token(64), Some("z"));
        let ids = v.encode(&text).unwrap();
        assert_eq!(ids.len(), 1_115_394);
        assert_eq!(v.decode(&ids).unwrap(), text);
        let batches = TbpttBatches::new(&ids, 32, 100).unwrap();
        assert_eq!(batches.lane_len(), 1_115_394 / 32);
        assert_eq!(batches.num_batches(), (1_115_394 / 32 - 1) / 100);
    }

    #[test]
    fn real_ptb_10000_words() {
        let dir = crate::data::shared_dir().expect(
            "shared/ (data and fixtures) not found beside the repository; set STACKLSTM_SHARED",
        );
        let train = std::fs::read_to_string(dir.join("data/ptb/ptb.train.txt")).unwrap();
        let v = Vocab::words(&train).unwrap();
        assert_eq!(v.len(), 10_000);
        assert!(v.unk_id().is_some() && v.eos_id().is_some());
        // the most frequent token is "the", then <unk>, then <eos> (as in the TF PTB reader)
        assert_eq!(v.token(0), Some("the"));
        let ids = v.encode(&train).unwrap();
        // 887,521 words + 42,068 <eos> in the training file
        assert_eq!(ids.len(), 929_589);
        // the validation file has no word outside the training vocabulary
        let valid = std::fs::read_to_string(dir.join("data/ptb/ptb.valid.txt")).unwrap();
        let vids = v.encode(&valid).unwrap();
        assert_eq!(
            v.decode(&vids).unwrap().split_whitespace().count(),
            valid.split_whitespace().count()
        );
    }
}
