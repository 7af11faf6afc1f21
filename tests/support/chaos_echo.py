#!/usr/bin/env python3
"""TCP line echo for the chaos soak (tests/chaos.rs): logs every line it receives, with the time
it arrived, before answering it.

usage: chaos_echo.py NAME PORT LOGFILE

Each received line `ID` is written to LOGFILE as `UNIX_SECONDS ID` (microseconds, flushed before
the answer goes out), then answered `NAME ID`. A connection may carry any number of lines.
"""
import asyncio
import sys
import time

NAME, PORT, LOG = sys.argv[1], int(sys.argv[2]), sys.argv[3]
log = open(LOG, "a", buffering=1)


async def serve(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            rid = line.strip().decode(errors="replace")
            log.write(f"{time.time():.6f} {rid}\n")
            writer.write(f"{NAME} {rid}\n".encode())
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", PORT, backlog=1024)
    async with server:
        await server.serve_forever()


asyncio.run(main())
