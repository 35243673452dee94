"""Several nodes, one namespace: the Redis registry and the hop between nodes."""
