"""Training and measuring models: ``data`` (FER2013 and folder layouts), ``augment``, ``train``
(``moodify train``), ``calibrate`` (temperature and the shippable model), ``metrics``,
``evaluate`` (``moodify evaluate``), ``photos`` (labelled real photos), ``framing`` (how the
crop was measured, ``python -m moodify.training.framing``) and ``explore`` (dataset analysis).
"""
