"""IPFIX / NetFlow v9 decoders, UDP collector, session table, Parquet flow store."""
