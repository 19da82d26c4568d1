#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target (seeds/<target>/<name>).

The seeds are the inputs the tests use (tests/http_strict.rs, tests/bad_input.rs,
src/conn/inbound.rs, src/protocol/ops.rs, src/chat.rs, src/auth.rs, src/edge/), in each
target's input format. Run from anywhere: `python3 fuzz/seeds/make.py`; the files are committed.
"""
import base64, hashlib, hmac, json, os, struct, zlib

ROOT = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def jwt(secret, claims, header=b'{"alg":"HS256","typ":"JWT"}'):
    signing = b64(header) + "." + b64(json.dumps(claims, separators=(",", ":")).encode())
    mac = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64(mac)


FAR = 4_000_000_000  # 2096: valid for as long as the seeds are used.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(target="/ws?topics=ticks", extra=""):
    return (f"GET {target} HTTP/1.1\r\nHost: localhost:8080\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n")


def frame(first, payload, mask=b"\x01\x02\x03\x04", length=None):
    n = len(payload) if length is None else length
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", n)
    if mask is None:
        return bytes([head[0], head[1] & 0x7F]) + head[2:] + payload
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def text(s):
    return frame(0x81, s.encode())


def close(code, reason=b""):
    return frame(0x88, struct.pack(">H", code) + reason)


# --- http_request ---------------------------------------------------------------------
token = jwt(b"fuzz-secret-0123", {"sub": "alice", "exp": FAR, "subscribe": ["*"], "publish": ["room.*"]})
http = {
    "upgrade": upgrade(),
    "upgrade_room_since": upgrade("/ws?room=room.lobby&since=ticks:41,room.a:3&client_id=bob.1"),
    "upgrade_token": upgrade(f"/ws?token={token}"),
    "upgrade_bearer": upgrade("/ws", f"Authorization: Bearer {token}\r\nOrigin: https://app.example\r\n"),
    "echo": upgrade("/echo"),
    "absolute_form": upgrade("http://localhost:8080/ws?topics=a%2Cb,%20c"),
    "healthz": "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    "metrics_http10": "GET /metrics HTTP/1.0\r\n\r\n",
    "dashboard": "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "post": "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
    "chunked": "GET /ws HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
    "two_hosts": "GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "bad_host": "GET /ws HTTP/1.1\r\nHost: a@b\r\n\r\n",
    "dup_key": upgrade("/ws", f"Sec-WebSocket-Key: {KEY}\r\n"),
    "version_8": upgrade().replace("Version: 13", "Version: 8"),
    "asterisk": "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
    "bare_lf": "GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: upgrade\n\n",
    "partial": "GET /ws?topics=ticks HTTP/1.1\r\nHost: loc",
    "long_header": "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + "a" * 1100 + "\r\n\r\n",
    "garbage": "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
}
for name, data in http.items():
    write("http_request", name, data)

# --- ws_frames: first byte picks the cut -------------------------------------------------
frames = {
    "text": text("hello"),
    "binary": frame(0x82, b"\x00\x01\x02"),
    "fragments_with_ping": frame(0x01, b"hel") + frame(0x89, b"p") + frame(0x80, b"lo"),
    "close_reason": close(1000, b"bye"),
    "close_empty": frame(0x88, b""),
    "close_1005": close(1005),
    "close_one_byte": frame(0x88, b"\x03"),
    "bad_utf8": frame(0x81, b"\xc3\x28"),
    "utf8_across_fragments": frame(0x01, "é".encode()[:1]) + frame(0x80, "é".encode()[1:]),
    "rsv1": frame(0xC1, b"x"),
    "unmasked": frame(0x81, b"x", mask=None),
    "len16": frame(0x82, b"z" * 200),
    "len16_short": frame(0x82, b"z" * 10, length=None)[:1] + bytes([0x80 | 126, 0, 10]) + b"\x01\x02\x03\x04" + b"z" * 10,
    "len64_huge": bytes([0x82, 0x80 | 127]) + struct.pack(">Q", 1 << 40) + b"\x01\x02\x03\x04",
    "too_big": frame(0x82, b"q" * 300),
    "ping_126": frame(0x89, b"p" * 126),
    "continuation_alone": frame(0x80, b"x"),
    "reserved_opcode": frame(0x83, b"x"),
    "pong": frame(0x8A, b"pp"),
}
for name, data in frames.items():
    for cut in (0x00, 0x80):
        write("ws_frames", f"{name}_{cut:02x}", bytes([cut]) + data)

# --- client_ops ---------------------------------------------------------------------------
ops = [
    {"op": "subscribe", "topics": ["ticks", "room.a"]},
    {"op": "unsubscribe", "topics": ["ticks"]},
    {"op": "publish", "topic": "room.lobby", "data": {"text": "hi", "n": [1, 2.5, None, True]}},
    {"op": "publish", "topic": "room.lobby", "data": "/me waves"},
    {"op": "publish", "topic": "room.lobby", "data": "/nick bob"},
    {"op": "resume", "since": {"ticks": 41, "room.a": 0}},
    {"op": "dance"},
    {"topics": []},
    {"op": "resume", "since": {"a": "x" * 40}},
]
for i, op in enumerate(ops):
    write("client_ops", f"op{i}", json.dumps(op))
write("client_ops", "not_json", "{\"op\":")
write("client_ops", "raw_unicode", '{"op":"publish","topic":"r","data":"\\ud83d\\ude00 \\u0000"}')

# --- chat ---------------------------------------------------------------------------------
for i, line in enumerate(["/me waves", "/nick bob.2", "/nick bad name", "/who", "/shrug", "/shrug ok",
                          "/me", "/dance", "hello", "/nick " + "x" * 70, "/nick é"]):
    write("chat", f"line{i}", line)
    write("chat", f"json{i}", json.dumps(line))
write("chat", "object", '{"text":"/me"}')

# --- deflate ------------------------------------------------------------------------------
def deflate_raw(data):
    """A message compressed as a client does it: raw DEFLATE, sync flush, tail removed."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]

