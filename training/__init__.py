"""tagger's training pipeline: corpus readers, weak labels, fitting, evaluation and retraining.

It imports the runtime (``tagger``) for the text pipeline, featuriser, taxonomy and artifact format;
the runtime never imports it.
"""
