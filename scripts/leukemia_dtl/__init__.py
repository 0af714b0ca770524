"""Logic of the leukemia deep-transfer-learning workflow.

Rule scripts under ``scripts/`` are thin wrappers; everything testable lives here.
"""
