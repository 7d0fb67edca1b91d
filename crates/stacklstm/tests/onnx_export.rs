//! ONNX export parity: every golden fixture (the stacked-LSTM ones and the GRU ones of
//! `fixtures-rnn`), and synthetic LSTM and GRU models covering the other activations, both GRU
//! `reset_after` modes and layers without bias, is exported, run in the real onnxruntime
//! (Python package, through `scripts/onnx_check.py`), and compared with the Keras output (or a
//! float64 reference of Keras' equations) to 1e-5, at the fixture's batch size, at batch 1 and
//! at twice the fixture's batch.
//!
//! Needs `STACKLSTM_ONNX_PYTHON`: the python of a venv made by `scripts/onnx-venv.sh`:
//!
//! ```text
//! export STACKLSTM_ONNX_PYTHON="$(scripts/onnx-venv.sh | tail -n1)"
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

use ndarray::{ArrayD, IxDyn};
use serde_json::Value;
use stacklstm::io::onnx::export_model;
use stacklstm::{Activation, Dense, Gru, Lstm, Sequential};

const TOL: f32 = 1e-5;

// ---------------------------------------------------------------------------------------------
// environment

fn python() -> PathBuf {
    match std::env::var_os("STACKLSTM_ONNX_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "STACKLSTM_ONNX_PYTHON is not set. The ONNX parity test runs the real onnxruntime; \
             create its venv and point the variable at its python:\n    \
             export STACKLSTM_ONNX_PYTHON=\"$(scripts/onnx-venv.sh | tail -n1)\"\n\
             (scripts/onnx-venv.sh installs pinned onnxruntime + numpy into target/onnx-venv, \
             or into $STACKLSTM_ONNX_VENV)"
        ),
    }
}

/// Looks for `rel` in the manifest directory and each directory above it.
fn find_up(rel: &str) -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join(rel))
        .find(|p| p.exists())
}

fn check_script() -> PathBuf {
    if let Some(p) = std::env::var_os("STACKLSTM_ONNX_CHECK_SCRIPT") {
        return PathBuf::from(p);
    }
    find_up("scripts/onnx_check.py").expect("scripts/onnx_check.py not found")
}

fn fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STACKLSTM_FIXTURES") {
        return PathBuf::from(p);
    }
    find_up("shared/fixtures")
        .expect("no shared/fixtures directory above the crate (set STACKLSTM_FIXTURES to its path)")
}

/// The GRU, Bidirectional and masking fixtures: `$STACKLSTM_FIXTURES_RNN`, else
/// `shared/fixtures-rnn` above the crate.
fn rnn_fixtures_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("STACKLSTM_FIXTURES_RNN") {
        return PathBuf::from(p);
    }
    find_up("shared/fixtures-rnn").expect(
        "no shared/fixtures-rnn directory above the crate (set STACKLSTM_FIXTURES_RNN to its path)",
    )
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("onnx_export/{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

// ---------------------------------------------------------------------------------------------
// .npy

/// A float32 array in row-major order.
#[derive(Debug, Clone, PartialEq)]
struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// The first `n` entries along axis 0.
    fn take_rows(&self, start: usize, n: usize) -> Tensor {
        let row: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = n;
        Tensor {
            shape,
            data: self.data[start * row..(start + n) * row].to_vec(),
        }
    }
}

impl Tensor {
    /// `self` and `other` stacked along axis 0.
    fn concat(&self, other: &Tensor) -> Tensor {
        assert_eq!(self.shape[1..], other.shape[1..]);
        let mut shape = self.shape.clone();
        shape[0] += other.shape[0];
        let mut data = self.data.clone();
        data.extend_from_slice(&other.data);
        Tensor { shape, data }
    }
}

