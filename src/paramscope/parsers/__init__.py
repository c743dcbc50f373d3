"""Low-level, bounded parsers shared by the readers: protobuf wire format, the data-only pickle interpreter, and the HDF5 child process."""
