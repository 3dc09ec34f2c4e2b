"""A TCP relay that makes a client come from another loopback address: it listens on
127.0.0.1 (an ephemeral port) and connects every accepted connection on to the target from
SOURCE_IP (any of 127.0.0.0/8), so the server sees that address as the peer. grpcio cannot
choose a channel's source address; tests that need a second peer (per-peer limits) point a
client at relay.addr instead of the server's address.

The relay is a child process (asyncio, one task per direction with the writer's drain as
back-pressure: a client that reads nothing stalls the relay's reads from the server as it
would stall the server's own sends), so its copying never takes the test's GIL.
Run as a script: relay.py TARGET_HOST:PORT SOURCE_IP; prints 'listening on 127.0.0.1:PORT'."""
import asyncio
import os
import subprocess
import sys

CHUNK = 256 << 10


class Relay:
    def __init__(self, target, source_ip="127.0.0.2"):
        self.target, self.source_ip = target, source_ip
        self.proc = None
        self.addr = None

    def start(self, timeout=20):
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), self.target,
                                      self.source_ip], stdout=subprocess.PIPE, text=True)
        import select
        ready = select.select([self.proc.stdout], [], [], timeout)[0]
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("listening on "):
            self.stop()
            raise AssertionError("relay did not start: %r" % line)
        self.addr = line.split()[-1]
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


async def _pipe(reader, writer):
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def _serve(target, source_ip):
    host, port = target.rsplit(":", 1)

    async def on_client(c_reader, c_writer):
        try:
            s_reader, s_writer = await asyncio.open_connection(
                host, int(port), local_addr=(source_ip, 0))
        except OSError:
            c_writer.transport.abort()
            return
        await asyncio.gather(_pipe(c_reader, s_writer), _pipe(s_reader, c_writer))
        for w in (c_writer, s_writer):
            w.close()

    server = await asyncio.start_server(on_client, "127.0.0.1", 0, backlog=1024)
    print("listening on 127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: relay.py TARGET_HOST:PORT SOURCE_IP", file=sys.stderr)
        sys.exit(2)
    asyncio.run(_serve(sys.argv[1], sys.argv[2]))
