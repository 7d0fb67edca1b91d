//! Golden parity against real Keras 3 / PyTorch output, in two folders of cases: the
//! stacked-LSTM fixtures (`$STACKLSTM_FIXTURES`, default `../shared/fixtures`) and the GRU,
//! Bidirectional and masking fixtures (`$STACKLSTM_FIXTURES_RNN`, default
//! `../shared/fixtures-rnn`). For every case folder: the forward output (1e-5 absolute), the
//! loss value (1e-4 relative) and the gradients with respect to the input and every weight
//! (1e-4 relative to the largest value of each tensor), as the fixtures READMEs define.
//! Every failing case is reported, not only the first. The `train` (Adam) and `train_sgd`
//! blocks are replayed too: ten `train_on_batch` calls on the same batch, each loss within
//! 1e-4 relative and the final weights within 1e-4 absolute. An unknown layer or option
//! fails the case: the fixture schema is complete.

mod common;

use common::*;

fn check_case(dir: &std::path::Path) -> Result<(Vec<String>, String), String> {
    let c = load_case(dir)?;
    let mut fails = Vec::new();
    let want = tensor(&c.json["output"])?;
    let got = c.model.predict(&c.x).map_err(|e| e.to_string())?;
    if got.shape() != want.shape() {
        return Err(format!(
            "output shape {:?}, Keras {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let d = max_abs_diff(&got, &want);
    if d > 1e-5 {
        fails.push(format!("output: max abs diff {d:e} > 1e-5"));
    }
    let target = tensor(&c.json["loss"]["target"])?;
    // A trainer only to take gradients: the optimizer never steps.
    let mut trainer = c
        .model
        .clone()
        .compile(c.loss, stacklstm::Sgd::new(1.0))
        .map_err(|e| e.to_string())?;
    let (value, dx) = trainer
        .loss_and_gradients(&c.x, &target)
        .map_err(|e| e.to_string())?;
    let want_loss = c.json["loss"]["value"].as_f64().ok_or("loss.value")?;
    if (value - want_loss).abs() > 1e-4 * want_loss.abs() {
        fails.push(format!("loss: {value} vs Keras {want_loss}"));
    }
    let mut worst_rel = 0.0f32;
    let mut check = |what: String, a: &ndarray::ArrayD<f32>, b: &ndarray::ArrayD<f32>| {
        if a.shape() != b.shape() {
            fails.push(format!("{what}: shape {:?} vs {:?}", a.shape(), b.shape()));
            return;
        }
        let (d, m) = (max_abs_diff(a, b), max_abs(b));
        worst_rel = worst_rel.max(d / m.max(f32::MIN_POSITIVE));
        if d > 1e-4 * m {
            fails.push(format!("{what}: max abs diff {d:e} > 1e-4 * {m:e}"));
        }
    };
    // Token-id inputs have no input gradient.
    if !c.json["gradients"]["input"].is_null() {
        check(
            "d input".into(),
            &dx.into_dyn(),
            &tensor(&c.json["gradients"]["input"])?,
        );
    }
    let want_grads = weights(&c.json["gradients"]["weights"])?;
    let grads = trainer.gradients();
    if grads.len() != want_grads.len() {
        return Err(format!(
            "{} weight gradients, Keras has {}",
            grads.len(),
            want_grads.len()
        ));
    }
    for (i, (a, b)) in grads.iter().zip(&want_grads).enumerate() {
        check(format!("d weight {i}"), a, b);
    }
    let mut worst_w = 0.0f32;
    for block in ["train", "train_sgd"] {
        match replay(dir, block) {
            Ok((f, worst)) => {
                fails.extend(f);
                worst_w = worst_w.max(worst);
            }
            Err(e) => fails.push(format!("{block}: {e}")),
        }
    }
    let summary = format!(
        "output {d:.1e}, loss {value:.6}, gradients {worst_rel:.1e} (rel.), trained weights {worst_w:.1e}"
    );
    Ok((fails, summary))
}

/// Replays a training block; returns failures and the worst final-weight difference.
fn replay(dir: &std::path::Path, block: &str) -> Result<(Vec<String>, f32), String> {
    use stacklstm::{Adam, Sgd};
    let c = load_case(dir)?;
    let b = &c.json[block];
    let o = &b["optimizer"];
    let num = |k: &str| {
        o[k].as_f64()
            .map(|v| v as f32)
            .ok_or(format!("{block}.optimizer.{k}"))
    };
    let mut trainer = match o["type"].as_str() {
        Some("adam") => c.model.compile(
            c.loss,
            Adam::new(num("learning_rate")?)
                .beta_1(num("beta_1")?)
                .beta_2(num("beta_2")?)
                .epsilon(num("epsilon")?),
        ),
        Some("sgd") => c.model.compile(
            c.loss,
            Sgd::new(num("learning_rate")?).momentum(num("momentum")?),
        ),
        other => return Err(format!("unsupported optimizer {other:?}")),
    }
    .map_err(|e| e.to_string())?;
    let target = tensor(&c.json["loss"]["target"])?;
    let losses = b["losses"].as_array().ok_or("losses")?;
    let steps = b["steps"].as_u64().ok_or("steps")? as usize;
    if losses.len() != steps {
        return Err(format!("{} losses for {steps} steps", losses.len()));
    }
    let mut fails = Vec::new();
    for (k, want) in losses.iter().enumerate() {
        let want = want.as_f64().ok_or("loss value")?;
        let got = trainer
            .train_on_batch(&c.x, &target)
            .map_err(|e| e.to_string())?;
        if (got - want).abs() > 1e-4 * want.abs() {
            fails.push(format!("{block}: step {k} loss {got} vs Keras {want}"));
        }
    }
    let want = weights(&b["final_weights"])?;
    let got = trainer.get_weights();
    let mut worst = 0.0f32;
    for (i, (a, w)) in got.iter().zip(&want).enumerate() {
        let d = max_abs_diff(a, w);
        worst = worst.max(d);
        if d > 1e-4 {
            fails.push(format!(
                "{block}: final weight {i} max abs diff {d:e} > 1e-4"
            ));
        }
    }
    Ok((fails, worst))
}

/// Checks every case of `cases`, printing one line per case; returns the failures and the
/// number of cases that ran.
fn run_cases(cases: &[std::path::PathBuf]) -> (Vec<String>, usize) {
    let mut report = Vec::new();
    let mut ran = 0;
    for dir in cases {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ran += 1;
        match check_case(dir) {
            Ok((f, s)) if f.is_empty() => println!("{name}: ok: {s}"),
            Ok((f, _)) => report.push(format!("{name}:\n  {}", f.join("\n  "))),
            Err(e) => report.push(format!("{name}: {e}")),
        }
    }
    (report, ran)
}

#[test]
fn every_fixture_case_matches_keras() {
    let cases = case_dirs();
    let (report, ran) = run_cases(&cases);
    assert!(
        report.is_empty(),
        "{} of {ran} cases fail:\n{}",
        report.len(),
        report.join("\n")
    );
}

#[test]
fn every_rnn_fixture_case_matches_keras() {
    let cases = rnn_case_dirs();
    let (report, ran) = run_cases(&cases);
    assert!(
        report.is_empty(),
        "{} of {ran} cases fail:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(ran > 0, "no case of {} ran", rnn_fixtures_dir().display());
}
