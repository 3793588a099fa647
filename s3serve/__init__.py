"""s3serve: an S3-compatible object server over a local directory."""

__version__ = "0.1.0"
