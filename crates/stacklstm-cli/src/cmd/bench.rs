//! `stacklstm bench`: runs workloads of the shared `workloads.json` (or of a project table in
//! its schema, `--workloads-json`) with exactly their shapes, optimizer and thread count,
//! and prints throughput, latency, GFLOP/s and peak memory in the peers' record schema
//! (`bench/peers/common.py`), so that our records and theirs can be put side by side.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::{Array3, ArrayD};
use serde_json::{json, Value};
use stacklstm::{Adam, Loss, Model, Workspace};

use crate::bench::probe::{self, Policy};
use crate::bench::workload::{self, Spec, Workload};

/// Default location of the workload table, relative to the repository root (or any
/// directory above the current one).
const DEFAULT_WORKLOADS: &str = "../shared/bench/workloads.json";

/// Arguments of `stacklstm bench`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Workload name(s) of the table, comma-separated, or `all`.
    #[arg(
        long,
        visible_alias = "workload",
        value_name = "NAMES",
        default_value = "all"
    )]
    pub workloads: String,
    /// The workload table: the shared one, or a project table in the same schema such as
    /// bench/workloads-rnn.json (GRU, bidirectional and variable-length workloads).
    #[arg(long, value_name = "FILE", default_value = DEFAULT_WORKLOADS)]
    pub workloads_json: PathBuf,
    /// Print the records as JSON (the peers' file format) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Repeats per measurement (0: the table's `repeats`).
    #[arg(long, default_value_t = 0)]
    pub repeats: usize,
    /// Multiply every step and call count (e.g. 0.1 for a smoke test).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Only these measurements, comma-separated: train, infer_throughput, infer_latency.
    #[arg(long, default_value = "train,infer_throughput,infer_latency")]
    pub measure: String,
}