fn write_npy(path: &Path, t: &Tensor) {
    let dims: Vec<String> = t.shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // magic(6) + version(2) + len(2) + header, padded with spaces to a multiple of 64, '\n' last.
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in &t.data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

fn read_npy(path: &Path) -> Tensor {
    let b = std::fs::read(path).unwrap();
    assert_eq!(
        &b[..6],
        b"\x93NUMPY",
        "{}: not an .npy file",
        path.display()
    );
    let (hlen, hstart) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        _ => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&b[hstart..hstart + hlen]).unwrap();
    assert!(header.contains("'<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let s = header.split("'shape': (").nth(1).unwrap();
    let s = &s[..s.find(')').unwrap()];
    let shape: Vec<usize> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| p.parse().unwrap())
        .collect();
    let data: Vec<f32> = b[hstart + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(
        data.len(),
        shape.iter().product::<usize>(),
        "{}",
        path.display()
    );
    Tensor { shape, data }
}

// ---------------------------------------------------------------------------------------------
// running onnxruntime

/// Writes `model`, runs it on each input, returns the outputs and the script's JSON report.
fn run_ort(dir: &Path, model: &[u8], inputs: &[Tensor]) -> (Vec<Tensor>, Value) {
    let model_path = dir.join("model.onnx");
    std::fs::write(&model_path, model).unwrap();
    let mut cmd = Command::new(python());
    cmd.arg(check_script()).arg(&model_path);
    let mut outs = Vec::new();
    for (i, x) in inputs.iter().enumerate() {
        let xp = dir.join(format!("x{i}.npy"));
        let yp = dir.join(format!("y{i}.npy"));
        let _ = std::fs::remove_file(&yp);
        write_npy(&xp, x);
        cmd.arg(&xp).arg(&yp);
        outs.push(yp);
    }
    cmd.arg("--checker");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", python()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "onnx_check.py failed on {}:\n{}\n{}",
        model_path.display(),
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap();
    if info["checker"] == "ok" {
        // Only when the optional `onnx` package is in the venv: our hand-written protobuf must
        // be byte-identical to what the reference serializer writes for the same message.
        assert_eq!(
            info["roundtrip"],
            "identical",
            "{}: {info}",
            model_path.display()
        );
    }
    (outs.iter().map(|p| read_npy(p)).collect(), info)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape, b.shape, "shape differs");
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| {
            if x.is_nan() || y.is_nan() {
                f32::INFINITY
            } else {
                (x - y).abs()
            }
        })
        .fold(0.0, f32::max)
}

/// Checks the ONNX-visible signature: `x [batch, T|timesteps, F]`, output `y`.
fn check_signature(info: &Value, t: Option<usize>, f: usize, out_rank: usize) {
    let inp = &info["input"];
    assert_eq!(inp["name"], "x", "{info}");
    let shape = inp["shape"].as_array().unwrap();
    assert_eq!(shape.len(), 3, "{info}");
    assert_eq!(shape[0], "batch", "{info}");
    match t {
        Some(t) => assert_eq!(shape[1].as_u64(), Some(t as u64), "{info}"),
        None => assert_eq!(shape[1], "timesteps", "{info}"),
    }
    assert_eq!(shape[2].as_u64(), Some(f as u64), "{info}");
    assert_eq!(info["output"]["name"], "y", "{info}");
    let oshape = info["output"]["shape"].as_array().unwrap();
    assert_eq!(oshape.len(), out_rank, "{info}");
    assert_eq!(oshape[0], "batch", "{info}");
}

// ---------------------------------------------------------------------------------------------
// models

/// One layer of a test model, Keras layout: what the float64 reference runs and what
/// [`export_onnx`] builds a model of.
#[derive(Debug, Clone, PartialEq)]
enum TestLayer {
    /// A Keras `LSTM` layer.
    Lstm {
        /// Width of the layer's input (features of each timestep).
        input_size: usize,
        /// Number of units `H`.
        units: usize,
        /// `[input_size, 4*units]` row-major, gate blocks `i, f, c, o`.
        kernel: Vec<f32>,
        /// `[units, 4*units]` row-major, gate blocks `i, f, c, o`.
        recurrent_kernel: Vec<f32>,
        /// `[4*units]`, or `None` for `use_bias=False`.
        bias: Option<Vec<f32>>,
        /// Output every `h_t` (`[B, T, H]`) instead of only the last (`[B, H]`).
        return_sequences: bool,
        /// Keras `activation` (φ): cell candidate and output squashing.
        activation: String,
        /// Keras `recurrent_activation` (σ): the gates.
        recurrent_activation: String,
    },
    /// A Keras `GRU` layer.
    Gru {
        /// Width of the layer's input.
        input_size: usize,
        /// Number of units `H`.
        units: usize,
        /// `[input_size, 3*units]` row-major, gate blocks `z, r, h`.
        kernel: Vec<f32>,
        /// `[units, 3*units]` row-major, gate blocks `z, r, h`.
        recurrent_kernel: Vec<f32>,
        /// `[2, 3*units]` (input row, recurrent row) with `reset_after`, else `[3*units]`;
        /// `None` for `use_bias=False`.
        bias: Option<Vec<f32>>,
        /// Apply the reset gate after the recurrent product (Keras 3's default).
        reset_after: bool,
        /// Output every `h_t` instead of only the last.
        return_sequences: bool,
        /// Keras `activation` (φ): the candidate.
        activation: String,
        /// Keras `recurrent_activation` (σ): the update and reset gates.
        recurrent_activation: String,
    },
    /// A Keras `Dense` layer, acting on the last axis.
    Dense {
        /// Input width.
        input_size: usize,
        /// Output width.
        units: usize,
        /// `[input_size, units]` row-major.
        kernel: Vec<f32>,
        /// `[units]`, or `None` for no bias.
        bias: Option<Vec<f32>>,
        /// Keras activation name.
        activation: String,
    },
}

fn array(shape: &[usize], data: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), data.to_vec()).unwrap()
}

fn activation(name: &str) -> Activation {
    Activation::from_name(name).unwrap()
}

/// Builds the model of `layers` (input `[batch, timesteps, features]`, weights set) and
/// exports it through [`export_model`], the one ONNX entry point.
fn export_onnx(
    layers: &[TestLayer],
    timesteps: Option<usize>,
    features: usize,
    name: &str,
) -> stacklstm::Result<Vec<u8>> {
    let mut spec = Sequential::new().name(name);
    spec.input_shape = Some((timesteps, features));
    let mut weights = Vec::new();
    for layer in layers {
        match layer {
            TestLayer::Lstm {
                input_size,
                units,
                kernel,
                recurrent_kernel,
                bias,
                return_sequences,
                activation: a,
                recurrent_activation: ra,
            } => {
                spec = spec.add(
                    Lstm::new(*units)
                        .return_sequences(*return_sequences)
                        .activation(activation(a))
                        .recurrent_activation(activation(ra))
                        .use_bias(bias.is_some()),
                );
                weights.push(array(&[*input_size, 4 * units], kernel));
                weights.push(array(&[*units, 4 * units], recurrent_kernel));
                if let Some(b) = bias {
                    weights.push(array(&[4 * units], b));
                }
            }
            TestLayer::Gru {
                input_size,
                units,
                kernel,
                recurrent_kernel,
                bias,
                reset_after,
                return_sequences,
                activation: a,
                recurrent_activation: ra,
            } => {
                spec = spec.add(
                    Gru::new(*units)
                        .return_sequences(*return_sequences)
                        .reset_after(*reset_after)
                        .activation(activation(a))
                        .recurrent_activation(activation(ra))
                        .use_bias(bias.is_some()),
                );
                weights.push(array(&[*input_size, 3 * units], kernel));
                weights.push(array(&[*units, 3 * units], recurrent_kernel));
                if let Some(b) = bias {
                    let shape = if *reset_after {
                        vec![2, 3 * units]
                    } else {
                        vec![3 * units]
                    };
                    weights.push(array(&shape, b));
                }
            }
            TestLayer::Dense {
                input_size,
                units,
                kernel,
                bias,
                activation: a,
            } => {
                spec = spec.add(
                    Dense::new(*units)
                        .activation(activation(a))
                        .use_bias(bias.is_some()),
                );
                weights.push(array(&[*input_size, *units], kernel));
                if let Some(b) = bias {
                    weights.push(array(&[*units], b));
                }
            }
        }
    }
    export_model(&spec.build_with_weights(&weights)?)
}

