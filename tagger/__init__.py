"""Arabic news topic tagging: clean topics for scraped news articles."""

__version__ = "0.2.0"
