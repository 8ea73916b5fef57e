"""The transport's ceiling for bench/grpc_load.py: a bare grpcio server for tagger.v1.TopicTagger/Tag
that parses the request and answers one fixed, pre-serialised TagResponse. No tagging, no metrics,
no validation, no interceptors: what is left is gRPC's own per-call cost.

Like `tagger serve --workers 2`: N processes forked before any gRPC object exists, each with its own
grpc.server on one port shared with SO_REUSEPORT, the same number of threads per process.

    python bench/echo_server.py --port 0 --workers 2 --threads 16    # prints "ready <port>" when serving
    python bench/echo_server.py --port 0 --tls-cert s.crt --tls-key s.key
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc

from tagger._proto import tagger_pb2 as pb

SERVICE = "tagger.v1.TopicTagger"
REPLY = pb.TagResponse(id="", model_version="echo/1", topics=[pb.TopicScore(topic="diplomacy", score=0.9)])


def serve(port: int, threads: int, credentials: grpc.ServerCredentials | None, stop: threading.Event) -> None:
    reply = REPLY.SerializeToString()

    def tag(request: pb.TagRequest, context: grpc.ServicerContext) -> bytes:
        return reply

    handler = grpc.unary_unary_rpc_method_handler(tag, request_deserializer=pb.TagRequest.FromString,
                                                  response_serializer=None)  # bytes as they are
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads),
                         options=[("grpc.so_reuseport", 1), ("grpc.max_receive_message_length", 64 << 20)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Tag": handler}),))
    address = f"127.0.0.1:{port}"
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    server.start()
    while not stop.wait(0.5):
        pass
    server.stop(1).wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--tls-cert", type=Path, default=None)
    parser.add_argument("--tls-key", type=Path, default=None)
    args = parser.parse_args()
    credentials = None
    if args.tls_cert and args.tls_key:
        credentials = grpc.ssl_server_credentials([(args.tls_key.read_bytes(), args.tls_cert.read_bytes())])
    # Reserve the port (bound, not listening) so every process gets the same one even for --port 0.
    reservation = socket.socket()
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind(("127.0.0.1", args.port))
    port = reservation.getsockname()[1]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            serve(port, args.threads, credentials, stop)
            os._exit(0)
        children.append(pid)
    print(f"ready {port}", flush=True)
    while not stop.wait(0.5):
        pass
    for pid in children:
        os.kill(pid, signal.SIGTERM)
    for pid in children:
        os.waitpid(pid, 0)
    reservation.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
