"""Clients for the storage systems HOYA reads and writes: HDFS, Spark sessions."""