// ---------------------------------------------------------------------------------------------
// fixtures

fn tensor(v: &Value) -> Tensor {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect();
    Tensor { shape, data }
}

fn layers_from_case(case: &Value) -> (Vec<TestLayer>, Option<usize>, usize) {
    let model = &case["model"];
    let t = model["input_shape"][0].as_u64().map(|t| t as usize);
    let f = model["input_shape"][1].as_u64().unwrap() as usize;
    let mut width = f;
    let mut layers = Vec::new();
    for (spec, w) in model["layers"]
        .as_array()
        .unwrap()
        .iter()
        .zip(case["weights"].as_array().unwrap())
    {
        let units = spec["units"].as_u64().unwrap() as usize;
        let bias = w.get("bias").map(|b| tensor(b).data);
        match spec["type"].as_str().unwrap() {
            "lstm" => {
                assert_eq!(bias.is_some(), spec["use_bias"].as_bool().unwrap());
                layers.push(TestLayer::Lstm {
                    input_size: width,
                    units,
                    kernel: tensor(&w["kernel"]).data,
                    recurrent_kernel: tensor(&w["recurrent_kernel"]).data,
                    bias,
                    return_sequences: spec["return_sequences"].as_bool().unwrap(),
                    activation: spec["activation"].as_str().unwrap().into(),
                    recurrent_activation: spec["recurrent_activation"].as_str().unwrap().into(),
                })
            }
            "gru" => {
                assert_eq!(bias.is_some(), spec["use_bias"].as_bool().unwrap());
                layers.push(TestLayer::Gru {
                    input_size: width,
                    units,
                    kernel: tensor(&w["kernel"]).data,
                    recurrent_kernel: tensor(&w["recurrent_kernel"]).data,
                    bias,
                    reset_after: spec["reset_after"].as_bool().unwrap(),
                    return_sequences: spec["return_sequences"].as_bool().unwrap(),
                    activation: spec["activation"].as_str().unwrap().into(),
                    recurrent_activation: spec["recurrent_activation"].as_str().unwrap().into(),
                })
            }
            "dense" => layers.push(TestLayer::Dense {
                input_size: width,
                units,
                kernel: tensor(&w["kernel"]).data,
                bias,
                activation: spec["activation"].as_str().unwrap().into(),
            }),
            other => panic!("unknown layer type {other}"),
        }
        width = units;
    }
    (layers, t, f)
}

/// Every case folder of `root`, sorted; fails when there is none.
fn case_dirs_in(root: &Path) -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no fixture case found under {}",
        root.display()
    );
    cases
}

fn read_case(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("case.json")).unwrap()).unwrap()
}

/// Whether every layer of the case is one the export handles (LSTM, GRU, Dense).
fn exportable(case: &Value) -> bool {
    case["model"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| matches!(l["type"].as_str(), Some("lstm" | "gru" | "dense")))
}

/// Exports the case (with its fixed T, then a symbolic T), runs it in onnxruntime on the
/// fixture's batch, on batch 1 from its first and from its last sample, and on twice the
/// batch, and compares each output with Keras'. Returns a report line.
fn check_fixture(dir: &Path, tmp: &str) -> String {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let case = read_case(dir);
    let (layers, t, f) = layers_from_case(&case);
    let x = tensor(&case["input"]);
    let y = tensor(&case["output"]);
    let batch = x.shape[0];
    let out_rank = y.shape.len();
    let mut worst = 0.0f32;
    let mut checker = String::new();

    // Fixed T as in the fixture (if it has one), then symbolic T.
    let mut variants = vec![("fixed_t", t)];
    if t.is_some() {
        variants.push(("symbolic_t", None));
    }
    for (tag, tt) in variants {
        let model = export_onnx(&layers, tt, f, &name)
            .unwrap_or_else(|e| panic!("{name}: export failed: {e}"));
        let inputs = vec![
            x.clone(),
            x.take_rows(0, 1),
            x.take_rows(batch - 1, 1),
            x.concat(&x),
        ];
        let (outs, info) = run_ort(&tmp_dir(&format!("{tmp}/{name}/{tag}")), &model, &inputs);
        check_signature(&info, tt, f, out_rank);
        checker = info["checker"].as_str().unwrap_or("?").to_string();
        let wants = [
            y.clone(),
            y.take_rows(0, 1),
            y.take_rows(batch - 1, 1),
            y.concat(&y),
        ];
        for (k, (o, w)) in outs.iter().zip(&wants).enumerate() {
            let d = max_abs_diff(o, w);
            assert!(
                d <= TOL,
                "{name} ({tag}, input {k}, batch {}): max |onnxruntime - keras| = {d:e}",
                w.shape[0]
            );
            worst = worst.max(d);
        }
    }
    format!(
        "{name:24} batch {batch}, 1, {}: max abs err {worst:.3e} (onnx checker: {checker})",
        2 * batch
    )
}

#[test]
fn fixtures_match_onnxruntime() {
    let python = python(); // fail early, with the setup message, when unset
    let report: Vec<String> = case_dirs_in(&fixtures_dir())
        .iter()
        .map(|dir| check_fixture(dir, "lstm"))
        .collect();
    eprintln!("ONNX export parity ({}):", python.display());
    for r in &report {
        eprintln!("  {r}");
    }
}

/// The GRU fixtures (both `reset_after` modes, stacked, sequence and last-step outputs).
/// Cases with layers the export does not handle yet (Bidirectional, Masking) are listed,
/// and the three GRU cases must be among those checked.
#[test]
fn gru_fixtures_match_onnxruntime() {
    let python = python();
    let mut report = Vec::new();
    let mut skipped = Vec::new();
    let mut checked = Vec::new();
    for dir in case_dirs_in(&rnn_fixtures_dir()) {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !exportable(&read_case(&dir)) {
            skipped.push(name);
            continue;
        }
        report.push(check_fixture(&dir, "rnn"));
        checked.push(name);
    }
    for must in ["gru_basic", "gru_stack", "gru_reset_before"] {
        assert!(
            checked.iter().any(|c| c == must),
            "{must} was not checked (checked: {checked:?})"
        );
    }
    eprintln!("ONNX export parity, GRU fixtures ({}):", python.display());
    for r in &report {
        eprintln!("  {r}");
    }
    eprintln!("  not exportable yet: {}", skipped.join(", "));
}

