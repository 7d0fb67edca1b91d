//! The README's commands cannot rot: every command it shows runs here as written.
//!
//! - `$ stacklstm ...` lines run in a temp dir, in order, on generated files of the names the
//!   README uses (a `load.csv` with the README's row count, a small `shakes.txt`). A run whose
//!   shown output begins with `error: ` must fail with that line; any other must succeed. Every
//!   shown line without a decimal number (file names, counts, table headers, messages) must
//!   be in what the command printed; generated text is only checked for its prompt.
//! - `cargo run --release -- ARGS` runs `stacklstm ARGS`; for the demo, the lines of the
//!   README's demo output without a decimal number must be in what it printed.
//! - `cargo run ... --example NAME` names an example that `crates/stacklstm/tests/examples.rs`
//!   runs, and `bash scripts/X.sh` a script that exists and parses; `pip install .` is how
//!   `scripts/python-tests.sh` installs the Python package it tests.
//! - The command list names exactly the commands of `stacklstm --help`, each with a `--help`.
//!
//! Any other command in a ```sh or ```text block fails the test until it is covered here.
//! Inline flags of the prose (`--layers 50,50 --dense 16 ...`, `--cell gru`, `--level word`) run
//! in the last test.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::{ok, run_in, write, Noise};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md")
}

/// A fenced code block: its language and its lines.
struct Block {
    lang: String,
    lines: Vec<String>,
    /// The `## ` heading the block is under.
    section: String,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut open: Option<Block> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("```") {
            match open.take() {
                Some(b) => out.push(b),
                None => {
                    open = Some(Block {
                        lang: rest.trim().to_string(),
                        lines: Vec::new(),
                        section: section.clone(),
                    })
                }
            }
            continue;
        }
        match &mut open {
            Some(b) => b.lines.push(line.to_string()),
            None => {
                if let Some(h) = line.strip_prefix("## ") {
                    section = h.trim().to_string();
                }
            }
        }
    }
    out
}

/// A shown `$ stacklstm` command: its arguments (after `stacklstm`) and the output shown
/// under it.
struct Shown {
    args: Vec<String>,
    output: Vec<String>,
}

/// The `$ ` commands of a block (a trailing `\` continues a command on the next line).
fn shown_commands(b: &Block) -> Vec<Shown> {
    let mut out: Vec<Shown> = Vec::new();
    let mut lines = b.lines.iter();
    while let Some(line) = lines.next() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            let mut cmd = cmd.to_string();
            while let Some(head) = cmd.strip_suffix('\\') {
                let next = lines.next().expect("a continued command goes on");
                cmd = format!("{head} {}", next.trim());
            }
            let words = shell_words(&cmd);
            assert_eq!(words[0], "stacklstm", "README: '$ {cmd}'");
            out.push(Shown {
                args: words[1..].to_vec(),
                output: Vec::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.output.push(line.clone());
        }
    }
    out
}

/// Splits a command line into words: whitespace-separated, with "double" or 'single' quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.get_or_insert_with(String::new).push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    assert!(quote.is_none(), "unclosed quote in '{line}'");
    words.extend(word);
    words
}

/// Whether a shown output line is a fact to find in the real output: not an ellipsis or a
/// `(...)` remark, and without a decimal number (losses and errors vary with the data).
fn checkable(line: &str) -> bool {
    let t = line.trim();
    let decimal = t
        .as_bytes()
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit());
    let remark = t.is_empty() || t == "..." || (t.starts_with('(') && t.ends_with(')'));
    !remark && !decimal
}

/// The shown lines missing from `printed` (stdout and stderr together).
fn missing(shown: &[String], printed: &str) -> Vec<String> {
    shown
        .iter()
        .filter(|l| checkable(l))
        .filter(|l| !printed.lines().any(|p| p == l.as_str()))
        .cloned()
        .collect()
}

/// Hourly load with a temperature column: the README's `load.csv` (600 rows, so that its
/// window counts, 115 test windows and 547 in all, are the README's).
fn load_csv() -> String {
    let mut noise = Noise::new(5);
    let mut s = String::from("date,load,temperature\n");
    for i in 0..600 {
        let day = std::f64::consts::TAU * (i % 24) as f64 / 24.0;
        let temp = 12.0 + 7.0 * (day - 2.0).sin() + 0.5 * noise.next();
        let load = 60.0 + 1.5 * temp + 12.0 * (day + 1.0).sin() + 2.0 * noise.next();
        writeln!(
            s,
            "2024-{:02}-{:02} {:02}:00,{load:.2},{temp:.2}",
            1 + i / (24 * 31),
            1 + (i / 24) % 31,
            i % 24
        )
        .unwrap();
    }
    s
}

