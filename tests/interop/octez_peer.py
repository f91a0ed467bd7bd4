#!/usr/bin/env python3
"""Independent octez P2P session-protocol peer (Python 3.11 + PyNaCl), for interop tests.

Written from ../shared/protocol.md (sections 1-9, 16) only, without reading the Rust code under
test, so that both sides cannot share a misreading. It speaks the `P2p_socket` layer: plaintext
connection message, nonce derivation, encrypted metadata, Ack/Nack, then length-prefixed
"RawMessages" (u32be size || bytes) carried in XSalsa20-Poly1305 chunks.

Every event is one JSON object on one stdout line (flushed): identity, vectors, listening,
connected, nacked, rejected (RejectedByNack), echo_ok, disconnected, error (error = octez-like
name: ConnectionClosed, Timeout, DecodingError, NotEnoughProofOfWork, DecipherError, Myself,
RejectedSocketConnection / InvalidAuth (with "cause"), InvalidIncomingCiphertextSize, EchoMismatch,
ConnectError). Exit status: 0 success, 1 protocol or I/O failure (`listen`: if any of its
connections failed), 2 usage error. --timeout bounds every socket read/write, including idle
waits in --echo. bytes_in/bytes_out count RawMessage plaintext including the 4-byte prefixes.

  check-identity PATH [--difficulty F]
  check-vectors PATH                      (re-check crypto known answers from vectors.json)
  connect HOST:PORT        [common options]
  listen --addr HOST:PORT [--count N]  [common options]   (N=0: forever)
common: --identity PATH | --pow F; --expected-pow F; --chain-name S; --ddb-version N;
        --p2p-version N; --port-announce N; --metadata HEX; --timeout S; --chunk-size N;
        --nack MOTIVE [--points P1,P2 | --nack-points-count K] [--force-oversize-nack];
        --echo; --send-random N --max-size B --seed S [--pack]
P2P layer (octez `P2p_message` inside the session, protocol.md §9.5: u32be size || u16be tag ||
body; Bootstrap 0x02, Advertise 0x03 = points to the end, each u32be length + "addr:port",
at most 100; Swap_request 0x04 / Swap_ack 0x05 = point + 16-byte peer id; Disconnect 0x01):
        --send-bootstrap (then expect an Advertise: event `advertise`, points checked);
        --send-advertise P1,P2; --send-swap-request POINT,PEER_ID_HEX; --send-disconnect
        (then expect the peer to close: event `closed_by_peer`); --send-oversize (a
        Get_block_headers with 11 hashes, over octez's list bound of 10: expect a close);
        --hold S (keep reading S seconds, one `p2p_message` event per message received).
"""
import argparse, hashlib, ipaddress, json, math, os, queue, random, socket, struct, sys, threading, time

from nacl import bindings as nb
from nacl.exceptions import CryptoError

MAX_PIECE = 65517            # max plaintext per chunk when writing (65535 - 2 - 16)
TAG = 16
B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class PeerError(Exception):
    """A protocol failure; `error` is the octez-like name, `extra` goes into the JSON event."""
    def __init__(self, error, event="error", **extra):
        super().__init__(error)
        self.error, self.event, self.extra = error, event, extra


def emit(**ev):
    sys.stdout.write(json.dumps(ev) + "\n")
    sys.stdout.flush()


# ---------------------------------------------------------------- primitives (§3, §5)
def b2b(data, n=32):
    return hashlib.blake2b(data, digest_size=n).digest()


def b58check(prefix, payload):
    p = prefix + payload
    p += hashlib.sha256(hashlib.sha256(p).digest()).digest()[:4]
    n, s = int.from_bytes(p, "big"), ""
    while n:
        n, r = divmod(n, 58)
        s = B58[r] + s
    return "1" * (len(p) - len(p.lstrip(b"\0"))) + s


def peer_id(pk):
    return b58check(b"\x99\x67", b2b(pk, 16))      # BLAKE2b-128, not a truncated -256


def pow_target(f):
    if not 0.0 <= f <= 256.0:
        raise ValueError("PoW level must be in [0, 256]")
    frac, whole = math.modf(f)
    shift = int(whole)
    m = (1 << 54) - 1 if frac == 0 else int(2.0 ** (54.0 - frac))
    if shift < 202:
        return (m << (202 - shift)) | ((1 << (202 - shift)) - 1)
    return m >> (shift - 202)


