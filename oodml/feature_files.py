"""Compatibility path: the torch-free feature-file reader now lives in :mod:`oodml.features.files`
(importing it never imports torch); every name stays importable from here."""

from oodml.features.files import (  # noqa: F401 - re-exported under the old path
    FEATURES_FILE_LAYOUT,
    FEATURES_FILE_VERSION,
    FeatureSet,
    PathLike,
    _write_npz,
    features_fingerprint,
    load_features_file,
    npz_bytes,
    save_features_file,
    standard_split_for_features,
)

__all__ = [
    "FEATURES_FILE_LAYOUT",
    "FEATURES_FILE_VERSION",
    "FeatureSet",
    "features_fingerprint",
    "load_features_file",
    "npz_bytes",
    "save_features_file",
    "standard_split_for_features",
]
