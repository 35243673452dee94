"""Media layer: aiortc ingest, the frame cache and the snapshot engine."""
