//! The tutorial's deeper stack: four hidden LSTM layers (every one but the last returns
//! sequences, so the next one gets a sequence) and a Dense(1) output. Shape of the
//! prediction: [1, 1].
//!
//! `cargo run --release -p stacklstm --example tutorial_four_hidden`

use ndarray::arr3;
use stacklstm::{Dense, Lstm, Sequential};

fn main() -> stacklstm::Result<()> {
    let model = Sequential::new()
        .input_shape(3, 1) // timesteps, features
        .add(Lstm::new(20).return_sequences(true))
        .add(Lstm::new(20).return_sequences(true))
        .add(Lstm::new(20).return_sequences(true))
        .add(Lstm::new(20))
        .add(Dense::new(1))
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
