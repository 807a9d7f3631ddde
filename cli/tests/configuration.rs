//! docs/configuration.md against the code: every flag of every command (read from `framescale
//! <command> --help`) is documented in that command's section, nothing documented is gone, and
//! every key of the metrics file (read from the parser's own "expected one of" list at each
//! level) is in the metrics file's table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::process::Command;

use framescale_adapter::config::MetricsConfig;

fn doc() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap()
}

fn help(command: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(command)
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// The `--flags` of an option list (each option line starts with `-x, --flag` or `--flag`).
fn flags(help: &str) -> BTreeSet<String> {
    help.lines()
        .map(str::trim_start)
        .filter_map(|line| {
            let line = line
                .strip_prefix("-")
                .and_then(|l| l.split_once(", "))
                .map_or(line, |(_, rest)| rest);
            let name = line.strip_prefix("--")?;
            let end = name
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .unwrap_or(name.len());
            Some(name[..end].to_owned())
        })
        .filter(|f| f != "help" && f != "version")
        .collect()
}

/// The text of the section `## title`, up to the next `## `.
fn section<'a>(doc: &'a str, title: &str) -> &'a str {
    let start = doc
        .find(&format!("\n## {title}\n"))
        .unwrap_or_else(|| panic!("docs/configuration.md has no section \"## {title}\""));
    let rest = &doc[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

/// The flags a section's table documents (its rows' first cells).
fn documented(section: &str) -> BTreeSet<String> {
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `--"))
        .map(|l| l[..l.find('`').unwrap()].to_owned())
        .collect()
}

/// The subcommands `framescale --help` lists.
fn commands() -> Vec<String> {
    let help = help(&[]);
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_flag_of_every_command_is_documented() {
    let doc = doc();
    let global = flags(&help(&[]));
    assert_eq!(documented(section(&doc, "Every command")), global);
    let commands = commands();
    assert!(commands.len() >= 7, "{commands:?}");
    for command in commands {
        let flags: BTreeSet<String> = flags(&help(&[&command]))
            .difference(&global)
            .cloned()
            .collect();
        let documented = documented(section(&doc, &format!("framescale {command}")));
        let missing: Vec<_> = flags.difference(&documented).collect();
        let gone: Vec<_> = documented.difference(&flags).collect();
        assert!(
            missing.is_empty(),
            "framescale {command}: not in docs/configuration.md: {missing:?}"
        );
        assert!(
            gone.is_empty(),
            "framescale {command}: documented but no longer a flag: {gone:?}"
        );
    }
}

/// The keys allowed at `path` of the metrics file, from the parser's error for an unknown one
/// ("unknown field `x`, expected one of `a`, `b`" or "expected `a`").
fn keys_at(path: &[String]) -> Vec<String> {
    let mut yaml = String::new();
    for (depth, key) in path.iter().enumerate() {
        let _ = writeln!(yaml, "{}{key}:", "  ".repeat(depth));
    }
    let _ = writeln!(yaml, "{}no_such_key: 1", "  ".repeat(path.len()));
    let error = MetricsConfig::parse(&yaml)
        .expect_err("an unknown key is refused")
        .to_string();
    let expected = error
        .split_once(", expected ")
        .unwrap_or_else(|| panic!("{error}"))
        .1;
    let expected = expected.split(" at line").next().unwrap();
    let expected = expected.strip_prefix("one of ").unwrap_or(expected);
    expected
        .split(", ")
        .map(|k| k.trim_matches('`').to_owned())
        .collect()
}

/// The keys whose values are tables of keys.
const TABLES: [&str; 7] = [
    "metrics",
    "metrics.latency",
    "metrics.frame",
    "metrics.gpu",
    "metrics.score",
    "score",
    "score.holds",
];

#[test]
fn every_key_of_the_metrics_file_is_documented() {
    let doc = doc();
    let table = section(&doc, "The metrics file");
    let mut leaves = Vec::new();
    let mut walk: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = walk.pop() {
        for key in keys_at(&path) {
            let mut child = path.clone();
            child.push(key);
            if TABLES.contains(&child.join(".").as_str()) {
                walk.push(child);
            } else {
                leaves.push(child.join("."));
            }
        }
    }
    assert!(leaves.len() >= 25, "{leaves:?}");
    for key in &leaves {
        assert!(
            table.contains(&format!("| `{key}` |")),
            "docs/configuration.md: the metrics file key {key} is not documented"
        );
    }
    let documented = table.lines().filter(|l| l.starts_with("| `")).count();
    assert_eq!(
        documented,
        leaves.len(),
        "documented keys that are not keys: {leaves:?}"
    );
}

/// `framescale adapter` runs `framescale-adapter` (the adapter alone) when it lies beside it, and
/// both take the same flags.
#[test]
fn framescale_adapter_is_the_adapter_alone_with_the_same_flags() {
    let version = Command::new(env!("CARGO_BIN_EXE_framescale"))
        .args(["adapter", "--version"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        format!("framescale-adapter {}", env!("CARGO_PKG_VERSION")),
        "framescale adapter execs framescale-adapter"
    );
    let alone = Command::new(env!("CARGO_BIN_EXE_framescale-adapter"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(alone.status.success());
    let alone = flags(&String::from_utf8(alone.stdout).unwrap());
    assert!(
        alone.contains("prometheus-url") && alone.contains("log-format"),
        "{alone:?}"
    );
    assert_eq!(alone, flags(&help(&["adapter"])));
}
