"""Export: torch -> ONNX with parity, gates, registration, promotion, rollback and lineage."""
