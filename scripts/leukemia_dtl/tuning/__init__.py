"""The grid search: ``grid_search`` trains configurations (envs/train.yaml, Keras); ``selection`` ranks them
and writes the pick (no Keras: it runs in envs/evaluate.yaml, and training reads the pick)."""
