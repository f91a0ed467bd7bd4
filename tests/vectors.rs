//! Every known answer of `tests/data/vectors.json` (a copy of the shared vectors), by kind.
//! Each assertion names the vector; the total checked is asserted so no entry is skipped.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::BytesMut;
use serde_json::Value;
use tezos_p2p::crypto::{
    blake2b_128, blake2b_256, generate_nonces, ChannelKey, CryptoBackend, Nonce, Opener, PeerId, PublicKey, SecretKey,
};
use tezos_p2p::handshake::{ExpectConnectionMessage, LocalConfig};
use tezos_p2p::identity::Identity;
use tezos_p2p::message::{Encoding, P2pMessage};
use tezos_p2p::pow::{check_proof_of_work, pow_level, PowTarget, Stamp};
use tezos_p2p::stat::MovingAverage;
use tezos_p2p::wire::{AckMessage, ChunkDecoder, ConnectionMessage, ConnectionMetadata, Metadata, NackMotive, Reader};

fn h(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn arr<const N: usize>(v: &Value) -> [u8; N] {
    h(v).try_into().expect("length")
}

fn check_decoded(id: &str, msg: &ConnectionMessage, want: &Value) {
    assert_eq!(msg.port.unwrap_or(0), want["port"].as_u64().unwrap() as u16, "{id} port");
    assert_eq!(msg.public_key.as_bytes().to_vec(), h(&want["public_key_hex"]), "{id} pk");
    assert_eq!(msg.proof_of_work_stamp.as_bytes().to_vec(), h(&want["proof_of_work_stamp_hex"]), "{id} stamp");
    assert_eq!(msg.message_nonce.as_bytes().to_vec(), h(&want["message_nonce_hex"]), "{id} nonce");
    assert_eq!(msg.version.chain_name.as_bytes(), want["chain_name"].as_str().unwrap().as_bytes(), "{id} chain");
    assert_eq!(u64::from(msg.version.distributed_db_version), want["distributed_db_version"].as_u64().unwrap(), "{id}");
    assert_eq!(u64::from(msg.version.p2p_version), want["p2p_version"].as_u64().unwrap(), "{id}");
}

/// Seals `plaintext` as one wire chunk (`u16be E ‖ tag ‖ ct`) with `key` and `nonce`.
fn wire_chunk(key: &ChannelKey, nonce: &Nonce, plaintext: &[u8]) -> Vec<u8> {
    let mut out = ((16 + plaintext.len()) as u16).to_be_bytes().to_vec();
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(plaintext);
    key.seal_in_place(nonce, &mut out[2..]).unwrap();
    out
}

/// Checks one vector, computing every key and box with `backend`.
fn check(v: &Value, backend: CryptoBackend) {
    let id = v["id"].as_str().unwrap();
    let i = &v["inputs"];
    let e = &v["expected"];
    match v["kind"].as_str().unwrap() {
        "blake2b" => {
            let m = i["message_ascii"].as_str().unwrap().as_bytes();
            let got = match i["digest_size"].as_u64().unwrap() {
                32 => blake2b_256(&[m]).to_vec(),
                16 => blake2b_128(&[m]).to_vec(),
                other => panic!("{id}: digest size {other}"),
            };
            assert_eq!(got, h(&e["digest_hex"]), "{id}");
        }
        "le_int" => {
            // The PoW comparison reads the hash as a little-endian integer: a hash equal to the
            // vector's bytes must pass exactly the targets ≥ that integer. Check the conversion
            // through the decimal value with a big-integer-free comparison of the hex form.
            let bytes = h(&i["bytes_hex"]);
            let mut be = bytes.clone();
            be.reverse();
            let dec =
                e["integer_decimal"].as_str().map(str::to_owned).unwrap_or_else(|| e["integer_decimal"].to_string());
            assert_eq!(decimal_of_be(&be), dec, "{id}");
        }
        "nonce_incr" => {
            let n = Nonce::from_bytes(arr(&i["nonce_hex"]));
            assert_eq!(n.incremented().as_bytes().to_vec(), h(&e["incremented_hex"]), "{id}");
        }
        "gen_nonces" => {
            let (sent, recv) = (h(&i["sent_msg_hex"]), h(&i["recv_msg_hex"]));
            let n = generate_nonces(i["incoming"].as_bool().unwrap(), &sent, &recv);
            assert_eq!(n.local.as_bytes().to_vec(), h(&e["local_nonce_hex"]), "{id} local");
            assert_eq!(n.remote.as_bytes().to_vec(), h(&e["remote_nonce_hex"]), "{id} remote");
            check_decoded(id, &ConnectionMessage::decode(&sent).unwrap(), &e["derived_sent_decoded"]);
            check_decoded(id, &ConnectionMessage::decode(&recv).unwrap(), &e["derived_recv_decoded"]);
        }
        "precompute" => {
            let key = ChannelKey::precompute_with(
                backend,
                &PublicKey::from_bytes(arr(&i["remote_public_key_hex"])),
                &SecretKey::from_bytes(arr(&i["local_secret_key_hex"])),
            )
            .unwrap();
            assert_eq!(key.expose_secret().to_vec(), h(&e["channel_key_hex"]), "{id}");
        }
        "box_encrypt" => {
            let key = ChannelKey::from_bytes_with(backend, arr(&i["channel_key_hex"]));
            let nonce = Nonce::from_bytes(arr(&i["nonce_hex"]));
            let pt = h(&i["plaintext_hex"]);
            let mut buf = vec![0u8; 16];
            buf.extend_from_slice(&pt);
            key.seal_in_place(&nonce, &mut buf).unwrap();
            assert_eq!(buf, h(&e["tag_then_ciphertext_hex"]), "{id}");
            assert_eq!(buf[..16].to_vec(), h(&e["tag_hex"]), "{id} tag");
            assert_eq!(buf[16..].to_vec(), h(&e["ciphertext_hex"]), "{id} ciphertext");
            assert_eq!(wire_chunk(&key, &nonce, &pt), h(&e["derived_wire_chunk_hex"]), "{id} chunk");
        }
        "box_decrypt" => {
            let key = ChannelKey::from_bytes_with(backend, arr(&i["channel_key_hex"]));
            let nonce = Nonce::from_bytes(arr(&i["nonce_hex"]));
            let ct = h(&i["tag_then_ciphertext_hex"]);
            let mut buf = ct.clone();
            key.open_in_place(&nonce, &mut buf).unwrap();
            assert_eq!(buf[16..].to_vec(), h(&e["plaintext_hex"]), "{id}");
            // Through the streaming decoder as a wire chunk, and tampered.
            let mut wire = BytesMut::from(&((ct.len() as u16).to_be_bytes())[..]);
            wire.extend_from_slice(&ct);
            let mut d = ChunkDecoder::new(Opener::new(key.clone(), nonce));
            assert_eq!(d.decode(&mut wire.clone()).unwrap().unwrap().to_vec(), h(&e["plaintext_hex"]), "{id}");
            wire[2] ^= 1;
            let mut d = ChunkDecoder::new(Opener::new(key, nonce));
            assert!(d.decode(&mut wire).is_err(), "{id}: tampered chunk opened");
        }
        "chunk_derived" => {
            let key = ChannelKey::from_bytes_with(backend, arr(&i["channel_key_hex"]));
            let nonce = Nonce::from_bytes(arr(&i["nonce_hex"]));
            let chunk = wire_chunk(&key, &nonce, &h(&i["plaintext_hex"]));
            assert_eq!(chunk, h(&e["wire_chunk_hex"]), "{id}");
            let mut d = ChunkDecoder::new(Opener::new(key, nonce));
            assert_eq!(d.decode(&mut BytesMut::from(&chunk[..])).unwrap().unwrap().to_vec(), h(&i["plaintext_hex"]));
        }
        "pow_check" => {
            let pk = PublicKey::from_bytes(arr(&i["public_key_hex"]));
            let stamp = Stamp::from_bytes(arr(&i["proof_of_work_stamp_hex"]));
            let t = PowTarget::new(i["target_level"].as_f64().unwrap()).unwrap();
            assert_eq!(check_proof_of_work(&pk, &stamp, &t), e["valid"].as_bool().unwrap(), "{id}");
            assert_eq!(tezos_p2p::pow::pow_hash(&pk, &stamp).to_vec(), h(&e["derived_pow_hash_hex"]), "{id}");
            assert_eq!(
                u64::from(pow_level(&pk, &stamp)),
                e["derived_leading_zero_bits_of_le_integer"].as_u64().unwrap()
            );
            let t26 = PowTarget::new(26.0).unwrap();
            assert_eq!(check_proof_of_work(&pk, &stamp, &t26), e["derived_valid_at_26"].as_bool().unwrap(), "{id}");
        }
        "pow_targets" => {
            let targets = e["target_hex"].as_object().unwrap();
            assert_eq!(targets.len(), i["levels"].as_array().unwrap().len(), "{id}");
            for (level, want) in targets {
                let t = PowTarget::new(level.parse().unwrap()).unwrap();
                assert_eq!(t.to_be_bytes().to_vec(), h(want), "{id} level {level}");
            }
        }
        "peer_id" => {
            let pk = PublicKey::from_bytes(arr(&i["public_key_hex"]));
            assert_eq!(pk.peer_id().to_string(), e["peer_id_b58"].as_str().unwrap(), "{id}");
            assert_eq!(pk.peer_id().as_bytes().to_vec(), h(&e["derived_peer_id_raw_hex"]), "{id}");
            assert_eq!(e["peer_id_b58"].as_str().unwrap().parse::<PeerId>().unwrap(), pk.peer_id());
        }
        "identity" => {
            let text = i["identity_json"].to_string();
            let parsed = Identity::from_json(&text);
            let ok = e["peer_id_matches_public_key"].as_bool().unwrap()
                && e["public_key_matches_secret_key"].as_bool().unwrap();
            assert_eq!(parsed.is_ok(), ok, "{id}: {:?}", parsed.err());
            let ident = parsed.unwrap();
            assert_eq!(ident.secret_key.public_key_with(backend), ident.public_key, "{id}: {backend} public key");
            assert_eq!(ident.peer_id.as_bytes().to_vec(), h(&e["derived_peer_id_raw_hex"]), "{id}");
            assert_eq!(u64::from(ident.pow_level()), e["derived_pow_leading_zero_bits"].as_u64().unwrap(), "{id}");
            let valid: Vec<f64> = [0.0, 24.0, 26.0]
                .into_iter()
                .filter(|f| ident.check_pow(&PowTarget::new(*f).unwrap()).is_ok())
                .collect();
            let want: Vec<f64> =
                e["derived_valid_at_levels"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            assert_eq!(valid, want, "{id}");
            // Our writer's output reads back to the same identity.
            let back = Identity::from_json(&ident.to_json()).unwrap();
            assert_eq!(back.peer_id, ident.peer_id, "{id}");
        }
        "conn_msg_decode" => {
            let body = h(&i["body_hex"]);
            assert_eq!(body.len() as u64, i["body_len"].as_u64().unwrap(), "{id}");
            let msg = ConnectionMessage::decode_body(&body).unwrap();
            check_decoded(id, &msg, &e["decoded"]);
            let wire = msg.encode().unwrap();
            assert_eq!(wire, h(&e["derived_on_wire_hex"]), "{id}");
            assert_eq!(msg.public_key.peer_id().to_string(), e["derived_remote_peer_id"].as_str().unwrap());
            assert_eq!(
                u64::from(pow_level(&msg.public_key, &msg.proof_of_work_stamp)),
                e["derived_pow_leading_zero_bits"].as_u64().unwrap()
            );
            let t26 = PowTarget::new(26.0).unwrap();
            assert_eq!(
                check_proof_of_work(&msg.public_key, &msg.proof_of_work_stamp, &t26),
                e["derived_valid_at_26"].as_bool().unwrap(),
                "{id}"
            );
        }
        "handshake_capture" => replay_capture(id, i, e, backend),
        "ack_encoding" => {
            let bytes = h(&i["bytes_hex"]);
            let msg = AckMessage::decode(&bytes).unwrap();
            match (e["variant"].as_str().unwrap(), &msg) {
                ("Ack", AckMessage::Ack) | ("Nack_v_0", AckMessage::NackV0) => {}
                ("Nack", AckMessage::Nack { motive, alternative_points }) => {
                    assert_eq!(i64::from(motive.code()), e["motive_code"].as_i64().unwrap(), "{id}");
                    assert_eq!(motive.octez_name(), e["motive"].as_str().unwrap(), "{id}");
                    let want: Vec<&str> = e["points"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
                    let got: Vec<String> = alternative_points.iter().map(tezos_p2p::wire::point_text).collect();
                    assert_eq!(got, want, "{id}");
                    let len = u32::from_be_bytes(bytes[3..7].try_into().unwrap());
                    assert_eq!(u64::from(len), e["list_byte_length"].as_u64().unwrap(), "{id}");
                }
                (want, got) => panic!("{id}: expected {want}, got {got:?}"),
            }
            assert_eq!(msg.encode().unwrap(), bytes, "{id}: re-encoding");
        }
        "peer_message" => {
            if let Some(name) = i["message"].as_str() {
                let msg = match name {
                    "Bootstrap" => P2pMessage::Bootstrap,
                    other => panic!("{id}: unknown message {other}"),
                };
                let mut out = Vec::new();
                msg.encode(&mut out).unwrap();
                assert_eq!(out, h(&e["bytes_hex"]), "{id}");
                assert_eq!(
                    <P2pMessage>::decode(out.clone().into()).ok() == Some(msg),
                    e["valid"].as_bool().unwrap(),
                    "{id}"
                );
            } else if let Some(points) = e["points"].as_array() {
                let body = h(&i["body_hex"]);
                let mut r = Reader::new(&body);
                let mut got = Vec::new();
                while r.remaining() > 0 {
                    got.push(tezos_p2p::wire::point_text(&tezos_p2p::wire::decode_point(&mut r).unwrap()));
                }
                let want: Vec<&str> = points.iter().map(|p| p.as_str().unwrap()).collect();
                assert_eq!(got, want, "{id}");
                let env = h(&e["derived_full_envelope_hex"]);
                let msg = <P2pMessage>::decode(env.clone().into()).unwrap();
                let P2pMessage::Advertise(list) = &msg else { panic!("{id}: {msg:?}") };
                assert_eq!(list.len(), want.len());
                let mut out = Vec::new();
                msg.encode(&mut out).unwrap();
                assert_eq!(out, env, "{id}: re-encoding");
            } else {
                let bytes = h(&i["bytes_hex"]);
                let decoded = <P2pMessage>::frame_size(&bytes)
                    .ok()
                    .flatten()
                    .filter(|n| *n == bytes.len())
                    .and_then(|_| <P2pMessage>::decode(bytes.clone().into()).ok());
                assert_eq!(decoded.is_some(), e["valid"].as_bool().unwrap(), "{id}: {decoded:?}");
            }
        }
        "moving_average" => {
            let mut m = MovingAverage::default();
            assert_eq!(i["initial_average"].as_u64().unwrap(), 0, "{id}");
            let got: Vec<u64> = i["steps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    m.add(s["bytes_in_window"].as_u64().unwrap());
                    m.tick(s["elapsed_ms"].as_u64().unwrap());
                    m.average()
                })
                .collect();
            let want: Vec<u64> = e["averages"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            assert_eq!(got, want, "{id}");
        }
        other => panic!("{id}: unknown kind {other}: add it to tests/vectors.rs"),
    }
}

/// Replays a recorded real handshake through the state machine: our side is rebuilt from the
/// capture's secret key and connection message, so its output must match byte for byte.
fn replay_capture(id: &str, i: &Value, e: &Value, backend: CryptoBackend) {
    let sent = h(&i["sent_msg_hex"]);
    let recv = h(&i["recv_msg_hex"]);
    let incoming = i["incoming"].as_bool().unwrap();
    let ours = ConnectionMessage::decode(&sent).unwrap();
    check_decoded(id, &ours, &e["derived_sent_decoded"]);
    check_decoded(id, &ConnectionMessage::decode(&recv).unwrap(), &e["derived_recv_decoded"]);
    let identity =
        Identity::from_secret_key(SecretKey::from_bytes(arr(&i["local_secret_key_hex"])), ours.proof_of_work_stamp);
    assert_eq!(identity.public_key, ours.public_key, "{id}: secret key does not match the sent message");
    let secret = SecretKey::from_bytes(arr(&i["local_secret_key_hex"]));
    assert_eq!(secret.public_key_with(backend), ours.public_key, "{id}: {backend} public key");
    assert_eq!(identity.peer_id.to_string(), e["derived_local_peer_id"].as_str().unwrap(), "{id}");
    assert_eq!(u64::from(identity.pow_level()), e["derived_local_pow_bits"].as_u64().unwrap(), "{id}");
    let local = Arc::new(LocalConfig {
        identity: Arc::new(identity),
        advertised_port: ours.port,
        version: ours.version.clone(),
        metadata: ConnectionMetadata::default(),
        // The capture's peers were on a real network: the remote stamp meets 26.
        expected_pow: PowTarget::new(26.0).unwrap(),
        crypto_backend: backend,
    });
    let state = ExpectConnectionMessage::new(local, incoming, ours.message_nonce, None).unwrap();
    assert_eq!(state.bytes_to_send(), &sent[..], "{id}: our connection message");
    let announced = state.receive(&recv).unwrap();
    assert_eq!(announced.peer_id().to_string(), e["derived_remote_peer_id"].as_str().unwrap(), "{id}");
    let remote = announced.connection_message().clone();
    assert_eq!(
        u64::from(pow_level(&remote.public_key, &remote.proof_of_work_stamp)),
        e["derived_remote_pow_bits"].as_u64().unwrap()
    );
    let (_expect_metadata, chunk) = announced.derive_keys().unwrap();

    // The metadata chunk we emit is the one the real node sent (metadata 0x0000).
    let mut captured = h(&i["local_metadata_chunk_tag_then_ciphertext_hex"]);
    assert_eq!(chunk[2..].to_vec(), captured, "{id}: metadata chunk");
    assert_eq!(chunk, h(&e["derived_local_metadata_wire_chunk_hex"]), "{id}: metadata wire chunk");

    // Independent checks of the derived values.
    let nonces = generate_nonces(incoming, &sent, &recv);
    assert_eq!(nonces.local.as_bytes().to_vec(), h(&e["local_nonce_hex"]), "{id}: local nonce");
    assert_eq!(nonces.remote.as_bytes().to_vec(), h(&e["remote_nonce_hex"]), "{id}: remote nonce");
    let key = ChannelKey::precompute_with(
        backend,
        &remote.public_key,
        &SecretKey::from_bytes(arr(&i["local_secret_key_hex"])),
    )
    .unwrap();
    assert_eq!(key.expose_secret().to_vec(), h(&e["derived_channel_key_hex"]), "{id}: channel key");
    key.open_in_place(&nonces.local, &mut captured).unwrap();
    assert_eq!(captured[16..].to_vec(), h(&e["local_metadata_chunk_body_opens_with_local_nonce_to_hex"]));
    let mut meta = Vec::new();
    ConnectionMetadata::default().encode(&mut meta);
    assert_eq!(meta, captured[16..].to_vec());
    // The source printed the nonces as num_bigint u32 limbs, least significant first.
    for (field, nonce) in [
        ("source_comment_local_nonce_biguint_u32_limbs_le", nonces.local),
        ("source_comment_remote_nonce_biguint_u32_limbs_le", nonces.remote),
    ] {
        if let Some(limbs) = e[field].as_array() {
            let mut be = Vec::new();
            for limb in limbs.iter().rev() {
                be.extend_from_slice(&(limb.as_u64().unwrap() as u32).to_be_bytes());
            }
            assert_eq!(be, nonce.as_bytes().to_vec(), "{id}: {field}");
        }
    }
    // What this side would send next: Ack / Nack_v_0 with L0+1, first message with L0+2.
    let l1 = nonces.local.incremented();
    assert_eq!(
        wire_chunk(&key, &l1, &AckMessage::Ack.encode().unwrap()),
        h(&e["derived_local_ack_wire_chunk_hex"]),
        "{id}: ack"
    );
    assert_eq!(
        wire_chunk(&key, &l1, &AckMessage::NackV0.encode().unwrap()),
        h(&e["derived_local_nack_v0_wire_chunk_hex"]),
        "{id}: nack_v0"
    );
    assert_eq!(
        l1.incremented().as_bytes().to_vec(),
        h(&e["derived_first_app_chunk_nonce_hex"]),
        "{id}: first app nonce"
    );
    let _ = NackMotive::NoMotive;
}

/// Decimal text of a big-endian unsigned integer (schoolbook division by 10).
fn decimal_of_be(be: &[u8]) -> String {
    let mut digits = Vec::new();
    let mut n: Vec<u8> = be.to_vec();
    while n.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 10) as u8;
            rem = cur % 10;
        }
        digits.push(b'0' + rem as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap()
}

#[test]
fn every_vector_holds() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors.json")).unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    // Every backend compiled into this build must pass every vector.
    for &backend in CryptoBackend::ALL {
        for v in &vectors {
            check(v, backend);
        }
    }
    for v in &vectors {
        *per_kind.entry(v["kind"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    // The shared file holds 43 vectors of 17 kinds; a new one must be handled above.
    assert_eq!(vectors.len(), 43, "{per_kind:?}");
    assert_eq!(per_kind.len(), 17, "{per_kind:?}");
}

/// Alters one leaf of a JSON value (the first one found); `false` if there is none.
fn tamper(v: &mut Value) -> bool {
    match v {
        Value::Bool(b) => {
            *b = !*b;
            true
        }
        Value::Number(n) => {
            *v = if let Some(i) = n.as_i64() {
                Value::from(i + 1)
            } else {
                Value::from(n.as_f64().unwrap_or(0.0) + 0.5)
            };
            true
        }
        Value::String(s) => {
            // Keep hex strings hex, so the checker compares rather than fails to parse.
            let c = s.chars().next().unwrap_or('0');
            let repl = if c == '0' {
                '1'
            } else if c.is_ascii_hexdigit() {
                '0'
            } else {
                'Z'
            };
            *s = std::iter::once(repl).chain(s.chars().skip(1)).collect();
            if s.is_empty() {
                s.push('0');
            }
            true
        }
        Value::Array(a) => a.first_mut().is_some_and(tamper),
        Value::Object(o) => o.values_mut().next().is_some_and(tamper),
        Value::Null => false,
    }
}

#[test]
fn altering_any_expected_value_fails_a_check() {
    // Guards against a checker that cannot fail: alter each expected field of every vector in
    // turn (one leaf per field, objects and arrays included) and require the check to panic.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/vectors.json")).unwrap();
    let vectors: Vec<Value> = serde_json::from_str(&text).unwrap();
    std::panic::set_hook(Box::new(|_| {}));
    let mut unnoticed = Vec::new();
    let mut tampered = 0;
    for v in &vectors {
        let fields: Vec<String> = v["expected"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
        for field in fields {
            let mut bad = v.clone();
            if !tamper(&mut bad["expected"][&field]) {
                continue;
            }
            tampered += 1;
            for &backend in CryptoBackend::ALL {
                if std::panic::catch_unwind(|| check(&bad, backend)).is_ok() {
                    unnoticed.push(format!("{}.{field} ({backend})", v["id"].as_str().unwrap_or("?")));
                }
            }
        }
    }
    let _ = std::panic::take_hook();
    assert!(unnoticed.is_empty(), "altered but unnoticed: {unnoticed:#?}");
    assert!(tampered >= 150, "only {tampered} fields tampered");
}
