"""The runtime: what runs a task. The fit driver (fitting.py) and the LightningModule each run builds (module.py),
evaluation passes, data loaders, cached features, inference batches, resuming, checkpoint files, history, attacks
and explanations, and the registry of tasks by name.

It knows tasks only through the `RunnableTask` protocol (protocol.py): tasks/ imports the runtime, never the reverse.
"""
