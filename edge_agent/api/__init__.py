"""HTTP routers of the edge agent: health and server metadata, model metadata, inference, metrics."""