/// A few kB of play-like text with the speakers the README prompts with.
fn shakes_txt() -> String {
    let speakers = ["ROMEO:", "JULIET:", "NURSE:", "MERCUTIO:"];
    let words = [
        "the", "night", "is", "fair", "and", "my", "love", "doth", "speak", "of", "thee", "what",
        "light", "through", "yonder", "window", "breaks", "sweet", "good", "sorrow",
    ];
    let mut noise = Noise::new(9);
    let mut pick = |n: usize| ((noise.next() + 1.0) / 2.0 * n as f64) as usize % n;
    let mut s = String::new();
    for i in 0..120 {
        s.push_str(speakers[i % speakers.len()]);
        s.push('\n');
        for _ in 0..2 {
            let line: Vec<&str> = (0..6).map(|_| words[pick(words.len())]).collect();
            s.push_str(&line.join(" "));
            s.push_str(".\n");
        }
        s.push('\n');
    }
    s
}

/// Writes the data file `name` the README's commands read.
fn make_data(dir: &Path, name: &str) {
    if dir.join(name).exists() {
        return;
    }
    let text = match name {
        "load.csv" => load_csv(),
        "shakes.txt" => shakes_txt(),
        other => panic!("the README reads {other}: teach tests/readme.rs to make it"),
    };
    write(dir, name, text);
}

