"""Hostile bytes on the client port: the offending connection may be closed, the server must keep
serving everyone else and never die."""

import os
import random
import socket
import struct
import time

import pytest

import rawzk as z


def healthy(server):
    c = z.Client(server.host, server.port, io_timeout=5)
    try:
        assert c.exists("/") [0] == z.OK
        assert c.ping() == (z.OK, None)
    finally:
        c.close()
    assert server.alive()


def closed_within(sock, timeout=5.0):
    """True if the peer closes (EOF/reset) within timeout, reading and discarding any bytes."""
    sock.settimeout(timeout)
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            b = sock.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def connect(server):
    s = socket.create_connection((server.host, server.port), timeout=5)
    return s


def test_negative_length_handshake(server):
    s = connect(server)
    s.sendall(struct.pack(">i", -1))
    assert closed_within(s)
    s.close()
    healthy(server)


def test_huge_length_handshake(server):
    s = connect(server)
    s.sendall(struct.pack(">i", 2147483647))
    assert closed_within(s)
    s.close()
    healthy(server)


def test_negative_and_huge_length_after_session(server):
    for n in (-5, 2147483647, 0x7FFFFFF0):
        c = z.Client(server.host, server.port)
        c.sock.sendall(struct.pack(">i", n))
        assert closed_within(c.sock)
        c.close_socket()
    healthy(server)


def test_garbage_handshake(server):
    s = connect(server)
    # a plausible length with a body that is not a ConnectRequest (passwd length absurd)
    body = struct.pack(">iqiq", 0, 0, 10000, 0) + struct.pack(">i", 1 << 30)
    s.sendall(struct.pack(">i", len(body)) + body)
    assert closed_within(s)
    s.close()
    healthy(server)


def test_truncated_connect_request(server):
    s = connect(server)
    body = struct.pack(">i", 0)  # only protocolVersion
    s.sendall(struct.pack(">i", len(body)) + body)
    assert closed_within(s)
    s.close()
    healthy(server)


def test_http_request_on_client_port(server):
    s = connect(server)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert closed_within(s)
    s.close()
    healthy(server)


def test_half_frame_stalls_but_others_served(server):
    stalled = []
    for _ in range(3):
        s = connect(server)
        s.sendall(struct.pack(">i", 100) + b"\x00" * 10)  # 10 of 100 promised bytes
        stalled.append(s)
    c = z.Client(server.host, server.port)
    s2 = z.Client(server.host, server.port)
    s2.sock.sendall(struct.pack(">i", 64) + b"\x00\x00\x00\x01")  # half a request
    for _ in range(20):
        assert c.exists("/")[0] == z.OK
    healthy(server)
    for s in stalled:
        s.close()
    s2.close_socket()
    c.close()


def test_truncated_request_bodies(server):
    """Valid frames whose bodies are too short for the opcode."""
    for op in (z.CREATE, z.DELETE, z.EXISTS, z.GET_DATA, z.SET_DATA, z.SET_ACL, z.MULTI,
               z.GET_CHILDREN2, z.ADD_WATCH, z.SET_WATCHES):
        c = z.Client(server.host, server.port)
        c.send_frame(struct.pack(">ii", 1, op) + b"\x00\x00")
        c.sock.settimeout(5)
        try:
            rep = c.read_reply()
            # if the server answers instead of closing, it must be an error for our xid
            assert rep is not None and rep.xid == 1 and rep.err != z.OK
        except (z.ConnectionClosed, OSError):
            pass
        c.close_socket()
    healthy(server)


def test_string_length_lies(server):
    c = z.Client(server.host, server.port)
    body = struct.pack(">i", 1 << 29) + b"/x"  # path length far beyond the frame
    c.send_frame(struct.pack(">ii", 1, z.GET_DATA) + body)
    c.sock.settimeout(5)
    try:
        rep = c.read_reply()
        assert rep is not None and rep.err != z.OK
    except (z.ConnectionClosed, OSError):
        pass
    c.close_socket()
    healthy(server)


def test_unknown_opcode(server):
    c = z.Client(server.host, server.port)
    c.send_frame(struct.pack(">ii", 7, 9999))
    c.sock.settimeout(5)
    try:
        rep = c.read_reply()
        assert rep is not None and rep.xid == 7 and rep.err != z.OK
    except (z.ConnectionClosed, OSError):
        pass
    c.close_socket()
    healthy(server)


@pytest.mark.parametrize("seed", range(8))
def test_random_bytes(server, seed):
    rng = random.Random(seed)
    for _ in range(4):
        s = connect(server)
        blob = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 4096)))
        try:
            s.sendall(blob)
        except OSError:
            pass
        s.close()
        # random bytes after a valid session handshake
        c = z.Client(server.host, server.port)
        try:
            c.sock.sendall(os.urandom(rng.randint(1, 2048)) if seed % 2 else blob)
        except OSError:
            pass
        c.close_socket()
    healthy(server)


def test_many_connections_opened_and_dropped(server):
    socks = [connect(server) for _ in range(50)]
    for s in socks:
        s.close()
    healthy(server)