def pow_int(pk, stamp):
    return int.from_bytes(b2b(pk + stamp), "little")


def pow_ok(pk, stamp, f):
    return pow_int(pk, stamp) <= pow_target(f)


def incr(nonce):
    return ((int.from_bytes(nonce, "big") + 1) % (1 << 192)).to_bytes(24, "big")


def gen_nonces(incoming, sent, recv):
    """(local, remote) initial nonces; sent/recv are raw ConnMsgs including the u16 prefix."""
    init, resp = (recv, sent) if incoming else (sent, recv)
    i2r, r2i = b2b(init + resp + b"Init -> Resp")[:24], b2b(init + resp + b"Resp -> Init")[:24]
    return (i2r, r2i) if incoming else (r2i, i2r)


def find_stamp(pk, f):
    stamp, target = os.urandom(24), pow_target(f)
    while pow_int(pk, stamp) > target:
        stamp = incr(stamp)
    return stamp


# ---------------------------------------------------------------- identity (§5.5)
def check_identity(path, difficulty):
    """Returns (ok, reason, info dict)."""
    try:
        with open(path) as fh:
            js = json.load(fh)
        pk, sk = bytes.fromhex(js["public_key"]), bytes.fromhex(js["secret_key"])
        stamp = bytes.fromhex(js["proof_of_work_stamp"])
        if (len(pk), len(sk), len(stamp)) != (32, 32, 24):
            raise ValueError("bad field length")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as ex:
        return False, f"BadIdentityFile: {ex}", {}
    info = {"peer_id": peer_id(pk), "pow_level_bits": 256 - pow_int(pk, stamp).bit_length(),
            "pk": pk, "sk": sk, "stamp": stamp}
    if js.get("peer_id", info["peer_id"]) != info["peer_id"]:
        return False, "IdentityMismatch", info
    if nb.crypto_scalarmult_base(sk) != pk:
        return False, "IdentityKeysMismatch", info
    if not pow_ok(pk, stamp, difficulty):
        return False, "InsufficientProofOfWork", info
    return True, None, info


