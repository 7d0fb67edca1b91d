//! The Keras-style summary table: layer, output shape, parameter count, totals.

use std::fmt;

use super::Model;

/// `12345` as `12,345`.
fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The size of `n` f32 weights, in Keras' units.
fn bytes(n: usize) -> String {
    let b = (n * 4) as f64;
    if b < 1024.0 {
        format!("{b:.2} B")
    } else if b < 1024.0 * 1024.0 {
        format!("{:.2} KB", b / 1024.0)
    } else if b < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MB", b / (1024.0 * 1024.0))
    } else {
        format!("{:.2} GB", b / (1024.0 * 1024.0 * 1024.0))
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (w1, w2, w3) = (33usize, 24usize, 15usize);
        let ts = self.timesteps.map_or("None".to_string(), |t| t.to_string());
        writeln!(f, "Model: \"{}\"", self.spec.name)?;
        let line = |l: &str, m: &str, r: &str, fill: &str| {
            format!(
                "{l}{}{m}{}{m}{}{r}",
                fill.repeat(w1),
                fill.repeat(w2),
                fill.repeat(w3)
            )
        };
        writeln!(f, "{}", line("┏", "┳", "┓", "━"))?;
        writeln!(
            f,
            "┃ {:<a$}┃ {:<b$}┃ {:>c$} ┃",
            "Layer (type)",
            "Output Shape",
            "Param #",
            a = w1 - 1,
            b = w2 - 1,
            c = w3 - 2
        )?;
        writeln!(f, "{}", line("┡", "╇", "┩", "━"))?;
        for (l, s) in self.layers.iter().zip(&self.shapes) {
            let shape = if s.seq {
                format!("(None, {ts}, {})", s.width)
            } else {
                format!("(None, {})", s.width)
            };
            writeln!(
                f,
                "│ {:<a$}│ {:<b$}│ {:>c$} │",
                format!("{} ({})", l.name(), l.kind()),
                shape,
                thousands(super::layer_params(&**l)),
                a = w1 - 1,
                b = w2 - 1,
                c = w3 - 2
            )?;
        }
        writeln!(f, "{}", line("└", "┴", "┘", "─"))?;
        let n = self.param_count();
        let trainable = self.trainable_param_count();
        writeln!(f, " Total params: {} ({})", thousands(n), bytes(n))?;
        writeln!(
            f,
            " Trainable params: {} ({})",
            thousands(trainable),
            bytes(trainable)
        )?;
        write!(
            f,
            " Non-trainable params: {} ({})",
            thousands(n - trainable),
            bytes(n - trainable)
        )
    }
}
