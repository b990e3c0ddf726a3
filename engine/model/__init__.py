"""The model side of the engine: everything that touches torch and transformers (loading,
the runner, the packed forward, quantization). Imported by the worker threads only."""
