//! The tutorial's second model: LSTM(1) with return_sequences, one output per timestep.
//! Output shape [1, 3, 1].
use ndarray::Array3;
use stacklstm::{Lstm, Sequential};

fn main() -> stacklstm::Result<()> {
    let model = Sequential::new()
        .input_shape(3, 1)
        .add(Lstm::new(1).return_sequences(true))
        .seed(1)
        .build()?;
    println!("{}", model.summary());
    let x =
        Array3::from_shape_vec((1, 3, 1), vec![0.1, 0.2, 0.3]).expect("3 values fill [1, 3, 1]");
    let y = model.predict(&x)?;
    println!("prediction, shape {:?}:\n{y}", y.shape());
    Ok(())
}
