"""The services every transport calls: taking pictures of streams, and the life of a published stream."""
