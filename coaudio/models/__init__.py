"""Classifiers built on the continual encoder."""
