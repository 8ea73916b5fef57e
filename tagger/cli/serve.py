"""`tagger serve`: run the gRPC tagging service (settings: flags > TAGGER_* environment > defaults)."""
from __future__ import annotations

import argparse

from tagger.cli import CLIError
from tagger.cli._common import add_settings_arguments, settings
from tagger.config import ServeConfig

EPILOG = """\
The service is tagger.v1.TopicTagger (proto/tagger/v1/tagger.proto) with grpc.health.v1 health
(NOT_SERVING until the model is loaded and warmed, and again while shutting down) and server
reflection. New model versions in the model folder are loaded, verified, warmed and swapped in
without dropping requests. SIGTERM/SIGINT stop gracefully within --grace seconds.

examples:
  tagger serve                                   # port 50051, metrics on :9100
  tagger serve --port 0 --workers 1 --metrics-port 0
  TAGGER_WORKERS=4 tagger serve --model models/arabic-news-topics
  tagger serve --tls-cert server.crt --tls-key server.key --token-file tokens --health-port 50052
                                                 # TLS + bearer tokens; plaintext health for probes (docs/security.md)
  grpcurl -plaintext -d '{"document": {"raw": "..."}}' localhost:50051 tagger.v1.TopicTagger/Tag
"""


def register(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    add_settings_arguments(p, ServeConfig)


def run(args: argparse.Namespace) -> int:
    config = settings(args, ServeConfig)
    # Imported here: grpc and the model stack load only when serving.
    from tagger.artifacts import ArtifactError
    from tagger.server import serve

    try:
        return serve(config)
    except (ArtifactError, OSError) as e:
        raise CLIError(str(e)) from e