// ---------------------------------------------------------------------------------------------
// synthetic models against a float64 reference of the Keras semantics

struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
        (v as f32) / ((1u64 << 24) as f32) - 0.5
    }
    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform() * scale).collect()
    }
}

fn act(name: &str, v: &mut [f64]) {
    match name {
        "tanh" => v.iter_mut().for_each(|x| *x = x.tanh()),
        "sigmoid" => v.iter_mut().for_each(|x| *x = 1.0 / (1.0 + (-*x).exp())),
        "relu" => v.iter_mut().for_each(|x| *x = x.max(0.0)),
        "linear" => {}
        "hard_sigmoid" => v
            .iter_mut()
            .for_each(|x| *x = (*x / 6.0 + 0.5).clamp(0.0, 1.0)),
        "softmax" => {
            let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            v.iter_mut().for_each(|x| *x = (*x - m).exp());
            let s: f64 = v.iter().sum();
            v.iter_mut().for_each(|x| *x /= s);
        }
        other => panic!("{other}"),
    }
}

/// Keras forward pass in float64. `x` is `[B, T, F]`; returns the output tensor.
fn reference(layers: &[TestLayer], x: &Tensor) -> Tensor {
    let (b, t) = (x.shape[0], x.shape[1]);
    // seq[b][t] = vector; `None` time axis after a non-sequence LSTM.
    let mut seq: Vec<Vec<Vec<f64>>> = (0..b)
        .map(|i| {
            (0..t)
                .map(|j| {
                    let f = x.shape[2];
                    x.data[(i * t + j) * f..(i * t + j + 1) * f]
                        .iter()
                        .map(|&v| v as f64)
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut has_time = true;
    for layer in layers {
        match layer {
            TestLayer::Lstm {
                input_size,
                units,
                kernel,
                recurrent_kernel,
                bias,
                return_sequences,
                activation,
                recurrent_activation,
            } => {
                let (n, h) = (*input_size, *units);
                for s in seq.iter_mut() {
                    let mut hs = vec![0.0f64; h];
                    let mut cs = vec![0.0f64; h];
                    let mut outs = Vec::new();
                    for xt in s.iter() {
                        let mut z: Vec<f64> = (0..4 * h)
                            .map(|c| bias.as_ref().map_or(0.0, |bb| bb[c] as f64))
                            .collect();
                        for (c, zc) in z.iter_mut().enumerate() {
                            for j in 0..n {
                                *zc += xt[j] * kernel[j * 4 * h + c] as f64;
                            }
                            for j in 0..h {
                                *zc += hs[j] * recurrent_kernel[j * 4 * h + c] as f64;
                            }
                        }
                        let (zi, rest) = z.split_at_mut(h);
                        let (zf, rest) = rest.split_at_mut(h);
                        let (zc, zo) = rest.split_at_mut(h);
                        act(recurrent_activation, zi);
                        act(recurrent_activation, zf);
                        act(recurrent_activation, zo);
                        act(activation, zc);
                        for u in 0..h {
                            cs[u] = zf[u] * cs[u] + zi[u] * zc[u];
                        }
                        let mut pc = cs.clone();
                        act(activation, &mut pc);
                        for u in 0..h {
                            hs[u] = zo[u] * pc[u];
                        }
                        outs.push(hs.clone());
                    }
                    *s = if *return_sequences { outs } else { vec![hs] };
                }
                has_time = *return_sequences;
            }
            TestLayer::Gru {
                input_size,
                units,
                kernel,
                recurrent_kernel,
                bias,
                reset_after,
                return_sequences,
                activation,
                recurrent_activation,
            } => {
                let (n, h) = (*input_size, *units);
                let g = 3 * h;
                // Input-side and recurrent-side biases (the latter only with reset_after).
                let bx = |c: usize| bias.as_ref().map_or(0.0, |b| b[c] as f64);
                let bh = |c: usize| match bias {
                    Some(b) if *reset_after => b[g + c] as f64,
                    _ => 0.0,
                };
                let rk = |j: usize, c: usize| recurrent_kernel[j * g + c] as f64;
                for s in seq.iter_mut() {
                    let mut hs = vec![0.0f64; h];
                    let mut outs = Vec::new();
                    for xt in s.iter() {
                        let xk: Vec<f64> = (0..g)
                            .map(|c| {
                                bx(c)
                                    + (0..n)
                                        .map(|j| xt[j] * kernel[j * g + c] as f64)
                                        .sum::<f64>()
                            })
                            .collect();
                        // h_p · R (+ b_h) for the z and r blocks, and for h with reset_after.
                        let hr = |c: usize, state: &[f64]| {
                            bh(c) + (0..h).map(|j| state[j] * rk(j, c)).sum::<f64>()
                        };
                        let mut z: Vec<f64> = (0..h).map(|u| xk[u] + hr(u, &hs)).collect();
                        let mut r: Vec<f64> = (0..h).map(|u| xk[h + u] + hr(h + u, &hs)).collect();
                        act(recurrent_activation, &mut z);
                        act(recurrent_activation, &mut r);
                        let mut cand: Vec<f64> = if *reset_after {
                            (0..h)
                                .map(|u| xk[2 * h + u] + r[u] * hr(2 * h + u, &hs))
                                .collect()
                        } else {
                            let rh: Vec<f64> = (0..h).map(|u| r[u] * hs[u]).collect();
                            (0..h).map(|u| xk[2 * h + u] + hr(2 * h + u, &rh)).collect()
                        };
                        act(activation, &mut cand);
                        for u in 0..h {
                            hs[u] = z[u] * hs[u] + (1.0 - z[u]) * cand[u];
                        }
                        outs.push(hs.clone());
                    }
                    *s = if *return_sequences { outs } else { vec![hs] };
                }
                has_time = *return_sequences;
            }
            TestLayer::Dense {
                input_size,
                units,
                kernel,
                bias,
                activation,
            } => {
                for s in seq.iter_mut() {
                    for v in s.iter_mut() {
                        let mut o: Vec<f64> = (0..*units)
                            .map(|c| bias.as_ref().map_or(0.0, |bb| bb[c] as f64))
                            .collect();
                        for (c, oc) in o.iter_mut().enumerate() {
                            for j in 0..*input_size {
                                *oc += v[j] * kernel[j * units + c] as f64;
                            }
                        }
                        act(activation, &mut o);
                        *v = o;
                    }
                }
            }
        }
    }
    let steps = seq[0].len();
    let width = seq[0][0].len();
    let data = seq.iter().flatten().flatten().map(|&v| v as f32).collect();
    let shape = if has_time {
        vec![b, steps, width]
    } else {
        vec![b, width]
    };
    Tensor { shape, data }
}

fn rand_lstm(
    r: &mut Rng,
    n: usize,
    h: usize,
    bias: bool,
    rs: bool,
    a: &str,
    ra: &str,
) -> TestLayer {
    TestLayer::Lstm {
        input_size: n,
        units: h,
        kernel: r.vec(n * 4 * h, 1.0),
        recurrent_kernel: r.vec(h * 4 * h, 1.0),
        bias: bias.then(|| r.vec(4 * h, 1.0)),
        return_sequences: rs,
        activation: a.into(),
        recurrent_activation: ra.into(),
    }
}

fn rand_dense(r: &mut Rng, n: usize, u: usize, bias: bool, a: &str) -> TestLayer {
    TestLayer::Dense {
        input_size: n,
        units: u,
        kernel: r.vec(n * u, 1.0),
        bias: bias.then(|| r.vec(u, 1.0)),
        activation: a.into(),
    }
}

#[allow(clippy::too_many_arguments)]
fn rand_gru(
    r: &mut Rng,
    n: usize,
    h: usize,
    bias: bool,
    reset_after: bool,
    rs: bool,
    a: &str,
    ra: &str,
) -> TestLayer {
    let bias_len = if reset_after { 6 * h } else { 3 * h };
    TestLayer::Gru {
        input_size: n,
        units: h,
        kernel: r.vec(n * 3 * h, 1.0),
        recurrent_kernel: r.vec(h * 3 * h, 1.0),
        bias: bias.then(|| r.vec(bias_len, 1.0)),
        reset_after,
        return_sequences: rs,
        activation: a.into(),
        recurrent_activation: ra.into(),
    }
}

/// Exports each model with a fixed T of 5 and a symbolic T, runs it in onnxruntime on a batch
/// of 4, on one of its samples and (symbolic T) on a batch of another length, and compares
/// with [`reference`]. Returns report lines.
fn check_synthetic(r: &mut Rng, f: usize, models: &[(&str, Vec<TestLayer>)]) -> Vec<String> {
    let mut report = Vec::new();
    for (name, layers) in models {
        let mut worst = 0.0f32;
        for (tag, t) in [("fixed_t", Some(5usize)), ("symbolic_t", None)] {
            let model = export_onnx(&layers[..], t, f, name).unwrap();
            let steps = t.unwrap_or(7);
            let x_big = Tensor {
                shape: vec![4, steps, f],
                data: r.vec(4 * steps * f, 4.0),
            };
            let mut inputs = vec![x_big.clone(), x_big.take_rows(2, 1)];
            if t.is_none() {
                // a different length through the same model
                inputs.push(Tensor {
                    shape: vec![2, 3, f],
                    data: r.vec(2 * 3 * f, 4.0),
                });
            }
            let (outs, info) = run_ort(
                &tmp_dir(&format!("synthetic/{name}/{tag}")),
                &model,
                &inputs,
            );
            let want_rank = reference(layers, &inputs[0]).shape.len();
            check_signature(&info, t, f, want_rank);
            for (k, (o, x)) in outs.iter().zip(&inputs).enumerate() {
                let want = reference(layers, x);
                let d = max_abs_diff(o, &want);
                assert!(
                    d <= TOL,
                    "{name} ({tag}, input {k}): max |onnxruntime - reference| = {d:e}"
                );
                worst = worst.max(d);
            }
        }
        report.push(format!("{name:32} max abs err {worst:.3e}"));
    }
    report
}

#[test]
fn synthetic_activations_match_reference() {
    let _ = python();
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let f = 3;
    let models: Vec<(&str, Vec<TestLayer>)> = vec![
        (
            "linear_act_hard_sigmoid_gates",
            vec![
                rand_lstm(&mut r, 3, 4, true, true, "linear", "hard_sigmoid"),
                rand_lstm(&mut r, 4, 3, false, false, "linear", "sigmoid"),
                rand_dense(&mut r, 3, 3, true, "softmax"),
            ],
        ),
        (
            "hard_sigmoid_act_linear_gates",
            vec![
                rand_lstm(&mut r, 3, 5, true, true, "hard_sigmoid", "linear"),
                rand_lstm(&mut r, 5, 2, true, true, "sigmoid", "tanh"),
                rand_dense(&mut r, 2, 2, false, "sigmoid"),
            ],
        ),
        (
            "dense_first_and_stacked_dense",
            vec![
                rand_dense(&mut r, 3, 4, true, "relu"),
                rand_lstm(&mut r, 4, 3, true, true, "relu", "hard_sigmoid"),
                rand_dense(&mut r, 3, 5, true, "tanh"),
                rand_lstm(&mut r, 5, 2, true, false, "tanh", "sigmoid"),
                rand_dense(&mut r, 2, 3, true, "hard_sigmoid"),
                rand_dense(&mut r, 3, 4, true, "softmax"),
            ],
        ),
        (
            "sequence_softmax",
            vec![
                rand_lstm(&mut r, 3, 4, true, true, "tanh", "sigmoid"),
                rand_dense(&mut r, 4, 3, true, "softmax"),
            ],
        ),
    ];
    let report = check_synthetic(&mut r, f, &models);
    eprintln!("ONNX export, synthetic models vs float64 reference:");
    for r in &report {
        eprintln!("  {r}");
    }
}

/// GRU layers: both `reset_after` modes (`linear_before_reset` 1 and 0), every activation
/// ONNX's `GRU` takes (the parameterised `linear` and `hard_sigmoid` in either slot), with and
/// without bias, stacked with LSTM and Dense layers, sequence and last-step outputs.
#[test]
fn synthetic_gru_models_match_reference() {
    let _ = python();
    let mut r = Rng(0x2545_f491_4f6c_dd1d);
    let f = 3;
    let models: Vec<(&str, Vec<TestLayer>)> = vec![
        (
            "gru_linear_act_hard_sigmoid_gates",
            vec![
                rand_gru(&mut r, 3, 4, true, true, true, "linear", "hard_sigmoid"),
                rand_gru(&mut r, 4, 3, false, false, false, "tanh", "sigmoid"),
                rand_dense(&mut r, 3, 3, true, "softmax"),
            ],
        ),
        (
            "gru_reset_before_hard_sigmoid_act",
            vec![
                rand_gru(&mut r, 3, 5, true, false, true, "hard_sigmoid", "linear"),
                rand_gru(&mut r, 5, 2, false, true, true, "relu", "sigmoid"),
                rand_dense(&mut r, 2, 2, false, "sigmoid"),
            ],
        ),
        (
            "gru_between_dense_and_lstm",
            vec![
                rand_dense(&mut r, 3, 4, true, "relu"),
                rand_gru(&mut r, 4, 3, true, true, true, "tanh", "hard_sigmoid"),
                rand_lstm(&mut r, 3, 2, true, true, "tanh", "sigmoid"),
                rand_gru(&mut r, 2, 3, true, false, false, "relu", "sigmoid"),
                rand_dense(&mut r, 3, 2, true, "linear"),
            ],
        ),
        (
            "gru_sequence_tanh_head",
            vec![
                rand_gru(&mut r, 3, 4, true, false, true, "tanh", "sigmoid"),
                rand_dense(&mut r, 4, 3, true, "tanh"),
            ],
        ),
    ];
    let report = check_synthetic(&mut r, f, &models);
    eprintln!("ONNX export, synthetic GRU models vs float64 reference:");
    for r in &report {
        eprintln!("  {r}");
    }
}

// ---------------------------------------------------------------------------------------------
// through the model files: `.keras` -> Model -> ONNX

/// Every fixture's `model.keras` (the stacked-LSTM ones and the exportable GRU ones) loaded,
/// exported, and run in onnxruntime on its `x.npy` and on twice that batch.
#[cfg(feature = "keras")]
#[test]
fn exported_keras_files_match_onnxruntime() {
    let _ = python();
    let mut cases = case_dirs_in(&fixtures_dir());
    cases.extend(
        case_dirs_in(&rnn_fixtures_dir())
            .into_iter()
            .filter(|d| exportable(&read_case(d))),
    );
    let mut worst = 0.0f32;
    let mut grus = 0;
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let loaded = stacklstm::load_model(dir.join("model.keras"), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        grus += loaded
            .model
            .layers()
            .iter()
            .filter(|l| l.kind() == "GRU")
            .count();
        let bytes = export_model(&loaded.model).unwrap_or_else(|e| panic!("{name}: export: {e}"));
        // The model read from the .keras file is exactly the case's: the same bytes.
        let (layers, t, f) = layers_from_case(&read_case(dir));
        assert_eq!(bytes, export_onnx(&layers, t, f, &name).unwrap(), "{name}");
        let x = read_npy(&dir.join("x.npy"));
        let y = read_npy(&dir.join("y.npy"));
        let (outs, _) = run_ort(
            &tmp_dir(&format!("model/{name}")),
            &bytes,
            &[x.clone(), x.concat(&x)],
        );
        for (o, w) in outs.iter().zip([y.clone(), y.concat(&y)]) {
            let d = max_abs_diff(o, &w);
            assert!(
                d <= TOL,
                "{name} (batch {}): max |onnxruntime - keras| = {d:e}",
                w.shape[0]
            );
            worst = worst.max(d);
        }
    }
    assert!(grus >= 5, "only {grus} GRU layers among the exported files");
    eprintln!(
        "ONNX export of {} .keras files: max abs err {worst:.3e}",
        cases.len()
    );
}

/// The Bidirectional fixtures (without masking, which ONNX cannot carry): their `.keras`
/// file exported and run in onnxruntime reproduces the Keras output, at the case's batch
/// size and at batch 1.
#[cfg(feature = "keras")]
#[test]
fn bidirectional_keras_files_match_onnxruntime() {
    let _ = python();
    let root = rnn_fixtures_dir();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let case = std::fs::read_to_string(p.join("case.json")).unwrap_or_default();
            case.contains("\"bidirectional\"") && !case.contains("\"masking\"")
        })
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 2,
        "no Bidirectional fixture under {}",
        root.display()
    );
    let mut report = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let loaded = stacklstm::load_model(dir.join("model.keras"), None)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let bytes = export_model(&loaded.model).unwrap_or_else(|e| panic!("{name}: export: {e}"));
        let x = read_npy(&dir.join("x.npy"));
        let y = read_npy(&dir.join("y.npy"));
        let batch = x.shape[0];
        let inputs = [x.clone(), x.take_rows(batch - 1, 1)];
        let (outs, info) = run_ort(&tmp_dir(&format!("bidirectional/{name}")), &bytes, &inputs);
        check_signature(&info, Some(x.shape[1]), x.shape[2], y.shape.len());
        let mut worst = 0.0f32;
        for (k, (o, w)) in outs
            .iter()
            .zip([y.clone(), y.take_rows(batch - 1, 1)])
            .enumerate()
        {
            let d = max_abs_diff(o, &w);
            assert!(
                d <= TOL,
                "{name} (input {k}): max |onnxruntime - keras| = {d:e}"
            );
            worst = worst.max(d);
        }
        report.push(format!("{name:24} max abs err {worst:.3e}"));
    }
    eprintln!("ONNX export, Bidirectional fixtures vs Keras:");
    for r in &report {
        eprintln!("  {r}");
    }
}

