"""The `classifyd` command line: serve, classify, build-default."""
