"""Model stage (envs/train.yaml): the paper's Keras classifiers, their inputs, training and inference."""