/// Bidirectional layers in every merge mode, with and without return_sequences, around
/// LSTMs and GRUs (both reset modes) with other activations and without bias, exported
/// and run in onnxruntime, against the engine's own prediction (which the parity tests
/// hold to Keras), at fixed and symbolic T. The activations cover the three shapes of the
/// operators' alpha/beta lists (only the gates', only the candidate's, both distinct);
/// gates stay bounded (a linear gate lets a GRU's state grow without bound, and then
/// float32 rounding dominates any comparison).
#[test]
fn synthetic_bidirectional_models_match_the_engine() {
    use stacklstm::{Bidirectional, Gru, LayerSpec, MergeMode};
    let _ = python();
    let a = activation;
    let lstm = |u: usize, rs: bool, act: &str, rec: &str, bias: bool| -> LayerSpec {
        Lstm::new(u)
            .return_sequences(rs)
            .activation(a(act))
            .recurrent_activation(a(rec))
            .use_bias(bias)
            .into()
    };
    let gru = |u: usize, rs: bool, act: &str, rec: &str, reset_after: bool| -> LayerSpec {
        Gru::new(u)
            .return_sequences(rs)
            .activation(a(act))
            .recurrent_activation(a(rec))
            .reset_after(reset_after)
            .into()
    };
    let bi = |inner: LayerSpec, mode: MergeMode| {
        LayerSpec::from(Bidirectional::new(inner).merge_mode(mode))
    };
    let mut models: Vec<(String, Vec<LayerSpec>)> = Vec::new();
    for mode in MergeMode::ALL {
        models.push((
            format!("lstm_{mode}_stack"),
            vec![
                bi(lstm(4, true, "tanh", "sigmoid", true), mode),
                bi(lstm(3, false, "relu", "hard_sigmoid", false), mode),
                Dense::new(2).into(),
            ],
        ));
        models.push((
            format!("gru_{mode}_stack"),
            vec![
                bi(gru(4, true, "linear", "sigmoid", true), mode),
                bi(gru(3, true, "linear", "hard_sigmoid", false), mode),
                bi(gru(2, false, "relu", "sigmoid", true), mode),
            ],
        ));
    }
    models.push((
        "mixed".into(),
        vec![
            lstm(3, true, "tanh", "sigmoid", true),
            bi(
                gru(4, true, "tanh", "hard_sigmoid", false),
                MergeMode::Concat,
            ),
            Dense::new(3).activation(a("softmax")).into(),
        ],
    ));
    let f = 3;
    let mut r = Rng(0x5eed_b1d1_u64);
    let mut worst = 0.0f32;
    for (name, layers) in &models {
        for (tag, t) in [("fixed_t", Some(5usize)), ("symbolic_t", None)] {
            let mut spec = Sequential::new().name(name.as_str()).seed(3);
            spec.input_shape = Some((t, f));
            for l in layers {
                spec = spec.add(l.clone());
            }
            let mut model = spec.build().unwrap();
            // Non-zero biases and weights of the fixtures' scale.
            let weights: Vec<ArrayD<f32>> = model
                .get_weights()
                .into_iter()
                .map(|w| w.mapv(|_| r.uniform()))
                .collect();
            model.set_weights(&weights).unwrap();
            let bytes = export_model(&model).unwrap_or_else(|e| panic!("{name}: {e}"));
            let steps = t.unwrap_or(7);
            let x = Tensor {
                shape: vec![3, steps, f],
                data: r.vec(3 * steps * f, 4.0),
            };
            let mut inputs = vec![x.clone(), x.take_rows(1, 1)];
            if t.is_none() {
                inputs.push(Tensor {
                    shape: vec![2, 2, f],
                    data: r.vec(2 * 2 * f, 4.0),
                });
            }
            let (outs, _) = run_ort(
                &tmp_dir(&format!("synthetic_bidirectional/{name}/{tag}")),
                &bytes,
                &inputs,
            );
            for (k, (o, x)) in outs.iter().zip(&inputs).enumerate() {
                let xa =
                    ndarray::Array3::from_shape_vec((x.shape[0], x.shape[1], f), x.data.clone())
                        .unwrap();
                let want = model.predict(&xa).unwrap();
                let want = Tensor {
                    shape: want.shape().to_vec(),
                    data: want.iter().copied().collect(),
                };
                let d = max_abs_diff(o, &want);
                assert!(
                    d <= TOL,
                    "{name} ({tag}, input {k}): max |onnxruntime - engine| = {d:e}"
                );
                worst = worst.max(d);
            }
        }
    }
    eprintln!(
        "ONNX export, {} synthetic Bidirectional models vs the engine: max abs err {worst:.3e}",
        models.len()
    );
}

