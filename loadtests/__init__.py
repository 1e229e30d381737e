"""Load tests and benchmarks, and the Python SDK client they share with the tests (sdk_client/)."""
