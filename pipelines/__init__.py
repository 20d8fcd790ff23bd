"""HOYA: deep learning on HBase and HDFS data with Spark, Horovod and Airflow."""
