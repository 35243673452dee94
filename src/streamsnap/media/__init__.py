"""Media layer: sources (WebRTC), the frame cache, the snapshot engine, image encoding.

The only place that touches aiortc and PyAV."""