for i, offer in enumerate(["permessage-deflate; client_max_window_bits", "permessage-deflate",
                           "permessage-deflate; server_max_window_bits=10, permessage-deflate",
                           "permessage-deflate; client_max_window_bits=\"12\"; server_no_context_takeover",
                           "permessage-deflate; x=\"a, b\"\nx-webkit-deflate-frame", "foo, bar; baz"]):
    write("deflate", f"offer{i}", b"\x00" + offer.encode())
publish = json.dumps({"op": "publish", "topic": "room.a", "data": {"book": "bid 101.25 x 1200;" * 20}}).encode()
write("deflate", "inflate_ok", b"\x01\x04" + deflate_raw(publish))
write("deflate", "inflate_bomb", b"\x01\x01" + deflate_raw(b" " * 200000))
write("deflate", "inflate_bad", b"\x01\x01\xff\xfe\xfd")
write("deflate", "round_trip", b"\x02" + publish)
write("deflate", "round_trip_small", b"\x02hello")
z = deflate_raw(publish)
write("deflate", "frames_whole", b"\x03" + frame(0xc1, z) + frame(0x81, b"plain"))
write("deflate", "frames_fragmented", b"\x03" + frame(0x41, z[:10]) + frame(0x00, z[10:20]) + frame(0x80, z[20:]))
write("deflate", "frames_rsv1_continuation", b"\x03" + frame(0x01, b"ab") + frame(0xc0, b"cd"))
write("deflate", "frames_bomb", b"\x03" + frame(0xc1, deflate_raw(b"a" * 100000)))

# --- token: mode byte, then the input ----------------------------------------------------
secret = b"fuzz-secret"
valid = {"sub": "alice", "exp": FAR, "subscribe": ["ticks", "room.*"], "publish": ["room.*"]}
write("token", "raw_valid", b"\x00" + jwt(secret, valid).encode())
write("token", "raw_expired", b"\x00" + jwt(secret, dict(valid, exp=1000)).encode())
write("token", "raw_other_secret", b"\x00" + jwt(b"other", valid).encode())
write("token", "raw_none_alg", b"\x00" + jwt(secret, valid, b'{"alg":"none"}').encode())
write("token", "claims_valid", b"\x01" + json.dumps(valid).encode())
write("token", "claims_minimal", b"\x01" + json.dumps({"sub": "a", "exp": FAR}).encode())
write("token", "claims_bad_sub", b"\x01" + json.dumps({"sub": "a b", "exp": FAR}).encode())
write("token", "claims_float_exp", b"\x01" + b'{"sub":"a","exp":4e9}')
write("token", "header_hs384", b'\x02{"alg":"HS384"}\n' + json.dumps(valid).encode())
write("token", "header_kid", b'\x02{"alg":"HS256","kid":"k","crit":["x"]}\n' + json.dumps(valid).encode())

# --- conn_state: flags byte, then steps (see src/conn_state.rs) ---------------------------
def send(data):
    out = b""
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out += bytes([0, len(chunk)]) + chunk
    return out

