//! # stacklstm
//!
//! Stacked LSTM networks with Keras semantics and native speed: several LSTM layers, each
//! earlier one returning its whole sequence, then a Dense head — Keras'
//! `Sequential([LSTM(50, return_sequences=True), LSTM(50), Dense(1)])`.
//!
//! Weights use the Keras layout (kernel `[D, 4H]`, recurrent kernel `[H, 4H]`, bias `[4H]`,
//! gate order i, f, c, o), so Keras weights load unchanged and outputs agree with Keras to
//! 1e-5. Shapes at the API are `[batch, timesteps, features]`. [`Gru`] layers (Keras' GRU in
//! both `reset_after` modes: kernel `[D, 3H]`, recurrent kernel `[H, 3H]`, gate order z, r, h)
//! stack the same way, and [`Bidirectional`] wraps either to read the sequence both ways
//! (Keras' `Bidirectional`, merge modes `concat`, `sum`, `mul`, `ave`).
//!
//! ```
//! use ndarray::Array3;
//! use stacklstm::{Dense, Lstm, Sequential};
//!
//! let model = Sequential::new()
//!     .input_shape(3, 1)                         // timesteps, features
//!     .add(Lstm::new(50).return_sequences(true))
//!     .add(Lstm::new(50))
//!     .add(Dense::new(1))
//!     .seed(42)
//!     .build()?;
//! println!("{}", model.summary());
//! let x = Array3::from_shape_vec((1, 3, 1), vec![0.1, 0.2, 0.3]).unwrap();
//! let y = model.predict(&x)?;
//! assert_eq!(y.shape(), &[1, 1]);
//! # Ok::<(), stacklstm::Error>(())
//! ```
//!
//! # Cargo features
//!
//! The engine (layers, model, training, optimizers, losses, the native safetensors format,
//! ONNX export and PyTorch import) is always built and depends on no file-format crates.
//! Application code sits behind features, all on by default; `default-features = false`
//! builds the engine alone.
//!
//! | Feature | Adds | Extra dependency |
//! |---------|------|------------------|
//! | `keras` | Keras 3 import: `.keras` archives and `.weights.h5` files (`io::keras`, and [`load_model`] on them) | `zip` |
//! | `plot`  | line charts as PNG and SVG (`plot`) | `png` |
//! | `toml`  | TOML architecture specs ([`Arch::from_path`] on a `.toml` file) | `toml` |
//! | `data`  | CSV, text vocabularies, `.npy`, windowing, scaling, preprocessing (`data`) | none |
//!
//! Without `keras`, [`load_model`] on a Keras file, and without `toml`, [`Arch::from_path`] on
//! a `.toml` file, return [`Error::UnsupportedFormat`] naming the missing feature.
//!
//! # Module dependencies
//!
//! Modules depend one way; nothing lower imports anything higher:
//!
//! ```text
//! kernels -> layers -> model -> optim / io -> train
//! ```
//!
//! `error` and `init` (seeded randomness) sit below all of them; `loss` sits beside `layers`
//! (it uses `kernels`, `model` uses it). `data` and `plot` are application code on top of the
//! engine, behind their features; no engine module imports them.
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "data")]
pub mod data;
pub mod error;
pub mod init;
pub mod io;
mod kernels;
pub mod layers;
pub mod loss;
pub mod model;
pub mod optim;
#[cfg(feature = "plot")]
pub mod plot;
pub mod train;

pub use error::{Error, Result};
pub use io::{load_model, Arch, LoadedModel, ModelFormat, TrainingState};
pub use kernels::activation::Activation;
pub use kernels::{set_threads, threads};
pub use layers::bidirectional::{Bidirectional, BidirectionalLayer, MergeMode};
pub use layers::dense::{Dense, DenseLayer};
pub use layers::dropout::{Dropout, DropoutLayer};
pub use layers::embedding::{Embedding, EmbeddingLayer};
pub use layers::gru::{Gru, GruLayer, GruOutput};
pub use layers::lstm::{Lstm, LstmLayer, LstmOutput};
pub use layers::masking::{Masking, MaskingLayer};
pub use layers::{Layer, LayerConfig, LayerSpec, OutShape, State, Weight};
pub use loss::Loss;
pub use model::{Model, Sequential, Workspace};
pub use optim::{Adagrad, Adam, AdamW, ParamMut, RmsProp, Schedule, Sgd};
pub use train::{EarlyStopping, Fit, History, Metric, Trainer};
