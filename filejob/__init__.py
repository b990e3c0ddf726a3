"""`classifyd classify`: a file of texts classified row by row, locally or through a server."""
