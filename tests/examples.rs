//! Every example runs to completion and says `ok` (cargo builds the examples for `cargo test`).

use std::path::PathBuf;
use std::process::Command;

fn example(name: &str) -> PathBuf {
    // target/<profile>/deps/examples-HASH → target/<profile>/examples/NAME
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().join("examples").join(name)
}

fn runs_ok(name: &str, args: &[&str]) {
    let path = example(name);
    assert!(path.exists(), "{path:?} not built");
    let out = Command::new(&path).args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("ok")), "{name}: {stdout}");
}

#[test]
fn echo_server_and_client() {
    runs_ok("echo", &[]);
}

#[test]
fn chat_between_several_nodes() {
    runs_ok("chat", &[]);
}

#[test]
fn an_actor_subscribed_to_inbound_messages() {
    runs_ok("subscriber", &[]);
}

#[test]
fn a_connection_driven_with_actor_messages() {
    runs_ok("actor_messages", &[]);
}

#[test]
fn stats_and_a_metrics_scrape() {
    runs_ok("stats_metrics", &[]);
}
