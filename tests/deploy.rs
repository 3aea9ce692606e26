//! The deployment files: `docker-compose.yml` is valid for docker-compose (Debian's package;
//! no daemon needed) with the example environment and has the whole stack with its start
//! order, every pipeline the stack runs validates and is in the image, and secrets come from
//! the environment.

mod support;

use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_compose_stack_is_valid_and_its_pipelines_validate() {
    let present = Command::new("docker-compose")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !support::tool_present(present, "docker-compose") {
        return;
    }
    let out = Command::new("docker-compose")
        .current_dir(root())
        .args([
            "--env-file",
            ".env.example",
            "-f",
            "docker-compose.yml",
            "config",
        ])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "docker-compose config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for service in [
        "kafka",
        "timescaledb",
        "migrate",
        "engine",
        "api",
        "prometheus",
        "grafana",
    ] {
        assert!(
            config.contains(&format!("\n  {service}:\n")),
            "service {service} in:\n{config}"
        );
    }
    for order in ["service_healthy", "service_completed_successfully"] {
        assert!(config.contains(order), "start order ({order})");
    }
    // The API's WebSocket streams come from the engine's topics.
    assert!(
        config.contains("MARKETFLOW_LIVE: kafka://kafka:9092"),
        "the api service reads the live feed from Kafka:\n{config}"
    );
    // Without the password the stack refuses to start, rather than using a default.
    let dir = support::scratch();
    let empty = support::write(dir.path(), "empty.env", "");
    let out = Command::new("docker-compose")
        .current_dir(root())
        .env("POSTGRES_PASSWORD", "")
        .args([
            "--env-file",
            empty.to_str().unwrap(),
            "-f",
            "docker-compose.yml",
            "config",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("POSTGRES_PASSWORD"));

    // The pipelines the engine may run are in the image and valid.
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("COPY pipelines /etc/marketflow/pipelines"));
    let env = std::fs::read_to_string(root().join(".env.example")).unwrap();
    let compose = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut pipelines: Vec<String> = env
        .lines()
        .chain(compose.lines())
        .filter_map(|l| l.split("/etc/marketflow/").nth(1))
        .map(|rest| rest.trim_end_matches(['}', '"', ']', ' ']).to_owned())
        .collect();
    pipelines.sort();
    pipelines.dedup();
    assert!(pipelines.len() >= 2, "{pipelines:?}");
    for pipeline in &pipelines {
        let out = support::marketflow()
            .current_dir(root())
            .args(["validate", pipeline])
            .env("TWELVEDATA_API_KEY", "a-key")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{pipeline}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn logs_can_be_json_and_the_address_comes_from_the_environment() {
    let dir = support::scratch();
    support::write(
        dir.path(),
        "p.yaml",
        "pipeline: tiny\nsources:\n  t: {type: synthetic, symbols: [A], count: 100}\nsinks:\n  out: {type: null, from: [t]}\n",
    );
    let out = support::marketflow()
        .current_dir(dir.path())
        .args(["--log-format", "json", "run", "p.yaml"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }

    // `serve` listens where MARKETFLOW_LISTEN says (port 0: a free one).
    let db = dir.path().join("empty.db");
    let serving = support::http::Serving::start_with_env(
        dir.path(),
        &["serve", "--store", db.to_str().unwrap()],
        &[("MARKETFLOW_LISTEN", "127.0.0.1:0")],
    );
    let answer = support::http::block_on(support::http::get(serving.addr, "/health"));
    assert!(
        answer.status == 200 || answer.status == 503,
        "{}",
        answer.status
    );
    serving.interrupt();
}
