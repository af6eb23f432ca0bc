//! `guild lexicon`: check lexicon documents, validate a record against them, list them.
//!
//! A thin shell over `guild-lexicon`: every rule lives in the library, so the CLI and the
//! library accept and refuse exactly the same things.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;
use guild_lexicon::{BUILTIN_ORIGIN, Registry, ValidationError};

/// The largest record file `validate` reads (a record is at most 1 MB as DAG-CBOR; its JSON
/// form is larger, with base64 bytes and escapes).
const MAX_RECORD_FILE: u64 = 4 * 1024 * 1024;

/// `guild lexicon …`
#[derive(Debug, Subcommand)]
pub enum LexiconCmd {
    /// Check lexicon documents and their cross-references; prints one line per problem and
    /// exits non-zero if there is any. With no paths, checks Guild's built-in set.
    Check {
        /// Lexicon directories (searched recursively for *.json, skipping `examples/`) and
        /// files. References to Guild's built-in lexicons resolve.
        paths: Vec<PathBuf>,
    },
    /// Validate one record, given in the JSON form of the data model; its `$type` selects the
    /// lexicon. Prints `ok: …`, or the path into the record and the rule broken (exit 1).
    Validate {
        /// Extension lexicon directories (or files) to load over the built-in set, as a node
        /// would at start.
        #[arg(long = "lexicons", value_name = "DIR", num_args = 1..)]
        lexicons: Vec<PathBuf>,
        /// The record, as JSON (`{"$type": "coop.guild.data.text", …}`).
        #[arg(value_name = "FILE.json")]
        file: Option<PathBuf>,
    },
    /// List the loaded lexicons: NSID, kind and origin.
    List {
        /// Extension lexicon directories (or files) to load over the built-in set.
        #[arg(long = "lexicons", value_name = "DIR", num_args = 1..)]
        lexicons: Vec<PathBuf>,
    },
}

/// Runs a `guild lexicon` command.
pub fn run(cmd: LexiconCmd) -> Result<ExitCode> {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    run_with(cmd, &mut stdout.lock(), &mut stderr.lock())
}

/// Runs a command, writing its result to `out` and warnings to `err`.
fn run_with(cmd: LexiconCmd, out: &mut dyn Write, err: &mut dyn Write) -> Result<ExitCode> {
    match cmd {
        LexiconCmd::Check { paths } if paths.is_empty() => check_builtin(out),
        LexiconCmd::Check { paths } => check_paths(&paths, out, err),
        LexiconCmd::Validate { mut lexicons, file } => {
            // `--lexicons` takes one or more values, so in `--lexicons DIR FILE.json` clap
            // hands the record file to it: the last value is then the file.
            let file = match file {
                Some(f) => f,
                None => lexicons.pop().context(
                    "give the record file: guild lexicon validate [--lexicons DIR…] FILE.json",
                )?,
            };
            validate(&lexicons, &file, out, err)
        }
        LexiconCmd::List { lexicons } => list(&lexicons, out, err),
    }
}

fn finish(lines: &[String], ok: String, out: &mut dyn Write) -> Result<ExitCode> {
    if lines.is_empty() {
        writeln!(out, "{ok}")?;
        return Ok(ExitCode::SUCCESS);
    }
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(ExitCode::FAILURE)
}

fn check_builtin(out: &mut dyn Write) -> Result<ExitCode> {
    let (registry, errors) = Registry::builtin_with_errors();
    let mut lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.extend(
        registry
            .check()
            .iter()
            .map(|p| format!("{}: {p}", p.origin)),
    );
    let ok = format!(
        "ok: {} built-in lexicons, every reference resolves",
        registry.len()
    );
    finish(&lines, ok, out)
}

