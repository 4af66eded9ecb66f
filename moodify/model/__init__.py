"""Emotion models: ``network`` (the CNN, built from its config; no I/O), ``checkpoint`` (the file
format), ``base`` (the model protocol every backend satisfies), ``torch_backend`` and
``onnx_backend``, ``registry`` (shipped models by name, ``load_model``, ``available_models``),
and ``explain`` (Grad-CAM); ``moodify export`` is ``moodify.cli.export``.
"""
