//! Closed sets of choices that several subcommands take, as clap value enums (so `--help`
//! lists them and a wrong value is a usage error), and the library types they stand for.

use stacklstm::data::{FillMode, ScalerKind};

/// `--fill`: what to do with a missing CSV cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fill {
    Error,
    Ffill,
    Interpolate,
    Drop,
}

impl From<Fill> for FillMode {
    fn from(f: Fill) -> FillMode {
        match f {
            Fill::Error => FillMode::Error,
            Fill::Ffill => FillMode::Ffill,
            Fill::Interpolate => FillMode::Interpolate,
            Fill::Drop => FillMode::Drop,
        }
    }
}

/// `--scaler`: how the columns are scaled (fitted on the training rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScalerName {
    // To [0, 1].
    #[value(alias = "min_max", alias = "min-max")]
    Minmax,
    // Zero mean, unit variance.
    #[value(alias = "zscore", alias = "z-score")]
    Standard,
    None,
}

impl From<ScalerName> for ScalerKind {
    fn from(s: ScalerName) -> ScalerKind {
        match s {
            ScalerName::Minmax => ScalerKind::MinMax,
            ScalerName::Standard => ScalerKind::Standard,
            ScalerName::None => ScalerKind::None,
        }
    }
}
