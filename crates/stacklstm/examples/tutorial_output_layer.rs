//! The tutorial's first model: one LSTM(1) as the output layer, on the sample sequence
//! [0.1, 0.2, 0.3] (3 timesteps of 1 feature). It returns the last step only: shape [1, 1].
//!
//! `cargo run --release -p stacklstm --example tutorial_output_layer`

use ndarray::arr3;
use stacklstm::{Lstm, Sequential};

fn main() -> stacklstm::Result<()> {
    let model = Sequential::new()
        .input_shape(3, 1) // timesteps, features
        .add(Lstm::new(1))
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
