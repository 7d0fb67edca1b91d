//! "Nice" axis ticks (steps of 1, 2 or 5 times a power of ten) and their labels.

/// Tick positions chosen for an axis range.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    /// Tick values in increasing order, all inside the requested range.
    pub values: Vec<f64>,
    /// The distance between neighbouring ticks (for a log axis: between decades, in log10 units,
    /// or the linear step when the range is less than a decade).
    pub step: f64,
    /// The range the ticks were chosen for, after a degenerate range (`lo == hi`) was widened.
    pub lo: f64,
    /// Upper end of that range.
    pub hi: f64,
    /// Labels, one per value, formatted consistently for the step.
    pub labels: Vec<String>,
}

/// Hard cap on the number of ticks, whatever `target` says.
const MAX_TICKS: usize = 100;

/// Widens a degenerate or almost-degenerate range around its centre.
///
/// Returns `None` for non-finite input or a range too large to represent.
pub fn widen(lo: f64, hi: f64) -> Option<(f64, f64)> {
    if !lo.is_finite() || !hi.is_finite() {
        return None;
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let span = hi - lo;
    if !span.is_finite() {
        return None;
    }
    let mid = lo / 2.0 + hi / 2.0;
    if span <= mid.abs() * 1e-12 || span == 0.0 {
        let half = if mid == 0.0 { 1.0 } else { mid.abs() * 0.1 };
        let (a, b) = (mid - half, mid + half);
        if !(b - a).is_finite() {
            return None;
        }
        return Some((a, b));
    }
    Some((lo, hi))
}

/// Nice ticks for the linear range `[lo, hi]`, aiming at about `target` ticks.
///
/// The step is 1, 2 or 5 times a power of ten; every tick lies in the (widened) range. A
/// degenerate range (`lo == hi`) is widened by 10 % of its value (or ±1 around zero), so
/// `[5, 5]` gives ticks from 4.6 to 5.4. Non-finite input gives no ticks. Never panics.
pub fn nice_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let Some((lo, hi)) = widen(lo, hi) else {
        return Ticks {
            values: vec![],
            step: 0.0,
            lo,
            hi,
            labels: vec![],
        };
    };
    let target = target.clamp(1, MAX_TICKS / 2);
    let step = nice_step((hi - lo) / target as f64);
    let first = (lo / step).ceil();
    let last = (hi / step).floor();
    let mut values = Vec::new();
    if first.is_finite() && last.is_finite() && last - first < MAX_TICKS as f64 {
        let mut k = first;
        while k <= last {
            let mut v = k * step;
            if v.abs() < step * 1e-9 {
                v = 0.0;
            }
            values.push(v);
            k += 1.0;
        }
    }
    let labels = format_linear(&values, step);
    Ticks {
        values,
        step,
        lo,
        hi,
        labels,
    }
}

/// The nice step (1, 2 or 5 × 10^k) closest above-ish to `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let exp = raw.log10().floor();
    let mag = 10f64.powf(exp);
    let norm = raw / mag;
    let m = if norm < 1.5 {
        1.0
    } else if norm < 3.0 {
        2.0
    } else if norm < 7.0 {
        5.0
    } else {
        10.0
    };
    let s = m * mag;
    if s.is_finite() && s > 0.0 {
        s
    } else {
        raw
    }
}