// ---------------------------------------------------------------------------------------------
// native files in Python's `safetensors`

#[test]
fn native_files_load_in_python_safetensors() {
    let py = python();
    let dir = tmp_dir("python_safetensors");
    let model = stacklstm::Sequential::new()
        .name("py")
        .input_shape(5, 2)
        .add(stacklstm::Lstm::new(3).return_sequences(true))
        .add(stacklstm::Lstm::new(4).use_bias(false))
        .add(stacklstm::Dense::new(2))
        .seed(3)
        .build()
        .unwrap();
    let path = dir.join("model.safetensors");
    let training = stacklstm::TrainingState {
        json: serde_json::json!({"step": 3}),
        tensors: vec![("m".into(), vec![2, 2], vec![1.0, 2.0, 3.0, 4.0])],
    };
    stacklstm::io::save_checkpoint(
        &path,
        &model,
        Some(&serde_json::json!({"scaler": null})),
        Some(&training),
    )
    .unwrap();
    let script = r#"
import json, sys
from safetensors import safe_open
from safetensors.numpy import load_file
path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, framework="np") as f:
    meta = f.metadata()
doc = json.loads(meta["stacklstm"])
out = {"format": meta["format"], "version": doc["format_version"],
       "layers": [l["type"] for l in doc["model"]["layers"]],
       "tensors": {k: [list(v.shape), str(v.dtype), float(v.astype("float64").sum())] for k, v in tensors.items()}}
