//! `guild value`: the exact command shapes of issue 16, run as a process.

use std::path::Path;
use std::process::Command;

fn guild(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_guild"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write(dir: &Path, name: &str, lines: &[serde_json::Value]) -> String {
    let p = dir.join(name);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn values(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn knn_shapley_prints_one_value_per_training_line_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let train: Vec<_> = (0..12)
        .map(|i| {
            serde_json::json!({"id": format!("r{i}"), "label": if i % 3 == 0 { serde_json::json!("cat") } else { serde_json::json!(7) }, "vector": [i as f64, (i % 4) as f64]})
        })
        .collect();
    let test = vec![
        serde_json::json!({"id": "q1", "label": "cat", "vector": [0.5, 0.0]}),
        serde_json::json!({"id": "q2", "label": 7, "vector": [5.0, 1.0]}),
    ];
    let (tr, te) = (
        write(dir.path(), "train.jsonl", &train),
        write(dir.path(), "test.jsonl", &test),
    );
    let (ok, out, err) = guild(&[
        "value",
        "knn-shapley",
        "--train",
        &tr,
        "--test",
        &te,
        "--k",
        "3",
    ]);
    assert!(ok, "{err}");
    let v = values(&out);
    assert_eq!(v.len(), 12);
    for (i, line) in v.iter().enumerate() {
        assert_eq!(line["id"], format!("r{i}"));
        assert!(line["value"].is_f64());
    }
    // Efficiency: the values sum to U(D), a mean of match fractions over 2 test points of
    // K = 3, so a multiple of 1/6 in [0, 1].
    let sum: f64 = v.iter().map(|l| l["value"].as_f64().unwrap()).sum();
    assert!(
        (sum * 6.0 - (sum * 6.0).round()).abs() < 1e-9 && (0.0..=1.0).contains(&sum),
        "{sum}"
    );

    // Groups, exact: one line per group in order of first appearance.
    let grouped: Vec<_> = train
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut l = l.clone();
            l["group"] = serde_json::json!(["b", "a", "c"][i % 3]);
            l
        })
        .collect();
    let g = write(dir.path(), "grouped.jsonl", &grouped);
    for method in ["exact", "sample", "loo", "ablation"] {
        let (ok, out, err) = guild(&[
            "value", "groups", "--train", &g, "--test", &te, "--k", "3", "--method", method,
        ]);
        assert!(ok, "{method}: {err}");
        let v = values(&out);
        let names: Vec<_> = v
            .iter()
            .map(|l| l["group"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["b", "a", "c"], "{method}");
        assert_eq!(v[0].get("bound").is_some(), method == "sample", "{method}");
        if method == "exact" {
            let total: f64 = v.iter().map(|l| l["value"].as_f64().unwrap()).sum();
            assert!(
                (total - sum).abs() < 1e-9,
                "group values sum to U(D): {total} vs {sum}"
            );
        }
    }
}

#[test]
fn texts_are_featurized_and_a_baseline_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let docs = [
        ("rivers flood in spring", "nature"),
        ("the market fell sharply", "finance"),
        ("spring rain swells the river", "nature"),
        ("stocks and bonds rallied", "finance"),
    ];
    let train: Vec<_> = docs
        .iter()
        .enumerate()
        .map(|(i, (t, l))| serde_json::json!({"id": i.to_string(), "label": l, "text": t}))
        .collect();
    let test = vec![serde_json::json!({"id": "q", "label": "nature", "text": "a river in spring"})];
    let base = vec![serde_json::json!({"id": "b", "label": "nature", "text": "the river rose"})];
    let (tr, te, b) = (
        write(dir.path(), "train.jsonl", &train),
        write(dir.path(), "test.jsonl", &test),
        write(dir.path(), "base.jsonl", &base),
    );
    let (ok, out, err) = guild(&[
        "value",
        "knn-shapley",
        "--train",
        &tr,
        "--test",
        &te,
        "--k",
        "1",
        "--metric",
        "cosine",
    ]);
    assert!(ok, "{err}");
    let without: Vec<f64> = values(&out)
        .iter()
        .map(|l| l["value"].as_f64().unwrap())
        .collect();
    let (ok, out, err) = guild(&[
        "value",
        "knn-shapley",
        "--train",
        &tr,
        "--test",
        &te,
        "--k",
        "1",
        "--metric",
        "cosine",
        "--baseline",
        &b,
    ]);
    assert!(ok, "{err}");
    let with: Vec<f64> = values(&out)
        .iter()
        .map(|l| l["value"].as_f64().unwrap())
        .collect();
    // Alone, the nearest nature text carries the whole utility; over a baseline that already
    // answers the test point, the collective adds less.
    assert!(
        (without.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "{without:?}"
    );
    assert!(with.iter().sum::<f64>() < 1.0 - 1e-9, "{with:?}");
}

