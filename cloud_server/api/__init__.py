"""HTTP routers of the cloud server: health and server metadata, model metadata, inference, metrics."""
