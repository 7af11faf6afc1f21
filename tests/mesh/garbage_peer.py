#!/usr/bin/env python3
"""An authenticated but hostile mesh peer (tests/mesh.rs garbage_from_an_authenticated_peer).

usage: garbage_peer.py --host IP --port P --server-name NODE --ca CA --cert CERT --key KEY
                       [--foreign-endpoint NS/SERVICE/ID]

Connects to a weft node over QUIC with a certificate the cluster CA signed (ALPN weft/1,
datagrams enabled), then sends what no weft would:
  - garbage datagrams (random bytes, a known version byte followed by junk, an empty one),
  - uni streams: empty, unknown kind bytes, the gossip kind followed by junk or by a huge
    length prefix, one reset half way (truncated), one large,
  - bi streams: junk, a relay preface with an oversized or wrong length or an undecodable
    body, relay requests for an endpoint that does not exist and for one that another node
    owns, a preface that stops half way and is never finished.
Prints one JSON object: {"connected", "datagrams", "uni", "bi": {name: {"status", ...}},
"terminated"}. "status" is the first byte the node answered on a bi stream (None if it reset
or closed the stream without a byte).
"""
import argparse
import asyncio
import json
import os
import random
import ssl
import sys

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, StreamDataReceived, StreamReset

KIND_GOSSIP = 1
KIND_RELAY = 2


class Peer(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.replies = {}  # stream id -> bytearray
        self.waiters = {}  # stream id -> future (resolved on first byte, FIN or reset)
        self.terminated = None

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            buf = self.replies.setdefault(event.stream_id, bytearray())
            buf += event.data
            if buf or event.end_stream:
                self._resolve(event.stream_id, "data" if buf else "fin")
        elif isinstance(event, StreamReset):
            self._resolve(event.stream_id, f"reset:{event.error_code}")
        elif isinstance(event, ConnectionTerminated):
            self.terminated = {"error_code": event.error_code, "reason": event.reason_phrase}
            for sid in list(self.waiters):
                self._resolve(sid, "connection closed")

    def _resolve(self, sid, how):
        fut = self.waiters.get(sid)
        if fut is not None and not fut.done():
            fut.set_result(how)

    def datagram(self, data):
        self._quic.send_datagram_frame(data)
        self.transmit()

    def uni(self, data, end=True, reset=False):
        sid = self._quic.get_next_available_stream_id(is_unidirectional=True)
        self._quic.send_stream_data(sid, data, end_stream=end and not reset)
        if reset:
            self._quic.reset_stream(sid, 7)
        self.transmit()
        return sid

    def bi(self, data, end=True):
        sid = self._quic.get_next_available_stream_id(is_unidirectional=False)
        self.waiters[sid] = asyncio.get_event_loop().create_future()
        self._quic.send_stream_data(sid, data, end_stream=end)
        self.transmit()
        return sid

    async def answer(self, sid, timeout):
        try:
            how = await asyncio.wait_for(asyncio.shield(self.waiters[sid]), timeout)
        except asyncio.TimeoutError:
            how = "no answer"
        data = bytes(self.replies.get(sid, b""))
        return {"status": data[0] if data else None, "bytes": len(data), "how": how}


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def relay_preface(ns, service, endpoint):
    """postcard encoding of RelayRequest {namespace, service, endpoint}: three length-prefixed strings."""
    body = b"".join(varint(len(s.encode())) + s.encode() for s in (ns, service, endpoint))
    return bytes([KIND_RELAY]) + len(body).to_bytes(2, "big") + body


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--server-name", required=True)
    ap.add_argument("--ca", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--foreign-endpoint", default="default/none/none")
    a = ap.parse_args()
    rnd = random.Random(20240601)
    junk = lambda n: bytes(rnd.getrandbits(8) for _ in range(n))  # noqa: E731

    cfg = QuicConfiguration(is_client=True, alpn_protocols=["weft/1"], max_datagram_frame_size=65536, idle_timeout=30.0)
    cfg.load_cert_chain(a.cert, a.key)
    cfg.load_verify_locations(a.ca)
    cfg.verify_mode = ssl.CERT_REQUIRED
    cfg.server_name = a.server_name
    report = {"connected": False, "datagrams": 0, "uni": 0, "bi": {}, "terminated": None}
    try:
        async with connect(a.host, a.port, configuration=cfg, create_protocol=Peer, wait_connected=True) as peer:
            report["connected"] = True
            # A preface left half way first: the node must time it out on its own.
            silent = peer.bi(bytes([KIND_RELAY]), end=False)

            # Datagrams (SWIM's channel).
            dgrams = [b"", b"\x00", b"\x01", b"\xff" * 8, bytes([1]) + junk(40), bytes([0xFE]) + junk(200)]
            dgrams += [junk(rnd.randint(1, 1100)) for _ in range(60)]
            dgrams += [bytes([1]) + junk(rnd.randint(1, 1000)) for _ in range(30)]
            for d in dgrams:
                peer.datagram(d)
                await asyncio.sleep(0.002)
            report["datagrams"] = len(dgrams)

            # Uni streams (gossip messages).
            unis = [
                (b"", {}),
                (bytes([KIND_GOSSIP]), {}),
                (bytes([KIND_GOSSIP, 1]), {}),
                (bytes([KIND_GOSSIP, 1]) + b"\xff\xff\xff\xff\x0f" + junk(16), {}),  # huge length prefix
                (bytes([KIND_GOSSIP, 0xEE]) + junk(64), {}),  # unknown wire version
                (bytes([0]) + junk(100), {}),
                (bytes([0x7F]) + junk(100), {}),
                (bytes([0xFF]) + junk(100), {}),
                (bytes([KIND_GOSSIP]) + junk(500), {"reset": True}),  # truncated: reset half way
                (bytes([0x55]) + junk(50), {"reset": True}),
                (bytes([KIND_GOSSIP]) + junk(200_000), {}),
            ]
            unis += [(bytes([KIND_GOSSIP]) + junk(rnd.randint(1, 3000)), {}) for _ in range(30)]
            unis += [(bytes([KIND_GOSSIP, 1]) + junk(rnd.randint(1, 3000)), {}) for _ in range(30)]
            for data, kw in unis:
                peer.uni(data, **kw)
                await asyncio.sleep(0.002)
            report["uni"] = len(unis)

            # Bi streams (the data path).
            ns, svc, ep = a.foreign_endpoint.split("/")
            bis = {
                "junk": junk(300),
                "empty": b"",
                "oversized_length": bytes([KIND_RELAY, 0xFF, 0xFF]) + junk(100),
                "short_body": bytes([KIND_RELAY, 0x00, 0x40]) + junk(10),
                "undecodable_body": bytes([KIND_RELAY, 0x00, 0x08]) + b"\xff" * 8,
                "wrong_kind": bytes([KIND_GOSSIP]) + relay_preface(ns, svc, ep)[1:],
                "no_such_endpoint": relay_preface(ns, svc, "no-such-endpoint"),
                "foreign_endpoint": relay_preface(ns, svc, ep),
            }
            sids = {name: peer.bi(data, end=True) for name, data in bis.items()}
            # a preface cut off by a reset
            cut = peer.bi(relay_preface(ns, svc, ep)[:4], end=False)
            peer._quic.reset_stream(cut, 9)
            peer.transmit()
            for name, sid in sids.items():
                report["bi"][name] = await peer.answer(sid, 10)
            report["bi"]["silent_preface"] = await peer.answer(silent, 12)
            report["terminated"] = peer.terminated
            peer.close()
    except Exception as e:  # noqa: BLE001 — the report says what went wrong
        report["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(report, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