/// Finds the workload table: as given, else relative to each directory above the
/// current one (so the default works from anywhere inside the repository).
fn resolve(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() || path.exists() {
        return Ok(path.to_path_buf());
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    for dir in cwd.ancestors() {
        let p = dir.join(path);
        if p.exists() {
            return Ok(p);
        }
    }
    bail!(
        "workload table {} not found from {} or any directory above it; pass --workloads-json FILE",
        path.display(),
        cwd.display()
    )
}

fn scaled(n: usize, scale: f64) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

/// One training step through the public training API: `train_on_batch` after
/// `compile(loss, Adam(1e-3))` (zero gradients, forward, loss, backward, Adam with Keras'
/// equations and epsilon 1e-7).
struct Trainer {
    trainer: stacklstm::Trainer,
}

impl Trainer {
    fn new(model: Model, loss: Loss) -> Result<Self> {
        Ok(Trainer {
            trainer: model.compile(loss, Adam::new(1e-3))?,
        })
    }

    fn step(&mut self, x: &Array3<f32>, y: &ArrayD<f32>) -> Result<f64> {
        Ok(self.trainer.train_on_batch(x, y)?)
    }
}

/// What one measurement reports besides its values.
struct Memory {
    /// Peak RSS of the process during the measurement, bytes.
    peak: Option<u64>,
    /// Peak RSS minus the RSS just before the first (warm-up) step, bytes.
    growth: Option<u64>,
}

impl Memory {
    fn json(&self) -> Value {
        let mib =
            |b: Option<u64>| b.map(|b| (b as f64 / (1024.0 * 1024.0) * 100.0).round() / 100.0);
        json!({"peak_rss_mib": mib(self.peak), "rss_growth_mib": mib(self.growth)})
    }
}

fn memory_start() -> Option<u64> {
    probe::reset_peak_rss().then(probe::rss_bytes).flatten()
}

fn memory_end(start: Option<u64>) -> Memory {
    let peak = start.and(probe::peak_rss_bytes());
    Memory {
        peak,
        growth: peak.zip(start).map(|(p, s)| p.saturating_sub(s)),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

fn summarize(v: &[f64]) -> Value {
    json!({
        "median": median(v),
        "min": v.iter().copied().fold(f64::INFINITY, f64::min),
        "max": v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        "values": v,
    })
}

/// A record in the peers' schema (`common.record`).
#[allow(clippy::too_many_arguments)]
fn record(
    name: &str,
    w: &Workload,
    metric: &str,
    unit: &str,
    r: &probe::Repeats,
    train: bool,
    batch: usize,
    extra: Value,
) -> Result<Value> {
    let fwd = w.forward_flops_per_sample()? as f64;
    let g: Vec<f64> = if unit.ends_with("/s") {
        let mult = if train { 3.0 } else { 1.0 };
        let per_unit = fwd * mult / w.units_per_sample(unit) as f64;
        r.values.iter().map(|v| v * per_unit / 1e9).collect()
    } else {
        r.values
            .iter()
            .map(|v| fwd * batch as f64 / (v / 1e3) / 1e9)
            .collect()
    };
    let round3 = |o: Option<f64>| o.map(|x| (x * 1000.0).round() / 1000.0);
    let mut rec =
        json!({"framework": "stacklstm", "workload": name, "metric": metric, "unit": unit});
    let obj = rec.as_object_mut().context("record")?;
    if let Value::Object(s) = summarize(&r.values) {
        obj.extend(s);
    }
    obj.insert("forward_flops_per_sample".into(), json!(fwd));
    obj.insert("gflops".into(), summarize(&g));
    obj.insert("batch".into(), json!(batch));
    obj.insert(
        "others_cpu_frac".into(),
        json!(r.others.iter().map(|o| round3(*o)).collect::<Vec<_>>()),
    );
    obj.insert(
        "all_runs".into(),
        json!(r
            .all
            .iter()
            .map(|(v, o)| json!([v, round3(*o)]))
            .collect::<Vec<_>>()),
    );
    if let Value::Object(e) = extra {
        obj.extend(e);
    }
    Ok(rec)
}

fn wants(args: &Args, what: &str) -> bool {
    args.measure.split(',').any(|m| m == what)
}

fn run_workload(
    name: &str,
    w: &Workload,
    args: &Args,
    repeats: usize,
    policy: &Policy,
) -> Result<Vec<Value>> {
    let mut records = Vec::new();
    let notes: Vec<&str> = Vec::new();
    if let (Some(c), Some(loss), true) = (&w.measure.train, w.loss()?, wants(args, "train")) {
        let b = c.batch;
        let steps = scaled(c.steps.unwrap_or(1), args.scale);
        let warm = scaled(c.warmup_steps.unwrap_or(0), args.scale);
        let (x, y) = w.batch(b, 0)?;
        let mut tr = Trainer::new(w.build()?, loss)?;
        let mem0 = memory_start();
        let t0 = Instant::now();
        for _ in 0..warm {
            tr.step(&x, &y)?;
        }
        let warm_s = t0.elapsed().as_secs_f64();
        let per = (b * w.units_per_sample(&c.unit)) as f64;
        let mut err = None;
        let r = policy.repeat(repeats, || {
            let t0 = Instant::now();
            for _ in 0..steps {
                if let Err(e) = tr.step(&x, &y) {
                    err = Some(e);
                }
            }
            steps as f64 * per / t0.elapsed().as_secs_f64()
        });
        if let Some(e) = err {
            return Err(e);
        }
        let mem = memory_end(mem0);
        let rec = record(
            name,
            w,
            "train",
            &c.unit,
            &r,
            true,
            b,
            json!({"steps": steps, "warmup_seconds": (warm_s * 1000.0).round() / 1000.0,
                   "memory": mem.json(), "notes": notes}),
        )?;
        eprintln!(
            "[stacklstm] {name} train: {:.1} {} ({:.2} GFLOP/s) runs={:?}",
            rec["median"].as_f64().unwrap_or(f64::NAN),
            c.unit,
            rec["gflops"]["median"].as_f64().unwrap_or(f64::NAN),
            r.values.iter().map(|v| v.round()).collect::<Vec<_>>()
        );
        records.push(rec);
    }
    if let (Some(c), true) = (&w.measure.infer_throughput, wants(args, "infer_throughput")) {
        let b = c.batch;
        let calls = scaled(c.calls.unwrap_or(1), args.scale);
        let warm = scaled(c.warmup_calls.unwrap_or(0), args.scale);
        let (x, _) = w.batch(b, 0)?;
        let model = w.build()?;
        let mut ws = Workspace::default();
        let mem0 = memory_start();
        for _ in 0..warm {
            model.predict_with(x.view(), &mut ws)?;
        }
        let mut err = None;
        let r = policy.repeat(repeats, || {
            let t0 = Instant::now();
            for _ in 0..calls {
                if let Err(e) = model.predict_with(x.view(), &mut ws) {
                    err = Some(e);
                }
            }
            (calls * b) as f64 / t0.elapsed().as_secs_f64()
        });
        if let Some(e) = err {
            return Err(e.into());
        }
        let mem = memory_end(mem0);
        let rec = record(
            name,
            w,
            "infer_throughput",
            &c.unit,
            &r,
            false,
            b,
            json!({"calls": calls, "memory": mem.json(), "notes": notes}),
        )?;
        eprintln!(
            "[stacklstm] {name} infer b{b}: {:.1} {} ({:.2} GFLOP/s) runs={:?}",
            rec["median"].as_f64().unwrap_or(f64::NAN),
            c.unit,
            rec["gflops"]["median"].as_f64().unwrap_or(f64::NAN),
            r.values.iter().map(|v| v.round()).collect::<Vec<_>>()
        );
        records.push(rec);
    }
    if let (Some(c), true) = (&w.measure.infer_latency, wants(args, "infer_latency")) {
        let b = c.batch;
        let calls = scaled(c.calls.unwrap_or(1), args.scale);
        let warm = scaled(c.warmup_calls.unwrap_or(0), args.scale);
        let (x, _) = w.batch(b, 0)?;
        let model = w.build()?;
        // "predict": the plain call (fresh buffers, new output array) — what a user writes
        // first. "direct": `predict_with` reusing a workspace, the low-latency path.
        for path in ["predict", "direct"] {
            let mut ws = Workspace::default();
            let mut call = || -> Result<ArrayD<f32>> {
                Ok(if path == "predict" {
                    model.predict(&x)?
                } else {
                    model.predict_with(x.view(), &mut ws)?
                })
            };
            for _ in 0..warm {
                call()?;
            }
            let mut err = None;
            let mut times = Vec::with_capacity(calls);
            let mut ncalls = Vec::new();
            let r = policy.repeat(repeats, || {
                times.clear();
                for _ in 0..calls {
                    let t0 = Instant::now();
                    let y = call();
                    times.push(t0.elapsed().as_secs_f64());
                    match y {
                        Ok(y) => drop(std::hint::black_box(y)),
                        Err(e) => err = Some(e),
                    }
                }
                ncalls.push(calls);
                median(&times) * 1e3
            });
            if let Some(e) = err {
                return Err(e);
            }
            let rec = record(
                name,
                w,
                &format!("infer_latency_{path}"),
                "ms",
                &r,
                false,
                b,
                json!({"calls": ncalls[..r.values.len().min(ncalls.len())], "notes": notes}),
            )?;
            eprintln!(
                "[stacklstm] {name} latency b{b} {path}: {:.5} ms runs={:?}",
                rec["median"].as_f64().unwrap_or(f64::NAN),
                r.values
                    .iter()
                    .map(|v| (v * 1e5).round() / 1e5)
                    .collect::<Vec<_>>()
            );
            records.push(rec);
        }
    }
    Ok(records)
}

/// Runs `stacklstm bench`.
///
/// # Errors
/// An unreadable or invalid workload table, an unknown workload name, or a model error.
pub fn run(args: &Args) -> Result<()> {
    if !(args.scale > 0.0 && args.scale.is_finite()) {
        bail!("--scale must be a positive number, got {}", args.scale);
    }
    if args.workloads.ends_with(".json") {
        bail!(
            "--workloads takes workload names (comma-separated, or all), not a file; pass the table with --workloads-json {}",
            args.workloads
        );
    }
    let path = resolve(&args.workloads_json)?;
    let spec = Spec::load(&path)?;
    let names = workload::select(&spec, &args.workloads)?;
    let repeats = if args.repeats > 0 {
        args.repeats
    } else {
        spec.repeats
    };
    let policy = Policy::from_env();
    stacklstm::set_threads(spec.conventions.threads);
    let mut records = Vec::new();
    let mut errors = Vec::new();
    for name in &names {
        let w = spec.get(name)?;
        match run_workload(name, w, args, repeats, &policy) {
            Ok(r) => records.extend(r),
            Err(e) => {
                eprintln!("[stacklstm] {name}: FAILED {e:#}");
                errors.push(json!({"workload": name, "error": format!("{e:#}")}));
            }
        }
    }
    let payload = json!({
        "framework": "stacklstm",
        "meta": {
            "versions": {"stacklstm": env!("CARGO_PKG_VERSION")},
            "threads": {"allowed": spec.conventions.threads, "used": stacklstm::threads()},
            "workloads_file": path.display().to_string(),
            "paths": {
                "train": "Model::compile(loss, Adam::new(1e-3)); Model::train_on_batch(x, y)",
                "infer_throughput": "Model::predict_with(x, &mut Workspace) on a prepared batch",
                "infer_latency_predict": "Model::predict(&x): fresh buffers, new output array",
                "infer_latency_direct": "Model::predict_with(x, &mut Workspace): buffers reused",
            },
        },
        "machine": probe::machine_info(),
        "repeats": repeats,
        "scale": args.scale,
        "contention_policy": policy,
        "records": records,
        "errors": errors,
    });
    if let Some(out) = &args.out {
        let text = serde_json::to_string_pretty(&payload)? + "\n";
        std::fs::write(out, text).with_context(|| format!("writing {}", out.display()))?;
    }
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut stdout, &payload)?;
        writeln!(stdout)?;
    } else {
        writeln!(
            stdout,
            "{:<14} {:<24} {:>14} {:>12} {:>10} {:>12}",
            "workload", "metric", "median", "unit", "GFLOP/s", "peak MiB"
        )?;
        for r in payload["records"].as_array().into_iter().flatten() {
            writeln!(
                stdout,
                "{:<14} {:<24} {:>14.6} {:>12} {:>10.2} {:>12}",
                r["workload"].as_str().unwrap_or(""),
                r["metric"].as_str().unwrap_or(""),
                r["median"].as_f64().unwrap_or(f64::NAN),
                r["unit"].as_str().unwrap_or(""),
                r["gflops"]["median"].as_f64().unwrap_or(f64::NAN),
                r["memory"]["peak_rss_mib"]
                    .as_f64()
                    .map_or("-".to_string(), |m| format!("{m:.1}")),
            )?;
        }
    }
    stdout.flush()?;
    if !errors.is_empty() {
        bail!("{} workload(s) failed", errors.len());
    }
    Ok(())
}
