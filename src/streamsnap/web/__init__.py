"""The aiohttp shell: WebSocket signaling, static client files, and (later) REST and metrics."""