READ = b"\x01\xff"          # peer reads up to 255*64 bytes
TICK = b"\x02\x14"          # clock +5 s
BCAST = b"\x03\x10"         # a 512-byte broadcast
EOF_ = b"\x04"
SHUT = b"\x05"
WRITABLE = b"\x06"
up = upgrade().encode()
conn = {
    "ticks_read": b"\x00" + send(up) + READ + BCAST + BCAST + READ + send(close(1000)) + READ,
    "ticks_stalled": b"\x00" + send(up) + BCAST * 40 + TICK * 4 + WRITABLE + TICK * 4,
    "slow_disconnect": b"\x01" + send(up) + BCAST * 40 + READ,
    "ops_and_chat": b"\x00" + send(upgrade("/ws?room=room.a").encode())
        + send(text(json.dumps({"op": "publish", "topic": "room.a", "data": "/me waves"})))
        + send(text(json.dumps({"op": "subscribe", "topics": ["ticks"]}))) + READ + BCAST + READ,
    "ping_flood": b"\x00" + send(up) + send(frame(0x89, b"p" * 100) * 2) * 30 + READ,
    "violation": b"\x00" + send(up) + send(frame(0xC1, b"x")) + READ + TICK * 2,
    "idle": b"\x00" + send(up) + TICK * 40 + READ,
    "shutdown": b"\x00" + send(up) + BCAST + SHUT + READ + send(close(1001)) + READ,
    "echo": b"\x00" + send(upgrade("/echo").encode()) + send(text("hello") + frame(0x82, b"\x00\x01")) + READ,
    "healthz": b"\x00" + send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") + READ,
    "dashboard_unread": b"\x00" + send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") + TICK * 10,
    "slowloris": b"\x00" + send(b"GET /ws HTTP/1.1\r\n") + TICK * 30,
    "token": b"\x02" + send(upgrade(f"/ws?token={token}").encode()) + READ + BCAST + READ,
    "no_token": b"\x02" + send(up) + READ,
    "origin_refused": b"\x04" + send(upgrade("/ws", "Origin: https://evil.example\r\n").encode()) + READ,
    "eof_mid_frame": b"\x00" + send(up) + send(text("hello")[:4]) + EOF_ + READ,
    "flood_repeat": b"\x00" + send(up) + b"\x07\xff" + text('{"op":"x"}')[:8] + READ,
}
for name, data in conn.items():
    write("conn_state", name, data)

# --- proxy: a connection's first bytes; also read as "Forwarded\nX-Forwarded-For" -----------
SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(version_command, family, body):
    return SIG + bytes([version_command, family]) + struct.pack(">H", len(body)) + body


def tlv(kind, value):
    return bytes([kind]) + struct.pack(">H", len(value)) + value


block4 = bytes([192, 0, 2, 1, 198, 51, 100, 2]) + struct.pack(">HH", 56324, 443)
block6 = (bytes.fromhex("20010db8000000000000000000000001")
          + bytes.fromhex("20010db8000000000000000000000002") + struct.pack(">HH", 4711, 443))
request = b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n"
proxy = {
    "v1_tcp4": b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n" + request,
    "v1_tcp6": b"PROXY TCP6 2001:db8::1 ::ffff:192.0.2.2 4711 443\r\n",
    "v1_unknown": b"PROXY UNKNOWN\r\n",
    "v1_unknown_longest": b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n",
    "v1_partial": b"PROXY TCP6 1:2:3:4:5:6:1.2.",
    "v1_double_space": b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
    "v1_bad_port": b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
    "v1_lf_only": b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
    "v2_tcp4": v2(0x21, 0x11, block4) + b"\x16\x03\x01\x02\x00\x01",
    "v2_tcp4_tlvs": v2(0x21, 0x11, block4 + tlv(0x01, b"http/1.1") + tlv(0x04, b"\x00" * 3)),
    "v2_tcp6": v2(0x21, 0x21, block6 + tlv(0x02, b"example.com")),
    "v2_local": v2(0x20, 0x00, b""),
    "v2_unspec": v2(0x21, 0x00, b"\x01\x02"),
    "v2_unix": v2(0x21, 0x31, b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")),
    "v2_udp": v2(0x21, 0x12, block4),
    "v2_short": v2(0x21, 0x21, block6[:35]),
    "v2_tlv_overrun": v2(0x21, 0x11, block4 + b"\x01\x00\x09ab"),
    "http": request,
    "tls": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "fwd_rfc7239": b'for=192.0.2.43, for="[2001:db8:cafe::17]:4711";proto=https, for=10.0.0.7',
    "fwd_unknown": b"for=192.0.2.43, for=unknown, for=_hidden",
    "fwd_then_xff": b'For="[::ffff:192.168.0.9]"\n203.0.113.5:51234, [fd00::2]:443, 10.0.0.1',
    "xff_only": b"\n198.51.100.4, 10.0.0.2, 127.0.0.1, ::ffff:10.0.0.3",
    "xff_spoofed": b"\n1.1.1.1, 10.0.0.1, 198.51.100.4",
    "xff_long": b"\n" + b", ".join([b"10.0.0.1"] * 40),
}
for name, data in proxy.items():
    write("proxy", name, data)