print(json.dumps(out))
"#;
    let out = Command::new(&py)
        .arg("-c")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python safetensors failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["format"], "stacklstm");
    assert_eq!(info["version"], 1);
    assert_eq!(info["layers"], serde_json::json!(["lstm", "lstm", "dense"]));
    let tensors = info["tensors"].as_object().unwrap();
    let mut n = 0;
    for layer in model.layers() {
        for stacklstm::Weight {
            name: w,
            shape,
            values: data,
        } in layer.weights()
        {
            let t = &tensors[&format!("{}/{w}", layer.name())];
            assert_eq!(t[0], serde_json::json!(shape));
            assert_eq!(t[1], "float32");
            let sum: f64 = data.iter().map(|&v| f64::from(v)).sum();
            assert!((t[2].as_f64().unwrap() - sum).abs() < 1e-9, "{w}");
            n += 1;
        }
    }
    assert_eq!(tensors.len(), n + 1, "weights plus one training tensor");
    assert_eq!(tensors["training/m"][2], 10.0);
}

// ---------------------------------------------------------------------------------------------
// masked models: the step mask computed in the graph

/// `[b, t, f]` float32 input with rows `pattern` (`1` kept, `0` padded with `pad`).
fn padded_input(rows: &[&str], f: usize, pad: f32, seed: u64) -> Tensor {
    let t = rows[0].len();
    let mut r = Rng(seed);
    let mut data = Vec::with_capacity(rows.len() * t * f);
    for row in rows {
        for c in row.bytes() {
            for _ in 0..f {
                let v = r.uniform() * 2.0 - 1.0;
                data.push(if c == b'1' { v } else { pad });
            }
        }
    }
    Tensor {
        shape: vec![rows.len(), t, f],
        data,
    }
}

