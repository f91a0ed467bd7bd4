//! The `identity` subcommands, run as a user would: exit codes, one-line reasons, files.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;

use common::{bin, octez_peer, write_temp};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn stderr_line(out: &std::process::Output) -> String {
    let s = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(s.trim_end().lines().count(), 1, "one line expected: {s:?}");
    assert!(!s.contains("panicked") && !s.contains("RUST_BACKTRACE"), "{s}");
    s
}

#[test]
fn vector_identities_pass_check_at_their_level_and_not_above() {
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for v in vectors().iter().filter(|v| v["kind"] == "identity") {
        let id = v["id"].as_str().unwrap();
        let path = write_temp(&dir, &format!("{id}.json"), &v["inputs"]["identity_json"].to_string());
        let level = v["expected"]["derived_pow_leading_zero_bits"].as_u64().unwrap();
        let ok =
            bin().args(["identity", "check"]).arg(&path).args(["--difficulty", &level.to_string()]).output().unwrap();
        assert!(ok.status.success(), "{id}: {}", String::from_utf8_lossy(&ok.stderr));
        let above = bin()
            .args(["identity", "check"])
            .arg(&path)
            .args(["--difficulty", &(level + 1).to_string()])
            .output()
            .unwrap();
        assert_eq!(above.status.code(), Some(1), "{id}");
        assert!(stderr_line(&above).contains("proof of work below the expected level"), "{id}");
        let show = bin().args(["identity", "show", "--json"]).arg(&path).output().unwrap();
        let shown: Value = serde_json::from_slice(&show.stdout).unwrap();
        assert_eq!(shown["peer_id"], v["inputs"]["identity_json"]["peer_id"], "{id}");
        assert_eq!(shown["pow_level"].as_u64(), Some(level), "{id}");
        assert!(shown.get("secret_key").is_none(), "show must not print the secret key");
        checked += 1;
    }
    assert_eq!(checked, 13);
}

#[test]
fn each_kind_of_tampering_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let v = vectors().into_iter().find(|v| v["id"] == "identity-octez-tezt-1").unwrap();
    let good = v["inputs"]["identity_json"].clone();
    let other =
        vectors().into_iter().find(|v| v["id"] == "identity-octez-tezt-2").unwrap()["inputs"]["identity_json"].clone();
    let mut cases: Vec<(&str, String)> = vec![("bad JSON", "{\"peer_id\": ".into()), ("bad JSON", "[]".into())];
    let mut pid = good.clone();
    pid["peer_id"] = other["peer_id"].clone();
    cases.push(("peer id mismatch", pid.to_string()));
    let mut sk = good.clone();
    sk["secret_key"] = other["secret_key"].clone();
    cases.push(("key mismatch", sk.to_string()));
    let mut stamp = good.clone();
    stamp["proof_of_work_stamp"] = Value::String("00".repeat(24));
    cases.push(("proof of work below the expected level", stamp.to_string()));
    for (n, (reason, text)) in cases.iter().enumerate() {
        let path = write_temp(&dir, &format!("t{n}.json"), text);
        let out = bin().args(["identity", "check", "--difficulty", "24"]).arg(&path).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{reason}");
        let line = stderr_line(&out);
        assert!(line.contains(reason), "{reason}: {line}");
    }
    let missing = bin().args(["identity", "check"]).arg(dir.path().join("nope.json")).output().unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr_line(&missing).contains("unreadable"));
    let usage = bin().args(["identity", "check", "x.json", "--difficulty", "300"]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn generated_identity_is_accepted_by_the_independent_checker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let out = bin()
        .args(["identity", "generate", "--difficulty", "8", "--threads", "2", "--output"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&path).unwrap();
    let json: Value = serde_json::from_str(&text).unwrap();
    let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), json["peer_id"].as_str().unwrap());
    // Field order as octez writes it.
    let pos = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(
        pos("peer_id") < pos("public_key")
            && pos("public_key") < pos("secret_key")
            && pos("secret_key") < pos("proof_of_work_stamp")
    );

    let checker = octez_peer().args(["check-identity"]).arg(&path).args(["--difficulty", "8"]).output().unwrap();
    assert!(
        checker.status.success(),
        "{}{}",
        String::from_utf8_lossy(&checker.stdout),
        String::from_utf8_lossy(&checker.stderr)
    );
    let verdict: Value = serde_json::from_slice(checker.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(verdict["ok"], Value::Bool(true));
    assert_eq!(verdict["peer_id"], json["peer_id"]);
    // Our own check agrees.
    assert!(bin().args(["identity", "check", "--difficulty", "8"]).arg(&path).status().unwrap().success());
}

#[test]
fn generate_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_temp(&dir, "identity.json", "precious");
    let out = bin().args(["identity", "generate", "--difficulty", "0", "--output"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_line(&out).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    let forced =
        bin().args(["identity", "generate", "--difficulty", "0", "--force", "--output"]).arg(&path).output().unwrap();
    assert!(forced.status.success());
    assert!(bin().args(["identity", "check"]).arg(&path).status().unwrap().success());
}

#[test]
fn interrupting_generation_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.json");
    let mut child = bin()
        .args(["identity", "generate", "--difficulty", "60", "--threads", "1", "--output"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The first stderr line says the search started, after the Ctrl-C handler is installed.
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.starts_with("searching a stamp"), "{line}");
    let ok = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(ok.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{rest}");
    assert!(rest.contains("interrupted: no identity written"), "{rest}");
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary file left");
}
