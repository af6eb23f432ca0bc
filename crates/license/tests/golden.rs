//! Golden files: every standard template in every format, plus its summary and full terms,
//! under `tests/golden/<template-id>.<ext>`. `GUILD_BLESS=1 cargo test -p guild-license
//! --test golden` rewrites them; otherwise they are checked byte for byte.

use std::path::PathBuf;

use guild_license::{Format, Publication, standard, text};

fn check(name: &str, actual: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("GUILD_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(_) => Some(format!("{name}: differs (GUILD_BLESS=1 to accept)")),
        Err(e) => Some(format!("{name}: {e} (GUILD_BLESS=1 to write)")),
    }
}

#[test]
fn every_template_in_every_format() {
    let p = Publication::example();
    let mut failures = Vec::new();
    for c in standard() {
        for f in Format::ALL {
            let out = f.emit(&c, &p).unwrap();
            failures.extend(check(&format!("{}.{}", c.id, f.ext()), &out));
        }
        failures.extend(check(
            &format!("{}.summary.txt", c.id),
            &(text::summary(&c) + "\n"),
        ));
        failures.extend(check(&format!("{}.terms.txt", c.id), &text::terms(&c)));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
