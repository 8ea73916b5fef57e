"""The baseline for bench/grpc_load.py: the usual way to serve a scikit-learn model over gRPC.

A scikit-learn Pipeline (TfidfVectorizer on word 1-2-grams of tagger.text.analyze tokens +
OneVsRestClassifier(LogisticRegression)), trained at start-up on a few thousand corpus articles
(their outlet sections as labels), served over the same tagger.v1 contract by one process with a
thread pool, calling ``pipeline.predict`` per request (as a generic model server does).

    python bench/naive_server.py --port 0 --train-docs 3000   # prints "ready <port>" when serving
"""
from __future__ import annotations

import argparse
import itertools
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import MultiLabelBinarizer

from tagger._proto import tagger_pb2 as pb
from tagger._proto import tagger_pb2_grpc as pb_grpc
from tagger.paths import shared_dir
from tagger.text import analyze
from tagger.training.data import read_articles

VERSION = "naive-sklearn/1"


def train(n_docs: int) -> tuple[Pipeline, MultiLabelBinarizer]:
    articles = list(itertools.islice(read_articles(shared_dir() / "corpus" / "ant-train.jsonl.xz"), n_docs))
    texts = [f"{a.title}\n{a.body}" for a in articles]
    binarizer = MultiLabelBinarizer()
    y = binarizer.fit_transform([a.sections for a in articles])
    pipeline = Pipeline([
        ("tfidf", TfidfVectorizer(tokenizer=analyze, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                                  min_df=2, sublinear_tf=True)),
        ("clf", OneVsRestClassifier(LogisticRegression(C=10.0, max_iter=200))),
    ])
    pipeline.fit(texts, y)
    return pipeline, binarizer


class NaiveServicer(pb_grpc.TopicTaggerServicer):
    def __init__(self, pipeline: Pipeline, binarizer: MultiLabelBinarizer) -> None:
        self.pipeline = pipeline
        self.classes = list(binarizer.classes_)

    def _responses(self, docs: list[pb.Document]) -> list[pb.TagResponse]:
        rows = self.pipeline.predict([f"{d.title}\n{d.text or d.raw}" for d in docs])
        return [
            pb.TagResponse(id=d.id, model_version=VERSION,
                           topics=[pb.TopicScore(topic=c, score=1.0) for c, on in zip(self.classes, row) if on])
            for d, row in zip(docs, rows)
        ]

    def Tag(self, request: pb.TagRequest, context: grpc.ServicerContext) -> pb.TagResponse:
        return self._responses([request.document])[0]

    def TagBatch(self, request: pb.TagBatchRequest, context: grpc.ServicerContext) -> pb.TagBatchResponse:
        return pb.TagBatchResponse(results=self._responses(list(request.documents)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--train-docs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args()
    t0 = time.perf_counter()
    pipeline, binarizer = train(args.train_docs)
    print(f"trained on {args.train_docs} articles in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.threads),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_TopicTaggerServicer_to_server(NaiveServicer(pipeline, binarizer), server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"ready {port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.stop(2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
