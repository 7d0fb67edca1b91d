//! Loading a native model together with the preprocessing saved with it.

use std::path::Path;

use anyhow::{bail, Context, Result};
use stacklstm::data::prep::Preprocessing;
use stacklstm::data::{CsvOptions, Series};
use stacklstm::Model;

/// A native model file with its preprocessing.
pub fn load(path: &Path) -> Result<(Model, Preprocessing)> {
    let loaded = stacklstm::load_model(path, None)
        .with_context(|| format!("loading model {}", path.display()))?;
    let Some(p) = loaded.preprocessing else {
        bail!(
            "{}: the model file carries no preprocessing (columns, scaler or vocabulary); use a model written by `stacklstm train`",
            path.display()
        );
    };
    let prep: Preprocessing = serde_json::from_value(p)
        .with_context(|| format!("{}: reading its preprocessing", path.display()))?;
    Ok((loaded.model, prep))
}

/// Reads a CSV with the columns a series model was trained on.
pub fn read_series(
    data: &Path,
    prep: &Preprocessing,
    fill: stacklstm::data::FillMode,
) -> Result<Series> {
    let Preprocessing::Series {
        features,
        targets,
        date_column,
        ..
    } = prep
    else {
        bail!("{}", not_a_series(prep));
    };
    let opts = CsvOptions {
        target: targets.clone(),
        features: Some(features.clone()),
        date_column: date_column.clone(),
        sort_by_date: false,
        fill,
    };
    let s = stacklstm::data::read_csv_path(data, &opts)?;
    if &s.columns != features {
        bail!(
            "{}: columns {:?} do not match the model's features {:?}",
            data.display(),
            s.columns,
            features
        );
    }
    Ok(s)
}

/// What to do with a model that is not a time-series model, for the commands that need one.
pub fn not_a_series(prep: &Preprocessing) -> String {
    match prep {
        Preprocessing::Text { .. } => {
            "this is a language model: `evaluate` it on a text file, or sample it with `generate`"
                .to_string()
        }
        _ => ARRAYS_MODEL.to_string(),
    }
}

/// What to do with a model trained on arrays.
pub const ARRAYS_MODEL: &str =
    "this model was trained on arrays (`train arrays`): run it with `predict --input X.npy`";