# ---------------------------------------------------------------- wire (§2, §4, §7)
def fmt_addr(host, port):
    ip = ipaddress.ip_address(host.split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return f"{ip}:{port}" if ip.version == 4 else f"[{ip.compressed}]:{port}"


def parse_hostport(s):
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad HOST:PORT {s!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        try:
            part = sock.recv(min(n - len(buf), 1 << 20))
        except socket.timeout:
            raise PeerError("Timeout") from None
        except OSError:
            part = b""
        if not part:
            raise PeerError("ConnectionClosed")
        buf += part
    return bytes(buf)


def send_all(sock, data):
    try:
        sock.sendall(data)
    except socket.timeout:
        raise PeerError("Timeout") from None
    except OSError:
        raise PeerError("ConnectionClosed") from None


def encode_conn_msg(port, pk, stamp, chain, ddb, p2p):
    body = (struct.pack(">H", port) + pk + stamp + os.urandom(24) + struct.pack(">I", len(chain))
            + chain + struct.pack(">HH", ddb, p2p))
    if len(body) >= 65536:
        raise PeerError("UnexpectedSizeOfDecodedBuffer")
    return struct.pack(">H", len(body)) + body


def decode_conn_msg(body):
    if len(body) < 86:
        raise PeerError("DecodingError", detail="connection message too short")
    n = struct.unpack(">I", body[82:86])[0]
    if 86 + n + 4 != len(body):
        raise PeerError("DecodingError", detail="connection message size mismatch")
    ddb, p2p = struct.unpack(">HH", body[86 + n:])
    return {"port": struct.unpack(">H", body[:2])[0], "pk": body[2:34], "stamp": body[34:58],
            "chain_name": body[86:86 + n].decode("utf-8", "replace"),
            "distributed_db_version": ddb, "p2p_version": p2p}


def encode_ack(kind, motive=0, points=()):
    if kind == "ack":
        return b"\x00"
    if kind == "nack_v0":
        return b"\xff"
    lst = b"".join(struct.pack(">I", len(p)) + p.encode() for p in points)
    return b"\x01" + struct.pack(">hI", motive, len(lst)) + lst


def check_point(text):
    host, port = parse_hostport(text.split("#", 1)[0])
    ipaddress.ip_address(host)


def decode_ack(b):
    """-> ("ack", None, None) | ("nack_v0", 0, None) | ("nack", motive, [points])."""
    if b == b"\x00":
        return "ack", None, None
    if b == b"\xff":
        return "nack_v0", 0, None
    try:
        if len(b) < 7 or b[0] != 1:
            raise ValueError("bad tag or size")
        motive, ln = struct.unpack(">hI", b[1:7])
        if 7 + ln != len(b):
            raise ValueError("list size mismatch")
        i, pts = 7, []
        while i < len(b):
            n = struct.unpack(">I", b[i:i + 4])[0]
            if n + 4 > 51 or i + 4 + n > len(b):
                raise ValueError("bad point size")
            pts.append(b[i + 4:i + 4 + n].decode("ascii"))
            check_point(pts[-1])
            i += 4 + n
        if len(pts) > 100:
            raise ValueError("more than 100 points")
        return "nack", motive, pts
    except (ValueError, struct.error, UnicodeDecodeError) as ex:
        raise PeerError("DecodingError", detail=f"ack: {ex}") from None


class Channel:
    """Encrypted chunk stream after the ConnMsg exchange. Reader and writer keep separate nonce
    counters, so one reader thread and one writer thread may use a Channel concurrently."""

    def __init__(self, sock, key, local, remote, piece=MAX_PIECE):
        self.sock, self.key, self.local, self.remote, self.piece = sock, key, local, remote, piece
        self.rbuf = bytearray()
        self.bytes_in = self.bytes_out = self.msgs_in = self.msgs_out = 0

    def seal(self, pt):
        """Wire chunk for `pt` with the next local nonce: u16be E || tag(16) || ciphertext."""
        if len(pt) > MAX_PIECE:
            raise PeerError("InvalidMessageSize")
        box = nb.crypto_box_afternm(pt, self.local, self.key)   # PyNaCl output is tag-first
        self.local = incr(self.local)
        return struct.pack(">H", len(box)) + box

    def send_chunk(self, pt):
        send_all(self.sock, self.seal(pt))

    def recv_chunk(self):
        e = struct.unpack(">H", recv_exact(self.sock, 2))[0]
        if e < TAG:
            raise PeerError("InvalidIncomingCiphertextSize", size=e)
        box, nonce = recv_exact(self.sock, e), self.remote
        self.remote = incr(self.remote)
        try:
            return nb.crypto_box_open_afternm(box, nonce, self.key)
        except CryptoError:
            raise PeerError("DecipherError") from None

    def send_stream(self, data):
        """Cut `data` into pieces of self.piece bytes, one chunk each (empty -> one empty chunk)."""
        for i in range(0, max(len(data), 1), self.piece):
            self.send_chunk(data[i:i + self.piece])

    def send_message(self, payload):
        self.send_stream(struct.pack(">I", len(payload)) + payload)
        self.bytes_out += 4 + len(payload)
        self.msgs_out += 1

    def _need(self, n, at_boundary=False):
        while len(self.rbuf) < n:
            try:
                self.rbuf += self.recv_chunk()
            except PeerError as ex:
                if ex.error == "ConnectionClosed" and at_boundary and not self.rbuf:
                    raise PeerError("ConnectionClosed", clean=True) from None
                raise

    def recv_message(self):
        """Next RawMessage payload; messages may span chunks or share one."""
        self._need(4, at_boundary=True)
        n = struct.unpack(">I", self.rbuf[:4])[0]
        self._need(4 + n)
        msg = bytes(self.rbuf[4:4 + n])
        del self.rbuf[:4 + n]
        self.bytes_in += 4 + n
        self.msgs_in += 1
        return msg


def graceful_close(sock, linger=2.0):
    """Half-close, drain until the peer closes (avoids an RST eating our last chunk), close."""
    end = time.monotonic() + linger
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(linger)
        while sock.recv(65536) and time.monotonic() < end:
            pass
    except OSError:
        pass
    sock.close()


# ---------------------------------------------------------------- session (§1, §2.4, §6-§9)
def handshake(sock, a, ident, incoming):
    pk, sk, stamp = ident
    sent = encode_conn_msg(a.port_announce, pk, stamp, a.chain_name.encode(), a.ddb_version, a.p2p_version)
    send_all(sock, sent)
    hdr = recv_exact(sock, 2)
    body = recv_exact(sock, struct.unpack(">H", hdr)[0])
    cm = decode_conn_msg(body)
    rid = peer_id(cm["pk"])
    if not pow_ok(cm["pk"], cm["stamp"], a.expected_pow):
        raise PeerError("NotEnoughProofOfWork", peer_id=rid)
    try:
        key = nb.crypto_box_beforenm(cm["pk"], sk)
    except CryptoError:
        raise PeerError("InvalidPublicKey", peer_id=rid) from None
    if key == bytes(32):
        raise PeerError("InvalidPublicKey", peer_id=rid)
    local, remote = gen_nonces(incoming, sent, hdr + body)
    chan = Channel(sock, key, local, remote, a.chunk_size)
    chan.send_chunk(a.metadata)                                  # nonce L0
    meta = chan.recv_chunk()                                     # nonce R0
    if len(meta) != 2:
        raise PeerError("DecodingError", detail=f"metadata of {len(meta)} bytes")
    if rid == peer_id(pk):                                       # v18+: after metadata
        raise PeerError("Myself", peer_id=rid)
    cm["peer_id"], cm["metadata"] = rid, {"disable_mempool": meta[0] != 0, "private_node": meta[1] != 0}
    return chan, cm


def accept(chan):
    chan.send_chunk(encode_ack("ack"))                           # nonce L0+1
    try:
        kind, motive, pts = decode_ack(chan.recv_chunk())        # nonce R0+1
    except PeerError as ex:
        if ex.error == "ConnectionClosed":
            raise PeerError("RejectedSocketConnection", cause="ConnectionClosed") from None
        if ex.error == "DecipherError":
            raise PeerError("InvalidAuth", cause="DecipherError") from None
        raise
    if kind != "ack":
        raise PeerError("RejectedByNack", event="rejected", motive=motive, alternative_points=pts)


# ---------------------------------------------------------------- P2P layer (§9.5)
P2P_KINDS = {1: "Disconnect", 2: "Bootstrap", 3: "Advertise", 4: "Swap_request", 5: "Swap_ack"}
MAX_POINT_TEXT = 47          # octez P2p_point.Id: check_size 51 with the 4-byte length


def encode_point(text):
    b = text.encode()
    if len(b) > MAX_POINT_TEXT:
        raise PeerError("EncodingError", detail=f"point {text!r} too long")
    return struct.pack(">I", len(b)) + b


def p2p_payload(tag, body=b""):
    """The P2P message without its u32 size (send_message adds it)."""
    return struct.pack(">H", tag) + body


def decode_points(body):
    pts, i = [], 0
    while i < len(body):
        n = struct.unpack(">I", body[i:i + 4])[0]
        if n > MAX_POINT_TEXT or i + 4 + n > len(body):
            raise PeerError("DecodingError", detail="bad point length")
        text = body[i + 4:i + 4 + n].decode()
        check_point(text)
        pts.append(text)
        i += 4 + n
    if len(pts) > 100:
        raise PeerError("DecodingError", detail="more than 100 points")
    return pts


def decode_p2p(payload):
    if len(payload) < 2:
        raise PeerError("DecodingError", detail="no tag")
    tag, body = struct.unpack(">H", payload[:2])[0], payload[2:]
    kind = P2P_KINDS.get(tag)
    ev = {"tag": tag, "kind": kind or "Message"}
    try:
        if tag in (1, 2) and body:
            raise PeerError("DecodingError", detail="trailing bytes")
        if tag == 3:
            ev["points"] = decode_points(body)
        elif tag in (4, 5):
            n = struct.unpack(">I", body[:4])[0]
            if n > MAX_POINT_TEXT or len(body) != 4 + n + 16:
                raise PeerError("DecodingError", detail="bad swap body")
            ev["point"] = body[4:4 + n].decode()
            check_point(ev["point"])
            ev["peer_id"] = peer_id_from_hash(body[4 + n:])
        elif kind is None:
            ev["body_len"] = len(body)
    except (ValueError, struct.error, UnicodeDecodeError) as ex:
        raise PeerError("DecodingError", detail=str(ex)) from None
    return ev


def peer_id_from_hash(h):
    return b58check(b"\x99\x67", h)


def run_p2p(chan, sock, a):
    """Sends the requested P2P-layer messages, then reads for --hold seconds (or until what it
    waits for arrives) and reports every message; exit 1 if an expectation is not met."""
    if a.send_bootstrap:
        chan.send_message(p2p_payload(2))
    if a.send_advertise:
        chan.send_message(p2p_payload(3, b"".join(encode_point(p) for p in a.send_advertise)))
    if a.send_swap_request:
        point, pid = a.send_swap_request
        chan.send_message(p2p_payload(4, encode_point(point) + bytes.fromhex(pid)))
    if a.send_oversize:
        chan.send_message(p2p_payload(0x20, struct.pack(">I", 11 * 32) + os.urandom(11 * 32)))
    if a.send_disconnect:
        chan.send_message(p2p_payload(1))
    expect_close = a.send_disconnect or a.send_oversize
    deadline = time.monotonic() + max(a.hold, a.timeout if (a.send_bootstrap or expect_close) else 0)
    advertise, closed = None, False
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            payload = chan.recv_message()
        except PeerError as ex:
            if ex.error == "ConnectionClosed":
                closed = True
                emit(event="closed_by_peer")
                break
            if ex.error == "Timeout":
                break
            raise
        ev = decode_p2p(payload)
        emit(event="p2p_message", **ev)
        if ev["kind"] == "Advertise" and advertise is None:
            advertise = ev["points"]
            emit(event="advertise", points=advertise, count=len(advertise),
                 distinct=len(set(advertise)) == len(advertise))
            if a.hold == 0 and not expect_close:
                break
    if a.send_bootstrap and advertise is None:
        raise PeerError("NoAdvertise")
    if expect_close and not closed:
        raise PeerError("NotClosed")
    return 0


def run_echo(chan):
    q = queue.Queue()

    def writer():       # own thread, so a peer that writes before reading cannot deadlock us
        try:
            while (m := q.get()) is not None:
                chan.send_message(m)
        except PeerError:
            pass        # peer gone; the reader reports it

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        while True:
            q.put(chan.recv_message())
    except PeerError as ex:
        if ex.error != "ConnectionClosed":
            raise
        clean = ex.extra.get("clean", False)
    finally:
        q.put(None)
        t.join()
    emit(event="disconnected", reason="ConnectionClosed", clean=clean, messages_in=chan.msgs_in,
         messages_out=chan.msgs_out, bytes_in=chan.bytes_in, bytes_out=chan.bytes_out)
    return 0


def run_send_random(chan, a):
    rng = random.Random(a.seed)
    n, b = a.send_random, a.max_size
    sizes = [s for s in (0, 1, MAX_PIECE - 4, MAX_PIECE - 3, b) if s <= b][:n]
    sizes += [rng.randint(0, b) for _ in range(n - len(sizes))]
    msgs = [rng.randbytes(s) for s in sizes]
    werr = []

    def writer():
        try:
            if a.pack:   # one byte stream: chunk boundaries ignore message boundaries
                chan.send_stream(b"".join(struct.pack(">I", len(m)) + m for m in msgs))
            else:
                for m in msgs:
                    chan.send_message(m)
        except PeerError as ex:
            werr.append(ex)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        for i, m in enumerate(msgs):
            got = chan.recv_message()
            if got != m:
                diff = next((j for j, (x, y) in enumerate(zip(got, m)) if x != y), min(len(got), len(m)))
                raise PeerError("EchoMismatch", index=i, expected_len=len(m), got_len=len(got),
                                first_diff=diff)
    finally:
        t.join(timeout=a.timeout)
    if werr:
        raise werr[0]
    emit(event="echo_ok", messages=n, bytes=sum(sizes), max_size=max(sizes, default=0))
    return 0


def session(sock, a, ident, incoming):
    """One connection from ConnMsg to close. Returns the exit code for it."""
    try:
        addr = fmt_addr(*sock.getpeername()[:2])
        sock.settimeout(a.timeout)
        chan, cm = handshake(sock, a, ident, incoming)
        version = {k: cm[k] for k in ("chain_name", "distributed_db_version", "p2p_version")}
        if a.nack is not None:
            pts = a.points
            if cm["p2p_version"] == 0:
                payload, variant = encode_ack("nack_v0"), "Nack_v_0"
            else:
                payload, variant = encode_ack("nack", a.nack, pts), "Nack"
            sent = variant == "Nack_v_0" or len(pts) <= 100 or a.force_oversize_nack
            if sent:          # octez: a Nack with > 100 points fails to encode -> nothing sent
                chan.send_chunk(payload)
            emit(event="nacked", peer_id=cm["peer_id"], addr=addr, incoming=incoming, variant=variant,
                 motive=a.nack if variant == "Nack" else 0, points=pts if variant == "Nack" else None,
                 sent=sent, version=version)
            graceful_close(sock)
            return 0
        accept(chan)
        emit(event="connected", peer_id=cm["peer_id"], addr=addr, incoming=incoming,
             announced_port=cm["port"], version=version, remote_metadata=cm["metadata"])
        rc = 0
        if a.echo:
            rc = run_echo(chan)
        elif a.send_random:
            rc = run_send_random(chan, a)
        elif a.p2p:
            rc = run_p2p(chan, sock, a)
        graceful_close(sock)
        return rc
    except PeerError as ex:
        extra = {k: v for k, v in ex.extra.items() if k != "clean"}
        emit(event=ex.event, error=ex.error, **extra)
        sock.close()
        return 1


def make_identity(a):
    if a.identity:
        ok, reason, info = check_identity(a.identity, 0.0)
        if not ok:
            emit(event="error", error=reason)
            sys.exit(1)
        return info["pk"], info["sk"], info["stamp"]
    sk = os.urandom(32)
    pk = nb.crypto_scalarmult_base(sk)
    return pk, sk, find_stamp(pk, a.pow)


def cmd_connect(a):
    ident = make_identity(a)
    try:
        src = (a.source, 0) if a.source else None
        sock = socket.create_connection(a.target, timeout=a.timeout, source_address=src)
    except OSError as ex:
        emit(event="error", error="ConnectError", detail=str(ex))
        return 1
    return session(sock, a, ident, incoming=False)


def cmd_listen(a):
    ident = make_identity(a)
    srv = socket.socket(socket.AF_INET6 if ":" in a.addr[0] else socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(a.addr)
    srv.listen(16)
    emit(event="listening", addr=fmt_addr(*srv.getsockname()[:2]), peer_id=peer_id(ident[0]))
    rc, done = 0, 0
    while a.count == 0 or done < a.count:
        sock, _ = srv.accept()
        rc = max(rc, session(sock, a, ident, incoming=True))
        done += 1
    srv.close()
    return rc


def cmd_check_identity(a):
    ok, reason, info = check_identity(a.path, a.difficulty)
    emit(event="identity", ok=ok, reason=reason, peer_id=info.get("peer_id"),
         pow_level_bits=info.get("pow_level_bits"))
    return 0 if ok else 1


def cmd_check_vectors(a):
    """Re-check the crypto vectors of protocol.md §16 with this file's own functions."""
    H, done, bad = bytes.fromhex, {}, 0
    for v in json.load(open(a.path)):
        k, i, e = v["kind"], v["inputs"], v["expected"]
        try:
            if k == "gen_nonces":
                l, r = gen_nonces(i["incoming"], H(i["sent_msg_hex"]), H(i["recv_msg_hex"]))
                assert (l.hex(), r.hex()) == (e["local_nonce_hex"], e["remote_nonce_hex"])
            elif k == "box_encrypt":
                ch = Channel(None, H(i["channel_key_hex"]), H(i["nonce_hex"]), None)
                assert ch.seal(H(i["plaintext_hex"])).hex() == e["derived_wire_chunk_hex"]
            elif k == "handshake_capture":
                sent, recv = H(i["sent_msg_hex"]), H(i["recv_msg_hex"])
                l, r = gen_nonces(i["incoming"], sent, recv)
                assert (l.hex(), r.hex()) == (e["local_nonce_hex"], e["remote_nonce_hex"])
                key = nb.crypto_box_beforenm(decode_conn_msg(recv[2:])["pk"], H(i["local_secret_key_hex"]))
                assert key.hex() == e["derived_channel_key_hex"]
                pt = nb.crypto_box_open_afternm(H(i["local_metadata_chunk_tag_then_ciphertext_hex"]), l, key)
                assert pt.hex() == e["local_metadata_chunk_body_opens_with_local_nonce_to_hex"]
            elif k == "identity":
                js = i["identity_json"]
                pk, st = H(js["public_key"]), H(js["proof_of_work_stamp"])
                assert peer_id(pk) == js["peer_id"] and nb.crypto_scalarmult_base(H(js["secret_key"])) == pk
                assert [f for f in (0.0, 24.0, 26.0) if pow_ok(pk, st, f)] == e["derived_valid_at_levels"]
            elif k == "pow_targets":
                assert all(format(pow_target(float(f)), "064x") == t for f, t in e["target_hex"].items())
            elif k == "nonce_incr":
                assert incr(H(i["nonce_hex"])).hex() == e["incremented_hex"]
            else:
                continue
            done[k] = done.get(k, 0) + 1
        except (AssertionError, PeerError, CryptoError, KeyError) as ex:
            bad += 1
            emit(event="vector", id=v["id"], ok=False, detail=repr(ex))
    emit(event="vectors", ok=bad == 0, passed=done, failed=bad)
    return 1 if bad else 0


def level(s):
    """argparse type for a PoW level (float in [0, 256])."""
    pow_target(float(s))
    return float(s)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ci = sub.add_parser("check-identity")
    ci.add_argument("path")
    ci.add_argument("--difficulty", type=level, default=0.0)
    cv = sub.add_parser("check-vectors")
    cv.add_argument("path")
    com = argparse.ArgumentParser(add_help=False)
    com.add_argument("--identity")
    com.add_argument("--pow", type=level, default=0.0)
    com.add_argument("--expected-pow", type=level, default=0.0)
    com.add_argument("--chain-name", default="TEZOS_MAINNET")
    com.add_argument("--ddb-version", type=int, default=2)
    com.add_argument("--p2p-version", type=int, default=1)
    com.add_argument("--port-announce", type=int, default=0)
    com.add_argument("--metadata", type=bytes.fromhex, default=b"\0\0", metavar="HEX")
    com.add_argument("--timeout", type=float, default=10.0)
    com.add_argument("--source", default=None, metavar="IP",
                     help="connect from this local address (e.g. 127.0.0.2: each test peer its own loopback IP)")
    com.add_argument("--chunk-size", type=int, default=MAX_PIECE, help="plaintext bytes per chunk")
    com.add_argument("--nack", type=int, metavar="MOTIVE_CODE")
    com.add_argument("--points", default="")
    com.add_argument("--nack-points-count", type=int)
    com.add_argument("--force-oversize-nack", action="store_true", help="send Nacks with > 100 points")
    com.add_argument("--echo", action="store_true")
    com.add_argument("--send-random", type=int, default=0, metavar="N")
    com.add_argument("--max-size", type=int, default=1 << 20)
    com.add_argument("--seed", type=int, default=0)
    com.add_argument("--pack", action="store_true", help="coalesce messages across chunk boundaries")
    com.add_argument("--send-bootstrap", action="store_true")
    com.add_argument("--send-advertise", default="", metavar="P1,P2")
    com.add_argument("--send-swap-request", default="", metavar="POINT,PEER_ID_HEX")
    com.add_argument("--send-disconnect", action="store_true")
    com.add_argument("--send-oversize", action="store_true")
    com.add_argument("--hold", type=float, default=0.0, metavar="S")
    cc = sub.add_parser("connect", parents=[com])
    cc.add_argument("target", type=parse_hostport, metavar="HOST:PORT")
    cl = sub.add_parser("listen", parents=[com])
    cl.add_argument("--addr", type=parse_hostport, required=True, metavar="HOST:PORT")
    cl.add_argument("--count", type=int, default=1)
    a = p.parse_args(argv)
    if a.cmd in ("connect", "listen"):
        if not all(0 <= v <= 65535 for v in (a.port_announce, a.ddb_version, a.p2p_version)) \
                or not 1 <= a.chunk_size <= MAX_PIECE or len(a.metadata) > MAX_PIECE \
                or a.nack is not None and not -32768 <= a.nack <= 32767:
            p.error("a port/version/--chunk-size/--metadata/--nack value is out of range")
        if a.nack_points_count is not None:
            a.points = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:9732" for i in range(1, a.nack_points_count + 1)]
        else:
            a.points = [x for x in a.points.split(",") if x]
        if a.echo and a.send_random or a.send_random < 0 or a.max_size < 0:
            p.error("--echo and --send-random are exclusive; sizes must be >= 0")
        a.send_advertise = [x for x in a.send_advertise.split(",") if x]
        a.send_swap_request = a.send_swap_request.split(",") if a.send_swap_request else None
        if a.send_swap_request is not None and len(a.send_swap_request) != 2:
            p.error("--send-swap-request POINT,PEER_ID_HEX")
        a.p2p = bool(a.send_bootstrap or a.send_advertise or a.send_swap_request or a.send_disconnect
                     or a.send_oversize or a.hold)
    return {"check-identity": cmd_check_identity, "check-vectors": cmd_check_vectors,
            "connect": cmd_connect, "listen": cmd_listen}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
