"""Former home of the ooDML import, now :mod:`oodml.splits.published`; this path keeps working."""

from oodml.splits.published import (
    PUBLISHED_FILES,
    WORKING_LAYOUTS,
    EpisodeMappingError,
    ImageNames,
    dataset_from_filename,
    import_oodml,
    import_published,
    published_image_names,
    resolve_names_only,
)

__all__ = [
    "PUBLISHED_FILES",
    "WORKING_LAYOUTS",
    "EpisodeMappingError",
    "ImageNames",
    "dataset_from_filename",
    "import_oodml",
    "import_published",
    "published_image_names",
    "resolve_names_only",
]
