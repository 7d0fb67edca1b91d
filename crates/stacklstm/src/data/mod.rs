//! Data loading and preparation.
//!
//! * [`csv`]: numeric time series from CSV files (quoting, BOM, CRLF, missing values).
//! * [`window`]: supervised windows for next-step / multi-step forecasting, chronological
//!   splits without leakage, and naive / seasonal-naive baselines with RMSE / MAE.
//! * [`scaler`]: per-column min-max / standard scaling, fitted on training rows only.
//! * [`text`]: character and word vocabularies (batches for stateful truncated BPTT come from
//!   [`crate::train::TbpttBatches`], re-exported here).
//! * [`npy`]: NumPy `.npy` reading (v1/v2/v3, several dtypes) and writing (`<f4`, v1.0).
//!
//! Files written here go through [`write_atomic`] (from [`crate::io`]), so a crash never
//! leaves a half-written file under the final name.

pub mod csv;
pub mod npy;
pub mod prep;
pub mod scaler;
pub mod text;
pub mod window;

pub use self::csv::{read_csv_bytes, read_csv_path, read_csv_str, CsvOptions, FillMode, Series};
pub use self::npy::{read_npy, read_npy_bytes, write_npy};
pub use self::scaler::{Scaler, ScalerKind};
pub use self::text::{TbpttBatches, Vocab, VocabKind};
pub use self::window::{
    mae, naive_forecast, rmse, seasonal_naive_forecast, split_chronological, ChronoSplit,
    WindowSpec, Windows,
};
pub use crate::io::write_atomic;

#[cfg(test)]
use std::path::{Path, PathBuf};

/// Finds the project's `shared/` folder for tests that read the real data files: the
/// `STACKLSTM_SHARED` environment variable, or the first `shared/` folder holding `data/` or
/// `fixtures/` found walking up from the crate's manifest directory.
#[cfg(test)]
pub(crate) fn shared_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STACKLSTM_SHARED") {
        return Some(PathBuf::from(p));
    }
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        let cand = d.join("shared");
        if cand.join("data").is_dir() || cand.join("fixtures").is_dir() {
            return Some(cand);
        }
        dir = d.parent();
    }
    None
}
