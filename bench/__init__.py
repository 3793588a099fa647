"""s3serve's benchmark suite: performance against peer S3 servers and ceilings, side by side."""
