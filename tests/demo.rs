//! `tezos-p2p demo`, the README's first command, as a user runs it (short, on a free port).

mod common;

use common::bin;

#[test]
fn demo_runs_end_to_end_and_summarises() {
    let out =
        bin().args(["demo", "--duration", "2", "--peers", "3", "--metrics-addr", "127.0.0.1:0"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("metrics: http://127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("Nack(Too_many_connections) with 3 alternative points"), "{stdout}");
    assert!(stdout.contains("rejected: NotEnoughProofOfWork"), "{stdout}");
    assert!(stdout.contains("handshakes accepted by the hub         3"), "{stdout}");
    assert!(stdout.contains("hub upload rate"), "{stdout}");
    // Not a terminal: plain progress lines.
    assert!(stdout.contains("hub total: in"), "{stdout}");
}

#[test]
fn demo_fails_clearly_when_the_metrics_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = bin().args(["demo", "--duration", "1", "--metrics-addr", &addr]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot serve metrics on") && err.contains("in use"), "{err}");
    assert!(!err.contains("panicked"));
}
