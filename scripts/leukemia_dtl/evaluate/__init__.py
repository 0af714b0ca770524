"""Evaluation stage (envs/evaluate.yaml): metrics, statistical tests, tables and figures; no Keras."""
