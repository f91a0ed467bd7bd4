#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target from tests/data/vectors.json and
tests/data/p2p_messages.json (copies of the shared known answers): real connection messages,
Ack/Nack plaintexts, p2p messages and captured distributed_db messages, chunks, and the peer side
of recorded handshakes. Run from the repository root: python3 fuzz/make_corpus.py"""
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
vectors = json.load(open(os.path.join(HERE, "..", "tests", "data", "vectors.json")))
seeds = {t: [] for t in ["connection_message", "metadata", "ack", "chunk_stream", "messages",
                         "handshake_incoming", "handshake_outgoing", "db_messages"]}
for v in vectors:
    i, e = v["inputs"], v["expected"]
    H = bytes.fromhex
    if v["kind"] in ("gen_nonces", "handshake_capture"):
        for k in ("sent_msg_hex", "recv_msg_hex"):
            msg = H(i[k])
            seeds["connection_message"].append(msg)
            # The first byte picks how the handshake target splits its input.
            for split in (1, 7, 255):
                seeds["handshake_incoming"].append(bytes([split]) + msg)
                seeds["handshake_outgoing"].append(bytes([split]) + msg)
    if v["kind"] == "handshake_capture":
        chunk = H(i["local_metadata_chunk_tag_then_ciphertext_hex"])
        seeds["chunk_stream"].append(len(chunk).to_bytes(2, "big") + chunk)
        seeds["metadata"].append(H("0000"))
        for k in ("derived_local_ack_wire_chunk_hex", "derived_local_nack_v0_wire_chunk_hex"):
            seeds["chunk_stream"].append(H(e[k]))
    if v["kind"] == "conn_msg_decode":
        seeds["connection_message"].append(H(e["derived_on_wire_hex"]))
    if v["kind"] in ("box_encrypt", "chunk_derived"):
        seeds["chunk_stream"].append(H(e.get("derived_wire_chunk_hex", e.get("wire_chunk_hex", ""))))
    if v["kind"] == "ack_encoding":
        seeds["ack"].append(H(i["bytes_hex"]))
    if v["kind"] == "peer_message":
        for k in ("bytes_hex", "derived_full_envelope_hex"):
            if k in e:
                seeds["messages"].append(H(e[k]))
        if "bytes_hex" in i:
            seeds["messages"].append(H(i["bytes_hex"]))
seeds["metadata"] += [b"\x00\xff", b"\x01\x00", b""]
# Whole envelopes of the captured distributed_db messages (bodies get their size and tag).
db = json.load(open(os.path.join(HERE, "..", "tests", "data", "p2p_messages.json")))
for v in db["vectors"]:
    b = bytes.fromhex(v["hex"])
    if v["kind"] == "body":
        b = (len(b) + 2).to_bytes(4, "big") + v["tag"].to_bytes(2, "big") + b
    seeds["db_messages"].append(b)
    seeds["messages"].append(b)
for target, items in seeds.items():
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for data in items:
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(items)} seeds")