#[test]
fn bad_lines_are_named_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let te = write(
        dir.path(),
        "test.jsonl",
        &[serde_json::json!({"label": 1, "vector": [0.0]})],
    );
    for (line, why) in [
        (
            r#"{"id": "a", "label": 1.5, "vector": [1]}"#,
            "a string or an integer",
        ),
        (
            r#"{"id": "a", "label": 1, "vector": ["x"]}"#,
            "invalid type",
        ),
        (
            r#"{"id": "a", "label": 1}"#,
            "no \"vector\" and no \"text\"",
        ),
        (
            r#"{"id": "a", "label": 1, "vector": [1, 2]}"#,
            "a vector of 2 numbers",
        ),
        (r#"not json"#, "train.jsonl:2"),
    ] {
        let tr = dir.path().join("train.jsonl");
        std::fs::write(
            &tr,
            format!("{{\"id\": \"z\", \"label\": 1, \"vector\": [0]}}\n{line}\n"),
        )
        .unwrap();
        let (ok, out, err) = guild(&[
            "value",
            "knn-shapley",
            "--train",
            tr.to_str().unwrap(),
            "--test",
            &te,
            "--k",
            "1",
        ]);
        assert!(!ok && out.is_empty(), "{line}: {out}");
        assert!(err.contains(why), "{line}: {err}");
    }
}

/// The pinned pyDVL interpreter: `GUILD_PYDVL_PYTHON` (set by `.ci/run`, which installs
/// `bench/requirements-valuation.txt` with `bench/setup-venv.sh`), else the venv that script
/// makes under this build's target directory if it exists, or `Err` with the reason.
fn pydvl_python() -> Result<std::path::PathBuf, String> {
    if let Some(p) = std::env::var_os("GUILD_PYDVL_PYTHON").filter(|p| !p.is_empty()) {
        return Ok(p.into());
    }
    // This test runs from <target>/<profile>/deps/.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let venv = exe
        .ancestors()
        .nth(3)
        .map(|target| target.join("pyvenv-valuation/bin/python"));
    match venv {
        Some(p) if p.exists() => Ok(p),
        _ => Err(
            "GUILD_PYDVL_PYTHON is not set and there is no target/pyvenv-valuation \
                  (.ci/run installs pyDVL 0.10 with bench/setup-venv.sh and sets it)"
                .into(),
        ),
    }
}

/// Issue 16: the same values as pyDVL 0.10's `KNNShapleyValuation` to 1e-6, on the data of
/// `bench/knn_shapley_vs_pydvl.py` at its small size (2 000 × 100, d = 32, K = 5, L2).
#[test]
fn knn_shapley_agrees_with_pydvl() {
    let python = match pydvl_python() {
        Ok(p) => p,
        Err(why) if std::env::var_os("GUILD_REQUIRE_PYDVL").is_none() => {
            eprintln!("skipped: {why}");
            return;
        }
        Err(why) => panic!("GUILD_REQUIRE_PYDVL=1: {why}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../bench/knn_shapley_vs_pydvl.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .args(["--guild", env!("CARGO_BIN_EXE_guild")])
        .args(["--n-train", "2000", "--n-test", "100", "--dim", "32"])
        .args(["--tolerance", "1e-6", "--out-dir"])
        .arg(dir.path())
        .output()
        .expect("runs the pyDVL comparison");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench/knn_shapley_vs_pydvl.py exited {:?}\n{stdout}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    assert_eq!(summary["compared"], "guild vs pydvl", "{summary}");
    assert_eq!(summary["pass"], true, "{summary}");
    assert!(
        summary["max_abs_diff"].as_f64().unwrap() <= 1e-6,
        "{summary}"
    );
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
}
