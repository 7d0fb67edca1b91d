//! NumPy arrays in and out.
//!
//! Input is any numeric array-like: a float32 NumPy array is read in place (no copy, any
//! strides), anything else goes through `numpy.asarray(x).astype(float32)` once. Output is
//! a float32 array that takes over the engine's buffer (no copy).

use ndarray::{ArrayView3, ArrayViewD, Axis, Ix3};
use numpy::{
    IntoPyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn,
    PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use stacklstm::error::shape_str;

use crate::errors::value_error;

/// A float32 array read from Python: borrowed from a float32 NumPy array, or from the
/// float32 copy of anything else.
pub struct FloatArray<'py>(PyReadonlyArrayDyn<'py, f32>);

impl FloatArray<'_> {
    /// The values, `[d0, d1, ...]`.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        self.0.as_array()
    }
}

/// `numpy.asarray`, looked up once.
fn asarray(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static ASARRAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    ASARRAY.import(py, "numpy", "asarray")
}

/// `obj` as float32 (`what` names it in errors: `x`, `y`, a weight).
///
/// Raises `ValueError` for data that is not numeric (strings, objects, complex numbers) or
/// not rectangular.
pub fn float_array<'py>(obj: &Bound<'py, PyAny>, what: &str) -> PyResult<FloatArray<'py>> {
    if let Ok(a) = obj.cast::<PyArrayDyn<f32>>() {
        return readonly(a, what);
    }
    let a = asarray(obj.py())?
        .call1((obj,))
        .map_err(|e| value_error(format!("{what}: not an array of numbers: {e}")))?;
    let untyped = a.cast::<PyUntypedArray>()?;
    let dtype = untyped.dtype();
    // Booleans, signed and unsigned integers, floats; not complex, strings, objects, dates.
    if !matches!(dtype.kind(), b'b' | b'i' | b'u' | b'f') {
        return Err(value_error(format!(
            "{what}: expected numbers, got an array of dtype {}",
            dtype.str()?
        )));
    }
    let f = a.call_method1("astype", ("float32",))?;
    let f = f.cast_into::<PyArrayDyn<f32>>()?;
    readonly(&f, what)
}

fn readonly<'py>(a: &Bound<'py, PyArrayDyn<f32>>, what: &str) -> PyResult<FloatArray<'py>> {
    a.try_readonly()
        .map(FloatArray)
        .map_err(|e| value_error(format!("{what}: {e}")))
}

/// A batch `[batch, timesteps, features]` from a 3-D array, or from a 2-D `[batch,
/// timesteps]` array of token ids when the model reads them (Keras' input of an Embedding).
///
/// Raises `ValueError` for any other rank, naming the shape the model expects.
pub fn batch<'a>(
    a: ArrayViewD<'a, f32>,
    what: &str,
    expected: &str,
    token_ids: bool,
) -> PyResult<ArrayView3<'a, f32>> {
    let a = match a.ndim() {
        2 if token_ids => a.insert_axis(Axis(2)),
        _ => a,
    };
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix3>().map_err(|_| {
        value_error(format!(
            "{what}: expected a {}-D array {expected}, got a {}-D array of shape {}",
            if token_ids { 2 } else { 3 },
            shape.len(),
            shape_str(&shape)
        ))
    })
}

/// An engine result as a float32 NumPy array, without a copy.
pub fn to_numpy<'py>(py: Python<'py>, a: ndarray::ArrayD<f32>) -> Bound<'py, PyAny> {
    a.into_pyarray(py).into_any()
}