/// Ticks for a log10 axis whose range, in log10 units, is `[lo, hi]`.
///
/// Values are returned in log10 units too; labels show the real values (`0.01`, `1`, `1e-6`).
/// Less than about a decade falls back to nice linear ticks between `10^lo` and `10^hi`;
/// a few decades get every power of ten (plus 2× and 5× when there is room); many decades
/// get every k-th power of ten.
pub fn log_ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let Some((lo, hi)) = widen(lo, hi) else {
        return Ticks {
            values: vec![],
            step: 0.0,
            lo,
            hi,
            labels: vec![],
        };
    };
    let target = target.clamp(2, MAX_TICKS / 2);
    let first = lo.ceil();
    let last = hi.floor();
    let decades = last - first + 1.0;
    if decades < 2.0 {
        // Less than a decade holds two powers of ten: linear ticks in real units.
        let (a, b) = (10f64.powf(lo), 10f64.powf(hi));
        let lin = nice_ticks(a, b, target);
        let values: Vec<f64> = lin
            .values
            .iter()
            .filter(|v| **v > 0.0)
            .map(|v| v.log10())
            .collect();
        let labels = lin
            .values
            .iter()
            .zip(&lin.labels)
            .filter(|(v, _)| **v > 0.0)
            .map(|(_, l)| l.clone())
            .collect();
        return Ticks {
            values,
            step: lin.step,
            lo,
            hi,
            labels,
        };
    }
    // 1, 2 and 5 in every decade when they fit (about 1.5x the target), else powers of ten,
    // every k-th one when there are many decades.
    let mut dense: Vec<(f64, String)> = Vec::new();
    let mut d = lo.floor();
    while d <= hi && dense.len() <= target * 2 {
        for m in [1.0f64, 2.0, 5.0] {
            let v = d + m.log10();
            if v >= lo && v <= hi {
                let label = if m == 1.0 {
                    format_power(d as i32)
                } else {
                    format_value(m * 10f64.powi(d as i32), d as i32)
                };
                dense.push((v, label));
            }
        }
        d += 1.0;
    }
    if dense.len() <= target + target / 2 + 1 {
        let (values, labels) = dense.into_iter().unzip();
        return Ticks {
            values,
            step: 1.0,
            lo,
            hi,
            labels,
        };
    }
    let every = (decades / target as f64).ceil().max(1.0);
    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut k = (first / every).ceil() * every;
    while k <= last && values.len() < MAX_TICKS {
        values.push(k);
        labels.push(format_power(k as i32));
        k += every;
    }
    Ticks {
        values,
        step: every,
        lo,
        hi,
        labels,
    }
}

/// `10^k` as a label: plain decimals from 1e-4 to 1e5, else `1e-7`.
fn format_power(k: i32) -> String {
    if (-4..=5).contains(&k) {
        format_value(10f64.powi(k), k)
    } else {
        format!("1e{k}")
    }
}

/// A positive value whose leading digit sits at decade `k`, without float noise.
fn format_value(v: f64, k: i32) -> String {
    if (-4..=5).contains(&k) {
        let dec = (-k).max(0) as usize;
        format!("{v:.dec$}")
    } else {
        format!("{:.0e}", v)
    }
}

