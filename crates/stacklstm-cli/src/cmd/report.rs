//! Human-readable result tables.

use serde_json::Value;
use stacklstm::{LayerSpec, Model};

/// What a model's forecast row is called: `stacked` and the kinds of its recurrent layers
/// (those that carry state), e.g. `stacked LSTM`, `stacked GRU`, `stacked LSTM/GRU`,
/// `stacked Bidirectional(GRU)`.
pub fn network(model: &Model) -> String {
    let mut kinds: Vec<String> = Vec::new();
    for (l, spec) in model.layers().iter().zip(&model.spec().layers) {
        if l.state_widths().is_empty() {
            continue;
        }
        let kind = match spec {
            LayerSpec::Bidirectional(b) => format!("Bidirectional({})", b.layer.config().kind()),
            _ => l.kind().to_string(),
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        "model".to_string()
    } else {
        format!("stacked {}", kinds.join("/"))
    }
}

/// Renders a series error report (keys `rmse`/`mae` or `test_rmse`/`test_mae`, `naive_*`,
/// `seasonal_naive_*`, `season`, `windows`/`test_windows`, `network`: the model row's
/// name) as a table; other keys follow as `key: value` lines.
pub fn render(v: &Value) -> String {
    let Some(o) = v.as_object() else {
        return v.to_string();
    };
    let num = |k: &str| o.get(k).and_then(Value::as_f64);
    let mut lines = Vec::new();
    let (rmse, mae, title) = match (num("test_rmse"), num("rmse")) {
        (Some(r), _) => (Some(r), num("test_mae"), "test"),
        (None, Some(r)) => (Some(r), num("mae"), "data"),
        _ => (None, None, ""),
    };
    let mut used: Vec<&str> = Vec::new();
    if let (Some(rmse), Some(mae)) = (rmse, mae) {
        let windows = num("test_windows").or(num("windows")).unwrap_or(0.0);
        let season = num("season").unwrap_or(0.0);
        lines.push(format!("{title} windows: {windows}"));
        lines.push(format!("  {:<22}{:>10}{:>10}", "forecast", "RMSE", "MAE"));
        let name = o.get("network").and_then(Value::as_str).unwrap_or("model");
        lines.push(format!("  {name:<22}{rmse:>10.4}{mae:>10.4}"));
        if let (Some(r), Some(m)) = (num("naive_rmse"), num("naive_mae")) {
            lines.push(format!("  {:<22}{r:>10.4}{m:>10.4}", "naive (last value)"));
        }
        if let (Some(r), Some(m)) = (num("seasonal_naive_rmse"), num("seasonal_naive_mae")) {
            lines.push(format!(
                "  {:<22}{r:>10.4}{m:>10.4}",
                format!("seasonal naive ({season})")
            ));
        }
        used.extend([
            "test_rmse",
            "rmse",
            "test_mae",
            "mae",
            "test_windows",
            "windows",
            "season",
            "naive_rmse",
            "naive_mae",
            "seasonal_naive_rmse",
            "seasonal_naive_mae",
            "network",
        ]);
    }
    for (k, v) in o {
        if !used.contains(&k.as_str()) && !v.is_null() {
            lines.push(format!("{k}: {v}"));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_has_every_row() {
        let v = serde_json::json!({"rmse": 1.5, "mae": 1.0, "naive_rmse": 2.0, "naive_mae": 1.5,
            "seasonal_naive_rmse": 3.0, "seasonal_naive_mae": 2.5, "season": 12, "windows": 10, "extra": 7,
            "network": "stacked GRU"});
        let t = super::render(&v);
        assert!(
            t.contains("  stacked GRU ")
                && t.contains("naive (last value)")
                && t.contains("seasonal naive (12)")
        );
        assert!(
            t.contains("extra: 7") && !t.contains("rmse:") && !t.contains("network:"),
            "{t}"
        );
    }
}
