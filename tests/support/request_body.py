"""Reads an HTTP/1.1 request body (Content-Length or chunked) for the test backends."""


def read_body(rfile, headers):
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        data = bytearray()
        while True:
            size = int(rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(data)
            data += rfile.read(size)
            rfile.readline()
    length = int(headers.get("Content-Length") or 0)
    return rfile.read(length) if length else b""