/// Masked models, exported and run in onnxruntime on rows padded on the right, on the left,
/// with holes, not at all and entirely: the same outputs as the library (which the parity
/// test holds to Keras), masked steps included. The fixtures' masked `.keras` models too.
#[test]
fn masked_models_match_onnxruntime_for_every_padding() {
    use stacklstm::{Bidirectional, Gru, Masking, MergeMode};
    let _ = python();
    let rows = [
        "1111111", "1111000", "0001111", "1101101", "0000000", "1000000",
    ];
    let models = vec![
        (
            "masking_lstm_gru_dense",
            Sequential::new()
                .input_shape(7, 3)
                .add(Masking::new(0.0))
                .add(Lstm::new(5).return_sequences(true))
                .add(Gru::new(4))
                .add(Dense::new(2)),
            0.0,
        ),
        (
            "masking_sequence_output",
            Sequential::new()
                .input_shape(7, 3)
                .add(Masking::new(-1.0))
                .add(Gru::new(4).return_sequences(true).reset_after(false))
                .add(Dense::new(3).activation(Activation::Relu))
                .add(Lstm::new(3).return_sequences(true).use_bias(false))
                .add(Dense::new(2)),
            -1.0,
        ),
        (
            "masking_bidirectional_stack",
            Sequential::new()
                .input_shape(7, 3)
                .add(Masking::new(0.0))
                .add(Bidirectional::new(Lstm::new(4).return_sequences(true)))
                .add(
                    Bidirectional::new(Gru::new(3).return_sequences(true))
                        .merge_mode(MergeMode::Mul),
                )
                .add(Bidirectional::new(Lstm::new(2)).merge_mode(MergeMode::Ave))
                .add(Dense::new(2)),
            0.0,
        ),
        (
            "masking_dense_only",
            Sequential::new()
                .input_features(3)
                .add(Masking::new(0.5))
                .add(Dense::new(2)),
            0.5,
        ),
    ];
    let mut worst = 0.0f32;
    for (name, spec, pad) in models {
        let mut model = spec.seed(11).build().unwrap();
        // Non-zero biases, so padded outputs are not trivially zero.
        let w: Vec<ArrayD<f32>> = model
            .get_weights()
            .into_iter()
            .map(|w| w.mapv(|v| v + 0.1))
            .collect();
        model.set_weights(&w).unwrap();
        let x = padded_input(&rows, 3, pad, 5);
        let xa = ndarray::Array3::from_shape_vec((rows.len(), 7, 3), x.data.clone()).unwrap();
        let want = model.predict(&xa).unwrap();
        let want = Tensor {
            shape: want.shape().to_vec(),
            data: want.iter().copied().collect(),
        };
        let bytes = export_model(&model).unwrap_or_else(|e| panic!("{name}: export: {e}"));
        let (outs, _) = run_ort(&tmp_dir(&format!("masked/{name}")), &bytes, &[x]);
        let d = max_abs_diff(&outs[0], &want);
        assert!(d <= TOL, "{name}: max |onnxruntime - stacklstm| = {d:e}");
        worst = worst.max(d);
    }
    let mut files = 0;
    // Reading `.keras` files needs the `keras` feature (the engine alone is tested without).
    let keras_files: &[&str] = if cfg!(feature = "keras") {
        &[
            "masking_lstm_stack",
            "masking_seq_labeling",
            "bilstm_masking",
        ]
    } else {
        &[]
    };
    for &case in keras_files {
        let dir = rnn_fixtures_dir().join(case);
        let loaded = stacklstm::load_model(dir.join("model.keras"), None).unwrap();
        let bytes = export_model(&loaded.model).unwrap_or_else(|e| panic!("{case}: {e}"));
        let x = read_npy(&dir.join("x.npy"));
        let y = read_npy(&dir.join("y.npy"));
        let (outs, _) = run_ort(&tmp_dir(&format!("masked/{case}")), &bytes, &[x]);
        let d = max_abs_diff(&outs[0], &y);
        assert!(d <= TOL, "{case}: max |onnxruntime - keras| = {d:e}");
        worst = worst.max(d);
        files += 1;
    }
    eprintln!("ONNX export of masked models ({files} Keras files): max abs err {worst:.3e}");
}
