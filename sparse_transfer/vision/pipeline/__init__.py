"""The end-to-end pruning pipeline (2312.01653): ZerO initialization, learned masks,
magnitude pruning and smoothed post-pruning training (`run.train_pipeline`)."""
