"""The review loop: editors confirm and correct the model's topics in a web app; their decisions are
stored in a SQL database (tagger.review.store), ordered by an active-learning queue
(tagger.review.queue) and exported as training data (tagger.review.export). A face: nothing in the
core or in training imports it."""
