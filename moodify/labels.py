"""The emotion labels, in the order FER2013 numbers them (0..6), and the names people give them."""

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Other names for the 7 classes: folder names, other data sets' label words (KDEF's "afraid", ...).
LABEL_ALIASES = {"anger": "angry", "disgusted": "disgust", "afraid": "fear", "fearful": "fear", "scared": "fear",
                 "happiness": "happy", "joy": "happy", "sadness": "sad", "surprised": "surprise", "calm": "neutral"}


def label_index(name: str) -> int | None:
    """A class name (a FER2013 name, an alias, or its number 0..6; any case) -> its index, or None."""
    key = name.strip().lower()
    if key.isdigit():
        return int(key) if int(key) < len(EMOTIONS) else None
    key = LABEL_ALIASES.get(key, key)
    return EMOTIONS.index(key) if key in EMOTIONS else None