/// Labels for linear ticks: the same number of decimals for all, scientific notation for very
/// large or very small magnitudes.
pub fn format_linear(values: &[f64], step: f64) -> Vec<String> {
    if values.is_empty() || !(step.is_finite() && step > 0.0) {
        return values.iter().map(|v| format!("{v}")).collect();
    }
    let max_abs = values.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let step_exp = (step.log10() + 1e-9).floor();
    let sci = max_abs >= 1e6 || (max_abs > 0.0 && max_abs < 1e-3) || step_exp < -6.0;
    if sci {
        let max_exp = (max_abs.log10() + 1e-9).floor();
        let p = (max_exp - step_exp).clamp(0.0, 10.0) as usize;
        values
            .iter()
            .map(|&v| {
                if v == 0.0 {
                    "0".to_string()
                } else {
                    format!("{v:.p$e}")
                }
            })
            .collect()
    } else {
        let dec = (-step_exp).clamp(0.0, 12.0) as usize;
        values
            .iter()
            .map(|&v| {
                let s = format!("{v:.dec$}");
                // "-0.0" after rounding reads as a bug.
                if s.starts_with('-') && s[1..].bytes().all(|b| b == b'0' || b == b'.') {
                    s[1..].to_string()
                } else {
                    s
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len()
            && a.iter()
                .zip(b)
                .all(|(x, y)| (x - y).abs() < 1e-9 * (1.0 + y.abs()))
    }

    #[test]
    fn unit_range() {
        let t = nice_ticks(0.0, 1.0, 5);
        assert!(
            close(&t.values, &[0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
            "{:?}",
            t.values
        );
        assert_eq!(t.labels, ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"]);
    }

    #[test]
    fn wide_asymmetric_range() {
        let t = nice_ticks(-3.7, 1234.0, 6);
        assert_eq!(t.step, 200.0);
        assert!(close(
            &t.values,
            &[0.0, 200.0, 400.0, 600.0, 800.0, 1000.0, 1200.0]
        ));
        assert_eq!(t.labels[0], "0");
        assert_eq!(t.labels[6], "1200");
    }

    #[test]
    fn degenerate_range() {
        let t = nice_ticks(5.0, 5.0, 5);
        assert!(!t.values.is_empty());
        assert!(t.values.iter().all(|v| (4.5..=5.5).contains(v)));
        assert!(t.values.iter().any(|v| (v - 5.0).abs() < 1e-12));
        let z = nice_ticks(0.0, 0.0, 5);
        assert!(z.values.contains(&0.0) && z.values.len() >= 3);
    }

    #[test]
    fn steps_are_one_two_five() {
        for (lo, hi) in [
            (0.0, 7.0),
            (-1e-5, 3e-5),
            (1e9, 3.3e9),
            (0.123, 0.125),
            (-50.0, -2.0),
        ] {
            let t = nice_ticks(lo, hi, 5);
            let m = t.step / 10f64.powf(t.step.log10().floor());
            assert!(
                [1.0, 2.0, 5.0].iter().any(|x| (m - x).abs() < 1e-9),
                "{lo}..{hi}: {}",
                t.step
            );
            assert!(
                t.values.len() >= 2 && t.values.len() <= 12,
                "{lo}..{hi}: {:?}",
                t.values
            );
            assert!(t
                .values
                .iter()
                .all(|v| *v >= lo - 1e-9 * lo.abs() && *v <= hi + 1e-9 * hi.abs()));
            // Labels are distinct.
            let mut l = t.labels.clone();
            l.dedup();
            assert_eq!(l.len(), t.labels.len(), "{:?}", t.labels);
        }
    }

    #[test]
    fn reversed_non_finite_and_huge() {
        assert_eq!(nice_ticks(1.0, 0.0, 5).values.len(), 6);
        assert!(nice_ticks(f64::NAN, 1.0, 5).values.is_empty());
        assert!(nice_ticks(0.0, f64::INFINITY, 5).values.is_empty());
        assert!(nice_ticks(-f64::MAX, f64::MAX, 5).values.is_empty());
        let t = nice_ticks(0.0, f64::MAX / 4.0, 5);
        assert!(!t.values.is_empty());
        assert!(t.labels.iter().all(|l| l.contains('e') || l == "0"));
        let tiny = nice_ticks(1.0, 1.0 + 1e-15, 5);
        assert!(!tiny.values.is_empty());
        nice_ticks(0.0, 1.0, 0);
        nice_ticks(0.0, 1.0, usize::MAX);
    }

    #[test]
    fn log_axis() {
        let t = log_ticks(-3.2, 0.4, 6);
        assert_eq!(t.labels, ["0.001", "0.01", "0.1", "1"]);
        let many = log_ticks(-30.0, 30.0, 6);
        assert!(
            many.values.len() <= 7 && many.values.len() >= 4,
            "{:?}",
            many.labels
        );
        let narrow = log_ticks(0.0, 0.5, 5); // 1 .. 3.16
        assert!(
            narrow.labels.contains(&"2.0".to_string()) || narrow.labels.contains(&"2".to_string()),
            "{:?}",
            narrow.labels
        );
        let two = log_ticks(-2.0, 0.0, 10);
        assert!(two.labels.contains(&"0.05".to_string()), "{:?}", two.labels);
    }
}
