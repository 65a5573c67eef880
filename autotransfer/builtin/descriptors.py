"""Registers the built-in dataset descriptors."""

from autotransfer.data.statistics import DatasetStatistics, SourceSimilarityDescriptor
from autotransfer.hookspecs import hookimpl


@hookimpl
def autotransfer_register_descriptors():
    return [DatasetStatistics(), SourceSimilarityDescriptor()]
