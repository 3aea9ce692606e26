//! The server against its own OpenAPI document, checked by an independent tool:
//! schemathesis (PyPI; scripts/setup.sh installs it) generates valid and invalid requests
//! for every REST route of /openapi.json and checks that no answer is a server error, every
//! status, content type and body is the documented one, and invalid input is refused.
//!
//! One check is left out: `positive_data_acceptance` reports reversed ranges (`start` after
//! `end`) as wrongly refused, a rule between two parameters that OpenAPI cannot state and
//! that the API refuses on purpose (HTTP 400).

mod support;

use std::process::Command;

use support::http::Serving;
use support::rows::fill;
use support::scratch;

fn schemathesis_available() -> bool {
    Command::new("python3")
        .args(["-m", "schemathesis.cli", "--version"])
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn the_api_conforms_to_its_openapi_document() {
    if !support::tool_present(schemathesis_available(), "schemathesis") {
        return;
    }
    let dir = scratch();
    let db = dir.path().join("store.db");
    fill(&db);
    let server = Serving::start(
        dir.path(),
        &[
            "serve",
            "--store",
            db.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let out = Command::new("python3")
        .args(["-m", "schemathesis.cli", "run"])
        .arg(format!("http://{}/openapi.json", server.addr))
        .args([
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            // WebSocket routes answer 101 to an upgrade, which schemathesis cannot make.
            "--exclude-path-regex",
            "^/ws",
            "--max-examples",
            "40",
            "--seed",
            "20261125",
            "--no-color",
        ])
        .current_dir(dir.path())
        .output()
        .expect("schemathesis runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = report
        .lines()
        .rev()
        .find(|l| l.contains("passed") || l.contains("generated"))
        .unwrap_or_default();
    eprintln!("schemathesis: {summary}");
}
