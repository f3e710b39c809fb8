"""Head decoders: raw head outputs -> named tensors per anchor (one module per head family)."""
