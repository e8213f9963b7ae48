"""Offline feature extraction stages: CAM++ speaker embeddings (stage 3) and
Whisper teacher features (stage 4), with shared sharding and metadata."""
