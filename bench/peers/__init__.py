"""Small drivers for each system under test, written against their public APIs; each runs as a worker
process started by ``bench.common.WorkerProcs`` (say ``ready``, wait for ``go``, work, exit)."""
