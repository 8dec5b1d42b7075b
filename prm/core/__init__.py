"""The ML core: conversation building, scoring, the training loop, metrics, Monte Carlo estimation,
answer checking, prompts and tiny models.

Nothing here imports Django or the apps (a test holds this), so each module can be read, tested
and run on its own: from a notebook, a training script under accelerate/torchrun, or a worker.
"""
