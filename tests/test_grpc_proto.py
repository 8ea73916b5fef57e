"""The contract: generated code is current, and the names clients rely on exist."""
from __future__ import annotations

from tagger._proto import generate
from tagger._proto import tagger_pb2 as pb


def test_generated_code_is_current() -> None:
    stale = generate.stale_files()
    assert not stale, f"{stale} differ from proto/; run: python -m tagger._proto.generate"


def test_contract_names() -> None:
    service = pb.DESCRIPTOR.services_by_name["TopicTagger"]
    assert service.full_name == "tagger.v1.TopicTagger"
    methods = {m.name: (m.input_type.name, m.output_type.name) for m in service.methods}
    assert methods == {
        "Tag": ("TagRequest", "TagResponse"),
        "TagBatch": ("TagBatchRequest", "TagBatchResponse"),
        "TagStream": ("TagRequest", "TagResponse"),
        "ListTopics": ("ListTopicsRequest", "ListTopicsResponse"),
        "GetModelInfo": ("GetModelInfoRequest", "ModelInfo"),
    }
    stream = service.methods_by_name["TagStream"]
    assert stream.client_streaming and stream.server_streaming
    assert [f.name for f in pb.Document.DESCRIPTOR.fields] == ["id", "title", "text", "raw", "tags"]
    assert {"document", "options"} <= set(pb.TagRequest.DESCRIPTOR.fields_by_name)
    assert {"documents", "options"} <= set(pb.TagBatchRequest.DESCRIPTOR.fields_by_name)
    assert {"id", "topics", "model_version"} <= set(pb.TagResponse.DESCRIPTOR.fields_by_name)
    assert [f.name for f in pb.TopicScore.DESCRIPTOR.fields][:2] == ["topic", "score"]
    assert {"threshold", "top_k", "explain"} <= set(pb.TagOptions.DESCRIPTOR.fields_by_name)
