"""One module per command verb; each function takes parsed arguments and an output stream."""
