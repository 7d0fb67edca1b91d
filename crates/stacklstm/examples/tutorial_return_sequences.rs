//! The tutorial's second model: LSTM(1) with `return_sequences`, so it outputs its hidden
//! state at every timestep of [0.1, 0.2, 0.3]: shape [1, 3, 1]. This is what lets a further
//! LSTM layer be stacked on top.
//!
//! `cargo run --release -p stacklstm --example tutorial_return_sequences`

use ndarray::arr3;
use stacklstm::{Lstm, Sequential};

fn main() -> stacklstm::Result<()> {
    let model = Sequential::new()
        .input_shape(3, 1) // timesteps, features
        .add(Lstm::new(1).return_sequences(true))
        .seed(1)
        .build()?;
    println!("{}", model.summary());
    // One sample, [batch, timesteps, features] = [1, 3, 1].
    let x = arr3(&[[[0.1], [0.2], [0.3]]]);
    let y = model.predict(&x)?;
    println!("prediction shape {:?}", y.shape());
    println!("{y}");
    Ok(())
}