/// Checks the documents at `paths` as one set. References to Guild's built-in lexicons resolve
/// (extensions build on them); a document that redefines a built-in one is checked as written
/// (so `guild lexicon check lexicons/` checks the working copy), with a note that a node would
/// refuse it as an extension unless it is identical.
fn check_paths(paths: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> Result<ExitCode> {
    let mut lines = Vec::new();
    let mut registry = Registry::new();
    let mut checked = BTreeSet::new();
    for path in paths {
        if !path.exists() {
            lines.push(format!("{}: no such file or directory", path.display()));
            continue;
        }
        let (sources, errors) = guild_lexicon::fs::read_sources(path);
        lines.extend(errors.iter().map(ToString::to_string));
        for (origin, text) in sources {
            match registry.add(origin.clone(), &text) {
                Ok(nsid) => {
                    checked.insert(nsid);
                }
                Err(e) => lines.push(format!("{origin}: {e}")),
            }
        }
    }
    let builtin = Registry::builtin();
    for (doc, origin) in builtin.iter() {
        if registry.contains(doc.id.as_str()) {
            if builtin.get(doc.id.as_str()) != registry.get(doc.id.as_str()) {
                writeln!(
                    err,
                    "note: {}: redefines the built-in {}; a node refuses it as an extension \
                     (a breaking change needs a new NSID)",
                    registry.origin(doc.id.as_str()).unwrap_or_default(),
                    doc.id
                )?;
            }
        } else {
            // Only to resolve references; never reported on.
            let _ = registry.add_doc(origin, doc.clone());
        }
    }
    for problem in registry.check() {
        if checked.contains(&problem.nsid) {
            lines.push(format!("{}: {problem}", problem.origin));
        }
    }
    let n = checked.len();
    let ok = format!(
        "ok: {n} {} checked, every reference resolves",
        if n == 1 { "lexicon" } else { "lexicons" }
    );
    finish(&lines, ok, out)
}

fn load(lexicons: &[PathBuf], err: &mut dyn Write) -> Result<Registry> {
    for dir in lexicons {
        if !dir.exists() {
            anyhow::bail!("{}: no such file or directory", dir.display());
        }
    }
    let (registry, errors) = Registry::load_dirs(lexicons);
    for e in errors {
        writeln!(err, "warning: lexicon refused: {e}")?;
    }
    Ok(registry)
}

fn validate(
    lexicons: &[PathBuf],
    file: &Path,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<ExitCode> {
    let registry = load(lexicons, err)?;
    let name = file.display();
    let len = std::fs::metadata(file)
        .with_context(|| format!("cannot read {name}"))?
        .len();
    anyhow::ensure!(
        len <= MAX_RECORD_FILE,
        "{name} is {len} bytes; a record file is at most {MAX_RECORD_FILE}"
    );
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {name}"))?;
    let json: serde_json::Value = match serde_json::from_str(&text) {
        Ok(j) => j,
        Err(e) => {
            return finish(
                &[format!("{name}: not valid JSON: {e}")],
                String::new(),
                out,
            );
        }
    };
    let value = match guild_core::data::from_json(&json) {
        Ok(v) => v,
        Err(e) => {
            return finish(
                &[format!("{name}: {}: {}", e.path, e.reason)],
                String::new(),
                out,
            );
        }
    };
    let line = match registry.validate_record(&value) {
        Ok(()) => match guild_core::data::encode_record(&value) {
            Ok((cid, bytes)) => {
                let ty = json["$type"].as_str().unwrap_or_default();
                let ok = format!("ok: {name} is a valid {ty} ({} bytes, {cid})", bytes.len());
                return finish(&[], ok, out);
            }
            Err(e) => format!("{name}: {e}"),
        },
        Err(ValidationError::UnknownType(t)) => format!(
            "{name}: no loaded lexicon defines {t} (give its directory with --lexicons DIR)"
        ),
        Err(e) => format!("{name}: {e}"),
    };
    finish(&[line], String::new(), out)
}

fn list(lexicons: &[PathBuf], out: &mut dyn Write, err: &mut dyn Write) -> Result<ExitCode> {
    let registry = load(lexicons, err)?;
    let width = registry
        .iter()
        .map(|(d, _)| d.id.as_str().len())
        .max()
        .unwrap_or(0);
    for (doc, origin) in registry.iter() {
        let origin = if registry.is_builtin(doc.id.as_str()) {
            BUILTIN_ORIGIN
        } else {
            origin
        };
        writeln!(
            out,
            "{:<width$}  {:<14}  {origin}",
            doc.id.as_str(),
            doc.kind()
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    //! The CLI against the same inputs as the library's tests: the AT interop fixtures, Guild's
    //! set, and the worked example of `lexicons/README.md`, exactly as written there.

    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: LexiconCmd,
    }

    /// The workspace root: the nearest ancestor with `lexicons/` and `fixtures/`.
    fn root() -> PathBuf {
        let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        while !(dir.join("lexicons").is_dir() && dir.join("fixtures").is_dir()) {
            assert!(dir.pop(), "no workspace root");
        }
        dir
    }

    /// Runs `guild lexicon ARGS…` from the workspace root: (exit code, stdout, stderr).
    fn guild(args: &[&str]) -> (bool, String, String) {
        let cli = Cli::try_parse_from(std::iter::once("lexicon").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let cmd = match cli.cmd {
            LexiconCmd::Check { paths } => LexiconCmd::Check {
                paths: paths.into_iter().map(|p| root().join(p)).collect(),
            },
            LexiconCmd::Validate { lexicons, file } => LexiconCmd::Validate {
                lexicons: lexicons.into_iter().map(|p| root().join(p)).collect(),
                file: file.map(|p| root().join(p)),
            },
            LexiconCmd::List { lexicons } => LexiconCmd::List {
                lexicons: lexicons.into_iter().map(|p| root().join(p)).collect(),
            },
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(cmd, &mut out, &mut err).unwrap();
        let root = format!("{}/", root().display());
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap().replace(&root, "");
        (code == ExitCode::SUCCESS, text(out), text(err))
    }

    #[test]
    fn builtin_set_and_lexicons_dir_are_clean() {
        let (ok, out, _) = guild(&["check"]);
        assert!(ok, "{out}");
        assert!(out.starts_with("ok: "), "{out}");
        let (ok, out, err) = guild(&["check", "lexicons/"]);
        assert!(ok, "{out}");
        assert_eq!(err, "");
    }

    #[test]
    fn check_reports_one_line_per_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.json"), r#"{"lexicon": 1, "id": "x"}"#).unwrap();
        std::fs::write(
            dir.path().join("dangling.json"),
            r##"{"lexicon": 1, "id": "org.example.dangling", "defs": {"main": {"type": "object",
                "properties": {"a": {"type": "ref", "ref": "org.example.nowhere#thing"}}}}}"##,
        )
        .unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = run_with(
            LexiconCmd::Check {
                paths: vec![dir.path().to_path_buf()],
            },
            &mut out,
            &mut err,
        )
        .unwrap();
        assert_eq!(code, ExitCode::FAILURE);
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(
            lines[0].contains("bad.json: not a valid lexicon: /id: invalid nsid"),
            "{out}"
        );
        assert!(lines[1].contains("dangling.json: org.example.dangling /defs/main/properties/a/ref: refers to org.example.nowhere#thing"), "{out}");
    }

    #[test]
    fn interop_catalog_through_the_cli() {
        let (ok, out, _) = guild(&["check", "fixtures/atproto-interop/lexicon/catalog"]);
        assert!(!ok);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("app.bsky.actor.defs#preferences"), "{out}");

        let text = std::fs::read_to_string(
            root().join("fixtures/atproto-interop/lexicon/record-data-valid.json"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for (i, case) in cases.iter().enumerate() {
            let file = dir.path().join(format!("valid-{i}.json"));
            std::fs::write(&file, case["data"].to_string()).unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = run_with(
                LexiconCmd::Validate {
                    lexicons: vec![root().join("fixtures/atproto-interop/lexicon/catalog")],
                    file: Some(file),
                },
                &mut out,
                &mut err,
            )
            .unwrap();
            let out = String::from_utf8(out).unwrap();
            assert!(code == ExitCode::SUCCESS, "{}: {out}", case["name"]);
        }
        let text = std::fs::read_to_string(
            root().join("fixtures/atproto-interop/lexicon/record-data-invalid.json"),
        )
        .unwrap();
        let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(cases.len(), 50);
        for (i, case) in cases.iter().enumerate() {
            let file = dir.path().join(format!("invalid-{i}.json"));
            std::fs::write(&file, case["data"].to_string()).unwrap();
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let code = run_with(
                LexiconCmd::Validate {
                    lexicons: vec![root().join("fixtures/atproto-interop/lexicon/catalog")],
                    file: Some(file),
                },
                &mut out,
                &mut err,
            )
            .unwrap();
            assert_eq!(code, ExitCode::FAILURE, "{} accepted", case["name"]);
            let out = String::from_utf8(out).unwrap();
            assert_eq!(out.lines().count(), 1, "{out}");
        }
    }

    /// The commands of `lexicons/README.md`'s worked example, exactly as written there.
    #[test]
    fn readme_worked_example() {
        let readme = std::fs::read_to_string(root().join("lexicons/README.md")).unwrap();
        let commands: Vec<&str> = readme
            .lines()
            .filter_map(|l| l.strip_prefix("$ guild lexicon "))
            .collect();
        assert!(commands.len() >= 3, "{commands:?}");
        let mut mismatches = Vec::new();
        for command in commands {
            let args: Vec<&str> = command.split_whitespace().collect();
            let (ok, out, _) = guild(&args);
            // The README shows each command's output right after it.
            let shown = readme
                .split(&format!("$ guild lexicon {command}\n"))
                .nth(1)
                .and_then(|rest| rest.split("```").next())
                .unwrap_or_default();
            if out.trim_end() != shown.trim_end() || ok == command.contains("invalid") {
                mismatches.push(format!("$ guild lexicon {command}\n{out}(exit ok: {ok})"));
            }
        }
        assert!(
            mismatches.is_empty(),
            "README differs:\n{}",
            mismatches.join("\n")
        );
    }

    #[test]
    fn validate_names_the_path_and_rule_or_the_unknown_type() {
        let (ok, out, _) = guild(&["validate", "lexicons/examples/transcript.invalid.json"]);
        assert!(!ok);
        assert!(
            out.contains("no loaded lexicon defines org.example.audio.transcript"),
            "{out}"
        );
    }

    #[test]
    fn list_shows_builtin_and_extensions() {
        let (ok, out, _) = guild(&["list", "--lexicons", "lexicons/examples/lexicons"]);
        assert!(ok);
        assert!(
            out.lines()
                .any(|l| l.starts_with("coop.guild.data.text ") && l.ends_with("built-in")),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.starts_with("org.example.audio.transcript ") && l.contains("record")),
            "{out}"
        );
        // XRPC methods with their kind.
        let kind_of = |nsid: &str| {
            out.lines()
                .find(|l| l.split_whitespace().next() == Some(nsid))
                .and_then(|l| l.split_whitespace().nth(1))
                .map(str::to_owned)
        };
        for (nsid, kind) in [
            ("coop.guild.collective.createInvite", "procedure"),
            ("coop.guild.collective.getStatus", "query"),
            ("coop.guild.repo.createRecord", "procedure"),
            ("coop.guild.sync.getRepo", "query"),
            ("coop.guild.node.getStatus", "query"),
            ("coop.guild.feed.subscribe", "subscription"),
            ("coop.guild.repo.defs", "defs"),
        ] {
            assert_eq!(kind_of(nsid).as_deref(), Some(kind), "{nsid}: {out}");
        }
    }

    #[test]
    fn lexicons_option_takes_several_directories_then_the_file() {
        let cli =
            Cli::try_parse_from(["lexicon", "validate", "--lexicons", "a", "b", "r.json"]).unwrap();
        let LexiconCmd::Validate { lexicons, file } = cli.cmd else {
            panic!()
        };
        // clap gives every value to --lexicons; run() takes the last one as the file.
        assert_eq!(lexicons.len() + usize::from(file.is_some()), 3);
        let cli =
            Cli::try_parse_from(["lexicon", "validate", "r.json", "--lexicons", "a"]).unwrap();
        let LexiconCmd::Validate { lexicons, file } = cli.cmd else {
            panic!()
        };
        assert_eq!((lexicons.len(), file), (1, Some(PathBuf::from("r.json"))));
    }
}
