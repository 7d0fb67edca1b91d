//! The Rust code blocks of the repository's README, run as doctests by
//! `cargo test --workspace`.
//!
//! They live in this unpublished crate rather than in `stacklstm` itself so that the
//! published library reads no file outside its own package.

#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
