"""Logic of the leukemia deep-transfer-learning workflow, one subpackage per stage and environment.

Rule scripts under ``scripts/`` are thin wrappers; everything testable lives here (see docs/package_map.md).
"""
