//! `tezos-p2p codec` on the command line: every vector decodes from a file to JSON and encodes
//! back to the same bytes; bad input exits 1 with one line naming the field and byte offset.

mod common;

use common::bin;
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/p2p_messages.json")).unwrap();
    serde_json::from_str::<Value>(&text).unwrap()["vectors"].as_array().unwrap().clone()
}

/// Runs the codec: exit code, stdout, stderr.
fn codec(args: &[&str]) -> (Option<i32>, String, String) {
    let out = bin().arg("codec").args(args).output().unwrap();
    (out.status.code(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn envelope(v: &Value) -> String {
    let hex = v["hex"].as_str().unwrap();
    if v["kind"] == "body" {
        let body = hex::decode(hex).unwrap();
        let tag = v["tag"].as_u64().unwrap() as u16;
        let mut f = ((body.len() + 2) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&tag.to_be_bytes());
        f.extend_from_slice(&body);
        hex::encode(f)
    } else {
        hex.to_owned()
    }
}

#[test]
fn every_vector_decodes_from_a_file_and_encodes_back_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut round_trips = 0;
    for v in vectors() {
        let name = v["name"].as_str().unwrap();
        let hex = envelope(&v);
        let bin_file = dir.path().join(format!("{name}.bin"));
        std::fs::write(&bin_file, hex::decode(&hex).unwrap()).unwrap();
        let hex_file = dir.path().join(format!("{name}.hex"));
        std::fs::write(&hex_file, format!("{hex}\n")).unwrap();
        let (code, json, err) = codec(&["decode", "p2p_message", &format!("@{}", bin_file.display())]);
        if name.starts_with("invalid_") || name == "swap_request_max_point" {
            assert_eq!(code, Some(1), "{name}: {json}");
            assert_eq!(err.lines().count(), 1, "{name}: {err}");
            assert!(err.starts_with("error: p2p_message: ") && err.contains("at byte"), "{name}: {err}");
            continue;
        }
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(json.lines().count(), 1, "one object per decode");
        let j: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(j["kind"], v["tag_name"], "{name}");
        // Raw bytes and hex text in a file decode alike.
        let (_, again, _) = codec(&["decode", "p2p_message", &format!("@{}", hex_file.display())]);
        assert_eq!(again, json, "{name}");
        let json_file = dir.path().join(format!("{name}.json"));
        std::fs::write(&json_file, &json).unwrap();
        let (code, out, err) = codec(&["encode", "p2p_message", &format!("@{}", json_file.display())]);
        assert_eq!(code, Some(0), "{name}: {err}");
        assert_eq!(out.trim(), hex, "{name}: decode then encode gives the same bytes");
        round_trips += 1;
    }
    assert_eq!(round_trips, 14);
}

#[test]
fn the_json_names_octez_fields_and_computes_hashes() {
    let v = vectors().into_iter().find(|v| v["name"] == "current_head_known_valid_1").unwrap();
    let (code, json, _) = codec(&["decode", "p2p_message", v["hex"].as_str().unwrap()]);
    assert_eq!(code, Some(0));
    let j: Value = serde_json::from_str(&json).unwrap();
    assert!(json.starts_with("{\"kind\":\"Current_head\""), "kind comes first: {json}");
    assert_eq!(j["chain_id"], "NetXgtSLGNJvNye");
    let h = &j["current_block_header"];
    assert_eq!(h["hash"], "BMQ7YKpUfFZsDm9EizMyxHPpcE41YmWNCaTc7eSjj5xDKVYPTEG");
    assert_eq!(h["predecessor"], "BKtKWtqPoR4RauWDA17sCu8akbcGuGzn2CshpAemQDHUPRxiE7P");
    assert_eq!(h["timestamp"], "2019-03-18T08:30:38Z");
    assert_eq!(h["fitness"], serde_json::json!(["00", "0000000000714aa0"]));
    assert_eq!(j["current_mempool"]["known_valid"][0], "op94YRm1eaKKdYTXHmw2wA1mQAJgQQCK1GYq6UQYDvfVJ8DttzW");
}

#[test]
fn bad_input_exits_1_with_one_line_naming_field_and_offset() {
    // Get_block_headers with 11 hashes: over octez's list bound of 10.
    let mut eleven = ((2 + 4 + 11 * 32) as u32).to_be_bytes().to_vec();
    eleven.extend_from_slice(&0x20u16.to_be_bytes());
    eleven.extend_from_slice(&((11 * 32) as u32).to_be_bytes());
    eleven.extend_from_slice(&[0xab; 11 * 32]);
    let eleven = hex::encode(eleven);
    let cases: [(&str, &str); 6] = [
        ("zz00", "invalid hex"),
        // Truncated: the size says 6 bytes follow, 4 do.
        ("0000000600138ece", "at byte 0"),
        // An unknown tag.
        ("000000020099", "unknown tag 0x99"),
        // Located at the 11th hash: 4 + 2 + 4 + 10 · 32.
        (&eleven, "get_block_headers: more than 10 elements (at byte 330)"),
        // A Current_head whose header claims 4 GiB.
        (
            "0000000c00148eceda2fffffffff0000",
            "current_block_header: size 4294967295 exceeds the limit 8388608 (at byte 10)",
        ),
        // Trailing bytes after a Bootstrap.
        ("0000000400020000", "extra bytes"),
    ];
    for (input, expect) in cases {
        let (code, out, err) = codec(&["decode", "p2p_message", input]);
        assert_eq!(code, Some(1), "{input}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{input}: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(err.contains(expect), "{input}: {err:?} lacks {expect:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // JSON input: the field is named.
    let (code, _, err) = codec(&["encode", "p2p_message", r#"{"kind":"Get_current_head","get_current_head":"NetX"}"#]);
    assert_eq!(code, Some(1));
    assert!(err.contains("get_current_head"), "{err}");
    let (code, _, err) = codec(&["encode", "p2p_message", "{not json"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("invalid JSON"), "{err}");
    let (code, _, err) = codec(&["decode", "no_such_encoding", "00"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("p2p_message"), "the known encodings are listed: {err}");
    let (code, _, err) = codec(&["decode", "p2p_message", "@/nonexistent/file"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot read"), "{err}");
    // The handshake encodings and the hex itself locate their errors too.
    let located: [(&str, &str, &str); 7] = [
        ("metadata", "00", "private_node: needed 1 bytes, 0 left (at byte 1)"),
        ("metadata", "000000", "extra bytes after connection metadata (at byte 2)"),
        ("ack", "0100", "nack motive: needed 2 bytes, 1 left (at byte 1)"),
        ("ack", "02", "unknown tag 0x2 for ack (at byte 0)"),
        ("connection_message", "2604", "public_key: needed 32 bytes, 0 left (at byte 2)"),
        ("p2p_message", "00000002000", "byte at offset 5 is incomplete"),
        ("p2p_message", "0000000200zz", "(digit 10, byte at offset 5)"),
    ];
    for (encoding, input, expect) in located {
        let (code, out, err) = codec(&["decode", encoding, input]);
        assert_eq!(code, Some(1), "{encoding} {input}: {out}{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{encoding} {input}: {err:?} lacks {expect:?}");
    }
    // A field the value does not have is refused, as octez's JSON decoding does, wherever it is.
    for (encoding, json, field) in [
        ("p2p_message", r#"{"kind":"Bootstrap","extra":1}"#, "$: unknown field `extra`"),
        ("metadata", r#"{"disable_mempool":false,"private_node":true,"privat_node":1}"#, "unknown field `privat_node`"),
        ("ack", r#"{"kind":"Ack","nack_motive":1}"#, "unknown field `nack_motive`"),
    ] {
        let (code, out, err) = codec(&["encode", encoding, json]);
        assert_eq!(code, Some(1), "{json}: {out}");
        assert!(err.contains(field), "{json}: {err:?} lacks {field:?}");
    }
    let header = vectors().into_iter().find(|v| v["name"] == "block_header_level_28014").unwrap();
    let (code, json, _) = codec(&["decode", "block_header", header["hex"].as_str().unwrap()]);
    assert_eq!(code, Some(0));
    let mut json: Value = serde_json::from_str(&json).unwrap();
    json["timestamp_typo"] = 1.into();
    let (code, _, err) = codec(&["encode", "block_header", &json.to_string()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown field `timestamp_typo`"), "{err}");
}

#[test]
fn list_names_every_encoding_and_each_round_trips() {
    let (code, out, _) = codec(&["list"]);
    assert_eq!(code, Some(0));
    let names: Vec<&str> = out.lines().filter_map(|l| l.split_whitespace().next()).collect();
    for n in [
        "p2p_message",
        "block_header",
        "operation",
        "mempool",
        "block_locator",
        "protocol",
        "connection_message",
        "metadata",
        "ack",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    let header = vectors().into_iter().find(|v| v["name"] == "block_header_level_28014").unwrap();
    let operation = vectors().into_iter().find(|v| v["name"] == "operation_body").unwrap();
    let samples = [
        ("block_header", header["hex"].as_str().unwrap().to_owned()),
        ("operation", operation["hex"].as_str().unwrap().to_owned()),
        ("mempool", "000000000000000400000000".to_owned()),
        ("metadata", "00ff".to_owned()),
        ("ack", "00".to_owned()),
        ("ack", "ff".to_owned()),
        ("ack", format!("010001{:08x}{}", 18, hex::encode(b"\0\0\0\x0e127.0.0.1:9732"))),
        (
            "connection_message",
            // Port 9732, key, stamp, nonce, "TEZOS_MAINNET", ddb 2, p2p 1.
            format!(
                "2604{}{}{}0000000d{}00020001",
                "11".repeat(32),
                "22".repeat(24),
                "33".repeat(24),
                hex::encode("TEZOS_MAINNET")
            ),
        ),
        ("protocol", format!("0011{:08x}{:08x}{}00{:08x}{}", 4 + 1 + 1 + 4 + 3, 1, "41", 3, hex::encode("let"))),
    ];
    for (enc, hex) in samples {
        let (code, json, err) = codec(&["decode", enc, &hex]);
        assert_eq!(code, Some(0), "{enc} {hex}: {err}");
        let (code, back, err) = codec(&["encode", enc, json.trim()]);
        assert_eq!(code, Some(0), "{enc}: {err}");
        assert_eq!(back.trim(), hex, "{enc}");
    }
}