/// What is wrong with one shown command's run in `dir`, if anything.
fn check_shown(dir: &Path, shown: &Shown) -> Option<String> {
    let args: Vec<&str> = shown.args.iter().map(String::as_str).collect();
    for pair in args.windows(2) {
        if pair[0] == "--data" {
            make_data(dir, pair[1]);
        }
    }
    let out = run_in(dir, &args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let printed = format!("{stdout}{stderr}");
    let mut problems = Vec::new();
    let fails = shown.output.iter().any(|l| l.starts_with("error: "));
    let code = out.status.code();
    if fails && code != Some(1) {
        problems.push(format!("exit code {code:?}, the README shows an error"));
    }
    if !fails && code != Some(0) {
        problems.push(format!("exit code {code:?}: {stderr}"));
    }
    if args[0] == "generate" {
        // Sampled text: only the prompt it starts with is a fact.
        let prompt = args
            .windows(2)
            .find(|w| w[0] == "--prompt")
            .map_or("", |w| w[1]);
        if !stdout.starts_with(prompt) || stdout.trim().len() <= prompt.len() {
            problems.push(format!("does not continue the prompt '{prompt}': {stdout}"));
        }
    } else {
        let gone = missing(&shown.output, &printed);
        if !gone.is_empty() {
            problems.push(format!("shown lines not printed: {gone:?}"));
        }
    }
    (!problems.is_empty()).then(|| {
        format!(
            "$ stacklstm {}: {}\n--- printed:\n{printed}",
            args.join(" "),
            problems.join("; ")
        )
    })
}

#[test]
fn every_shown_stacklstm_command_runs_as_shown() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut ran = Vec::new();
    let mut problems = Vec::new();
    for b in blocks(&readme()) {
        for shown in shown_commands(&b) {
            ran.push(shown.args.join(" "));
            problems.extend(check_shown(d, &shown));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The README's walkthrough: a series trained, evaluated and refused a forecast; a
    // language model trained and sampled.
    for sub in [
        "train series",
        "evaluate",
        "forecast",
        "train text",
        "generate",
    ] {
        assert!(
            ran.iter().any(|c| c.starts_with(sub)),
            "no `$ stacklstm {sub}` in the README: {ran:?}"
        );
    }
    assert!(d.join("loss.svg").is_file(), "the README's --plot loss.svg");
}

/// The compiled examples `crates/stacklstm/tests/examples.rs` runs.
fn tested_examples() -> String {
    std::fs::read_to_string(repo().join("crates/stacklstm/tests/examples.rs"))
        .expect("crates/stacklstm/tests/examples.rs")
}

#[test]
fn every_cargo_and_script_command_is_covered() {
    let text = readme();
    let examples = tested_examples();
    let demo_output: Vec<String> = blocks(&text)
        .into_iter()
        .find(|b| b.section == "The demo" && b.lang == "text")
        .expect("a text block of the demo's output under '## The demo'")
        .lines;
    let mut problems = Vec::new();
    let mut seen = 0;
    for b in blocks(&text) {
        let commands = b.lang == "sh" || b.lines.iter().any(|l| l.starts_with("cargo "));
        if !commands {
            continue;
        }
        for line in &b.lines {
            // A trailing `# comment` is not part of the command.
            let cmd = line.split(" #").next().unwrap_or("").trim();
            if cmd.is_empty() {
                continue;
            }
            seen += 1;
            let words = shell_words(cmd);
            let w: Vec<&str> = words.iter().map(String::as_str).collect();
            match w.as_slice() {
                ["cargo", "run", "--release", "--", args @ ..] => {
                    let tmp = tempfile::tempdir().unwrap();
                    let out = run_in(tmp.path(), args);
                    let printed = format!("{}{}", ok(&out), String::from_utf8_lossy(&out.stderr));
                    if args == ["demo"] {
                        let gone = missing(&demo_output, &printed);
                        if !gone.is_empty() {
                            problems.push(format!(
                                "{cmd}: the README's demo output has lines it did not print: {gone:?}\n{printed}"
                            ));
                        }
                        for f in ["sunspots.safetensors", "sunspots_forecast.png"] {
                            if !tmp.path().join("demo-out").join(f).is_file() {
                                problems.push(format!("{cmd}: no demo-out/{f}"));
                            }
                        }
                    }
                }
                ["cargo", "run", "--release", "-p", "stacklstm", "--example", name] => {
                    let src = repo().join(format!("crates/stacklstm/examples/{name}.rs"));
                    if !src.is_file() {
                        problems.push(format!("{cmd}: no {}", src.display()));
                    }
                    if !examples.contains(&format!("name: \"{name}\"")) {
                        problems.push(format!(
                            "{cmd}: crates/stacklstm/tests/examples.rs does not run it"
                        ));
                    }
                }
                ["pip", "install", "."] => {
                    // The Python tests install the package this very way (into their venv)
                    // before running: scripts/python-tests.sh.
                    let script = std::fs::read_to_string(repo().join("scripts/python-tests.sh"))
                        .unwrap_or_default();
                    let builds = repo().join("pyproject.toml").is_file()
                        && script.contains("-m pip install")
                        && script.contains("--force-reinstall . >&2");
                    if !builds {
                        problems.push(format!(
                            "{cmd}: scripts/python-tests.sh does not install the package with it"
                        ));
                    }
                }
                ["bash", script] => {
                    // The test command itself: it cannot run inside the tests; it exists
                    // and parses.
                    let path = repo().join(script);
                    let parses = std::process::Command::new("bash")
                        .arg("-n")
                        .arg(&path)
                        .status()
                        .is_ok_and(|s| s.success());
                    if !parses {
                        problems.push(format!("{cmd}: {} missing or not bash", path.display()));
                    }
                }
                _ => problems.push(format!(
                    "README command not covered by tests/readme.rs: {cmd}"
                )),
            }
        }
    }
    assert!(
        seen >= 6,
        "only {seen} commands found in README's sh blocks"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The top-level commands of `stacklstm --help` (without `help`).
fn listed_in_help(dir: &Path) -> Vec<String> {
    let help = ok(&run_in(dir, &["--help"]));
    help.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

#[test]
fn the_command_list_is_the_binary_s() {
    let tmp = tempfile::tempdir().unwrap();
    let list = blocks(&readme())
        .into_iter()
        .find(|b| {
            b.lang == "text"
                && !b.lines.is_empty()
                && b.lines.iter().all(|l| l.starts_with("stacklstm "))
        })
        .expect("the README's command list");
    let mut top = Vec::new();
    for line in &list.lines {
        // "stacklstm train series   description": the command ends at two spaces.
        let (cmd, desc) = line.split_once("  ").expect("a command and what it does");
        assert!(!desc.trim().is_empty(), "{line}");
        let mut args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
        top.push(args[0].to_string());
        args.push("--help");
        ok(&run_in(tmp.path(), &args));
    }
    top.dedup();
    let mut help = listed_in_help(tmp.path());
    help.sort();
    top.sort();
    assert_eq!(top, help, "README's command list vs stacklstm --help");
}

#[test]
fn the_prose_flags_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    make_data(d, "load.csv");
    make_data(d, "shakes.txt");
    // "Both `train` modes take the architecture from flags (`--layers 50,50 --dense 16
    // --dropout 0.2 --recurrent-dropout 0.1`)", with checkpoints every N epochs.
    let arch = [
        "--layers",
        "50,50",
        "--dense",
        "16",
        "--dropout",
        "0.2",
        "--recurrent-dropout",
        "0.1",
    ];
    let mut args = vec![
        "train",
        "series",
        "--data",
        "load.csv",
        "--target",
        "load",
        "--date-column",
        "date",
        "--epochs",
        "2",
        "--checkpoint",
        "ck.safetensors",
        "--checkpoint-every",
        "2",
        "--out",
        "m.safetensors",
    ];
    args.extend(arch);
    let out = run_in(d, &args);
    ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.matches("(LSTM)").count() == 2 && summary.contains("(None, 16)"),
        "{summary}"
    );
    assert!(d.join("ck.safetensors").is_file());
    // "`--cell gru` makes every recurrent layer a GRU instead of an LSTM".
    let mut args = vec![
        "train",
        "series",
        "--data",
        "load.csv",
        "--target",
        "load",
        "--date-column",
        "date",
        "--epochs",
        "1",
        "--cell",
        "gru",
        "--out",
        "g.safetensors",
    ];
    args.extend(arch);
    let out = run_in(d, &args);
    ok(&out);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(
        summary.matches("(GRU)").count() == 2 && !summary.contains("(LSTM)"),
        "{summary}"
    );
    // "`train text --level word` trains on words instead".
    let r = ok(&run_in(
        d,
        &[
            "train",
            "text",
            "--data",
            "shakes.txt",
            "--level",
            "word",
            "--layers",
            "16",
            "--seq-len",
            "8",
            "--batch-size",
            "8",
            "--epochs",
            "1",
            "--quiet",
            "--json",
            "--out",
            "w.safetensors",
        ],
    ));
    let r: serde_json::Value = serde_json::from_str(&r).unwrap();
    // 20 words, 4 speakers and <eos> (and the words followed by '.').
    let vocab = r["vocab_size"].as_u64().unwrap();
    assert!(vocab > 20 && vocab < 60, "{r}");
}
