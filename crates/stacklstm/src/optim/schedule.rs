//! Learning-rate schedules, evaluated at the optimizer's step count (as Keras does).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the learning rate changes with the number of optimizer steps taken.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Schedule {
    /// The optimizer's learning rate, unchanged.
    #[default]
    Constant,
    /// Keras `ExponentialDecay`: `lr · rate^(step / decay_steps)`, with the exponent floored
    /// when `staircase`.
    ExponentialDecay {
        /// Steps per decay period.
        decay_steps: u64,
        /// Factor per period.
        decay_rate: f32,
        /// Decay in discrete jumps.
        staircase: bool,
    },
    /// Step decay: `lr · gamma^floor(step / step_size)` (PyTorch `StepLR`, counted in
    /// optimizer steps; use `step_size = epochs × batches_per_epoch` for per-epoch drops).
    StepDecay {
        /// Steps between drops.
        step_size: u64,
        /// Factor per drop.
        gamma: f32,
    },
}

impl Schedule {
    /// The learning rate at `step` (0-based count of updates already applied).
    pub fn rate(&self, base: f32, step: u64) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::ExponentialDecay {
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = step as f32 / decay_steps as f32;
                if staircase {
                    p = p.floor();
                }
                base * decay_rate.powf(p)
            }
            Schedule::StepDecay { step_size, gamma } => {
                base * gamma.powi(i32::try_from(step / step_size).unwrap_or(i32::MAX))
            }
        }
    }

    /// Checks the parameters.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero period or a non-positive factor.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Schedule::Constant => Ok(()),
            Schedule::ExponentialDecay {
                decay_steps,
                decay_rate,
                ..
            } if decay_steps == 0 || !(decay_rate > 0.0 && decay_rate.is_finite()) => {
                Err(Error::config(
                    "ExponentialDecay needs decay_steps >= 1 and a finite decay_rate > 0",
                ))
            }
            Schedule::StepDecay { step_size, gamma }
                if step_size == 0 || !(gamma > 0.0 && gamma.is_finite()) =>
            {
                Err(Error::config(
                    "StepDecay needs step_size >= 1 and a finite gamma > 0",
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_and_step_decay() {
        let e = Schedule::ExponentialDecay {
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: false,
        };
        assert!((e.rate(1.0, 10) - 0.5).abs() < 1e-7);
        assert!((e.rate(1.0, 5) - 0.5f32.sqrt()).abs() < 1e-6);
        let s = Schedule::ExponentialDecay {
            decay_steps: 10,
            decay_rate: 0.5,
            staircase: true,
        };
        assert_eq!(s.rate(1.0, 9), 1.0);
        assert_eq!(s.rate(1.0, 20), 0.25);
        let st = Schedule::StepDecay {
            step_size: 3,
            gamma: 0.1,
        };
        assert_eq!(st.rate(2.0, 2), 2.0);
        assert!((st.rate(2.0, 3) - 0.2).abs() < 1e-7);
        assert!((st.rate(2.0, 7) - 0.02).abs() < 1e-7);
        assert!(Schedule::StepDecay {
            step_size: 0,
            gamma: 0.5
        }
        .validate()
        .is_err());
    }
}
