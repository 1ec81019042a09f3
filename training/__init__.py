"""Fine-tuning and evaluation on (lyric line, annotation) pairs. Imports ``recommender``; never the reverse."""
