class TransientJobError(RuntimeError):
    """Worth a retry with backoff: a lost connection to a generation server, CUDA out of memory."""


class PermanentJobError(RuntimeError):
    """Retrying cannot help (a bad model path, an unreachable server at start): fail the job at once."""
