"""Bytes on disk to and from the engine: checkpoints read without running code, uploads, data files,
surface files and the one result store."""
