"""Generated gRPC/protobuf code for ``proto/tagger/v1/tagger.proto`` (do not edit by hand).

Regenerate with ``python -m tagger._proto.generate``; ``--check`` verifies it is current.
"""
